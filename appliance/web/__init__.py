"""The bundled web UI: HTML page shells, plain ES modules and CSS (no build step, no CDN)."""

from appliance.web.pages import PageController, html_not_found, static_files_router

__all__ = ["PageController", "html_not_found", "static_files_router"]
