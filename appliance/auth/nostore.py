"""``Cache-Control: no-store`` on every API answer that does not say otherwise.

The JSON API (and its CSV exports) returns personal data: names, emails, attendance, join
links. No browser or proxy cache may keep it (a shared computer, a back button after signing
out). Routes that set their own ``Cache-Control`` (document downloads) keep it.
"""

from __future__ import annotations

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["no_store_api"]

_PREFIXES = ("/api/", "/join/")


def no_store_api(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or not scope["path"].startswith(_PREFIXES):
            await app(scope, receive, send)
            return

        async def send_no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                if "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await app(scope, receive, send_no_store)

    return middleware
