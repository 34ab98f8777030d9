"""The HTTP service (aiohttp)."""
