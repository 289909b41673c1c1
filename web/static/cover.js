// Cover art: the track's picture (GET /tracks/ID/cover) laid over the generated gradient,
// which shows through whenever a track has none or its image fails to load.

export class Cover {
  /**
   * @param {HTMLElement} art  the square that holds the gradient and the picture
   * @param {HTMLImageElement} img
   */
  constructor(art, img) {
    this.art = art;
    this.img = img;
    this.url = null;
    // `data-cover` is set only once the bytes decoded: a half-loaded or broken image never
    // hides the gradient (and the e2e test reads it as "the cover is on screen").
    img.addEventListener('load', () => {
      if (this.url) this.art.dataset.cover = 'shown';
    });
    img.addEventListener('error', () => {
      delete this.art.dataset.cover;
      if (this.url) console.warn(`⚠️ Cover did not load: ${this.url}`);
    });
  }

  /** Show the cover at `url` (a track payload's `cover`), or none. */
  show(url) {
    if ((url ?? null) === this.url) return;
    this.url = url ?? null;
    delete this.art.dataset.cover;
    if (this.url) this.img.src = this.url;
    else this.img.removeAttribute('src');
  }
}

/** Media Session artwork for a track payload: absolute URLs, as the OS fetches them itself. */
export function artworkFor(track) {
  return track?.cover ? [{ src: new URL(track.cover, window.location.href).href }] : [];
}
