"""OpenAPI details Litestar cannot infer: bodies that handlers read raw.

The document upload streams ``request.stream()`` and the CSV import reads ``request.body()``:
neither has a ``data`` parameter, so Litestar published no request body for them and a
client generated from ``/schema/openapi.json`` (or a fuzzer) sent none. :func:`raw_body`
gives such a route an ``Operation`` class that declares the body it really reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)

__all__ = ["raw_body"]


def raw_body(media_type: str, description: str, *, binary: bool) -> type[Operation]:
    """An ``Operation`` subclass whose request body is ``media_type`` (required)."""
    schema = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY if binary else None)

    @dataclass
    class RawBodyOperation(Operation):
        def __post_init__(self) -> None:
            self.request_body = RequestBody(
                content={media_type: OpenAPIMediaType(schema=schema)},
                description=description,
                required=True,
            )

    return RawBodyOperation
