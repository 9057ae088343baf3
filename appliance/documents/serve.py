"""Serving a file on disk with ``ETag``/``If-None-Match`` and a single ``Range`` (documents,
replays)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from litestar import Request, Response
from litestar.datastructures import ETag
from litestar.exceptions import ClientException
from litestar.response import File
from litestar.types import FileSystemProtocol

from appliance.documents.ranges import BadRange, WindowFileSystem, etag_matches, parse_range

__all__ = ["serve_file"]


def serve_file(
    request: Request[Any, Any, Any],
    path: Path,
    *,
    size: int,
    etag_value: str,
    media_type: str,
    headers: dict[str, str],
) -> Response[Any]:
    """``path`` (``size`` bytes) whole, as a 206 part, or 304, per the request's headers."""
    etag = f'"{etag_value}"'
    headers = {
        **headers,
        "X-Content-Type-Options": "nosniff",
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-cache",
    }
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None and etag_matches(if_none_match, etag):
        return Response(None, status_code=304, headers={**headers, "ETag": etag})
    window = None
    range_header = request.headers.get("range")
    if_range = request.headers.get("if-range")
    # A client resuming an older version (If-Range differs) gets the whole current file.
    if range_header is not None and (if_range is None or if_range.strip() == etag):
        try:
            window = parse_range(range_header, size)
        except BadRange as exc:
            raise ClientException(
                detail=str(exc),
                status_code=416,
                headers={"Content-Range": f"bytes */{size}"},
            ) from None
    if window is None:
        return File(path, media_type=media_type, etag=ETag(value=etag_value), headers=headers)
    return File(
        path,
        media_type=media_type,
        etag=ETag(value=etag_value),
        headers={**headers, "Content-Range": window.content_range(size)},
        status_code=206,
        # Structurally a file system; its open() returns a byte window, not an AsyncFile.
        file_system=cast(FileSystemProtocol, WindowFileSystem(window)),
    )
