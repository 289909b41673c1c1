"""The page shows the playing track's cover and hands it to the OS media session."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

COVER_SHOWN = "document.getElementById('art').dataset.cover === 'shown'"


def test_the_cover_is_on_the_page_and_in_the_media_session(
    radiod, open_player, e2e_library: Path, tmp_path: Path
):
    # Only the demo tracks that embed a picture (MP3 and FLAC), linked in: every track the
    # session plays has a cover, so what the page shows follows from the track alone.
    covered = tmp_path / "covered"
    covered.mkdir()
    for track in sorted(e2e_library.glob("*.mp3")) + sorted(e2e_library.glob("*.flac")):
        (covered / track.name).symlink_to(track)
    server = radiod(library={"path": str(covered)})
    player = open_player(server).open()
    player.press_play()
    player.wait_playing(seconds=1.0)
    first = player.wait("window.radiod.state.nowPlaying")
    player.wait(COVER_SHOWN)
    shown = player.page.evaluate(
        """() => {
          const img = document.getElementById('art-cover');
          const meta = navigator.mediaSession.metadata;
          return {src: img.src, width: img.naturalWidth, height: img.naturalHeight,
                  opacity: getComputedStyle(img).opacity,
                  artwork: meta ? meta.artwork.map((a) => a.src) : []};
        }"""
    )
    assert shown["src"].endswith(f"/tracks/{first}/cover")
    assert shown["width"] > 0 and shown["height"] > 0
    assert shown["artwork"] == [shown["src"]]
    player.wait("getComputedStyle(document.getElementById('art-cover')).opacity === '1'")
    player.screenshot("cover-art-desktop.png")

    # The next track brings its own cover, on the page and in the media session.
    player.page.click("#btn-skip")
    second = player.wait(
        "(first) => { const id = window.radiod.state.nowPlaying; return id !== first && id; }",
        arg=first,
    )
    player.wait(COVER_SHOWN)
    player.wait(
        "(id) => document.getElementById('art-cover').src.endsWith(`/tracks/${id}/cover`)"
        " && document.getElementById('art-cover').naturalWidth > 0"
        " && navigator.mediaSession.metadata.artwork[0].src.endsWith(`/tracks/${id}/cover`)",
        arg=second,
    )
    covers = [r for r in player.requests if r.path.endswith("/cover")]
    assert {r.status for r in covers} <= {200, 304}
    player.page.set_viewport_size({"width": 390, "height": 844})
    player.screenshot("cover-art-phone.png")
