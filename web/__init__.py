"""The player page's templates and static files, installed as the package `radiod.page`.

`src/radiod/page` links here, so one copy serves both a checkout and a plain install; the
server finds the files with `importlib.resources` (see `radiod.app`).
"""
