"""radiod: a personal internet-radio daemon with audio-first listener sessions."""

from radiod.audio import prefer_system_lame

# Before anything imports PyAV: encode MP3 with the OS's libmp3lame when it is the same
# version as PyAV's bundled copy, which is ~3x slower here (see prefer_system_lame).
prefer_system_lame()
