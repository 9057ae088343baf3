"""Liveness and readiness probes."""

from typing import Any

from litestar import Controller, Request, get
from litestar.response import Response
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from appliance import db
from appliance.state import app_state

__all__ = ["SystemController"]


class SystemController(Controller):
    tags = ["system"]

    @get("/health", exclude_from_auth=True, exclude_from_csrf=True, cache_control=None)
    async def health(self) -> dict[str, str]:
        """200 while the process serves requests."""
        return {"status": "ok"}

    @get("/ready", exclude_from_auth=True, exclude_from_csrf=True)
    async def ready(self, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        """200 once the database answers and every migration has run, else 503."""
        engine = app_state(request).engine
        if not await db.ping(engine):
            return Response(
                {"status": "unavailable", "reason": "database does not answer"},
                status_code=HTTP_503_SERVICE_UNAVAILABLE,
            )
        pending = await db.pending_migrations()
        if pending:
            return Response(
                {"status": "unavailable", "reason": "migrations pending", "pending": pending},
                status_code=HTTP_503_SERVICE_UNAVAILABLE,
            )
        return Response({"status": "ok"}, status_code=HTTP_200_OK)
