"""The classroom socket accepts only pages of this appliance (no cross-site WebSocket hijacking).

Browsers send ``Origin`` on every WebSocket handshake and attach the session cookie whatever
page opens the socket, so a page elsewhere could act as the signed-in user. The handshake is
refused with 403 unless ``Origin`` is the public URL's origin or one of ``allowed_origins``.
``Origin: null`` (sandboxed frames, local files) is refused. A handshake without ``Origin`` is
not from a browser page, so it cannot ride on a victim's cookie: it is let through to the
session check like any other client.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from litestar.connection import ASGIConnection
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from appliance.settings import Settings
from appliance.state import app_state

__all__ = ["allowed_origins", "normalise_origin", "same_origin"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_origin(value: str) -> str | None:
    """``scheme://host[:port]`` in lower case without a default port; None when not an origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or parts.username or parts.password:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}:{port}"
    return f"{scheme}://{host}"


def allowed_origins(settings: Settings) -> frozenset[str]:
    """The public URL's origin and the configured extra origins."""
    values = [settings.resolved_public_url, *settings.allowed_origins.split(",")]
    return frozenset(o for v in values if v.strip() and (o := normalise_origin(v)) is not None)


def same_origin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A guard for WebSocket routes: 403 at the handshake for a foreign ``Origin``."""
    origin = connection.headers.get("origin")
    if origin is None:
        return
    settings = app_state(connection).settings
    if normalise_origin(origin) not in allowed_origins(settings):
        raise PermissionDeniedException(detail="this page's origin may not open the socket")
