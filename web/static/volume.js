// Volume and mute: set on the <audio> element, shown by the view, remembered across visits.

const VOLUME_KEY = 'radiodVolume';
const MUTED_KEY = 'radiodMuted';
const DEFAULT_VOLUME = 0.8;

const clamp = (volume) => Math.min(1, Math.max(0, volume));

export class Volume {
  /**
   * @param {HTMLAudioElement} audio
   * @param {import('./view.js').View} view
   */
  constructor(audio, view) {
    this.audio = audio;
    this.view = view;
  }

  /** The last visit's volume and mute, or the defaults. */
  restore() {
    let volume = DEFAULT_VOLUME;
    let muted = false;
    try {
      const saved = Number.parseFloat(localStorage.getItem(VOLUME_KEY));
      if (Number.isFinite(saved)) volume = clamp(saved);
      muted = localStorage.getItem(MUTED_KEY) === 'true';
    } catch {
      /* defaults */
    }
    this.audio.volume = volume;
    this.audio.muted = muted;
    this.view.setVolume(volume, muted);
  }

  /** `volume` in 0…1; raising it above 0 unmutes. */
  set(volume) {
    this.audio.volume = clamp(volume);
    if (this.audio.volume > 0 && this.audio.muted) this.audio.muted = false;
    this.save();
  }

  toggleMute() {
    this.audio.muted = !this.audio.muted;
    this.save();
  }

  save() {
    this.view.setVolume(this.audio.volume, this.audio.muted);
    try {
      localStorage.setItem(VOLUME_KEY, String(this.audio.volume));
      localStorage.setItem(MUTED_KEY, String(this.audio.muted));
    } catch {
      /* not persisted: fine */
    }
  }
}
