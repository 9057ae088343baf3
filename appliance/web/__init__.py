"""The bundled web UI: HTML page shells, plain ES modules and CSS (no build step, no CDN)."""

from appliance.web.pages import PageController, static_files_router

__all__ = ["PageController", "static_files_router"]
