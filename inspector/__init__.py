"""The worldflow inspector: web UI and HTTP APIs (aiohttp + jinja2). Not built yet."""
