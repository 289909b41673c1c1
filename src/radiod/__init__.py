"""radiod: a personal internet-radio daemon with audio-first listener sessions."""
