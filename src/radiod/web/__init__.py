"""aiohttp handlers: thin adapters from HTTP to `Session` objects."""
