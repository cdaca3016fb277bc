"""The HTTP API families; each module has ``add_routes(app: web.Application) -> None``."""
