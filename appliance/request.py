"""The request class: a JSON body that cannot be decoded is the client's error (400).

Litestar turns msgspec's ``DecodeError`` into a 400, but msgspec raises ``UnicodeDecodeError``
for a string that is not UTF-8 and ``RecursionError`` for arrays or objects nested deeper than
the interpreter's recursion limit (2 000 ``[`` are enough): both reached the generic handler
as a 500. Raising Litestar's ``SerializationException`` instead makes them the same 400 as
any other malformed body.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.exceptions import SerializationException

__all__ = ["EstradeRequest"]


class EstradeRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        try:
            return await super().json()
        except UnicodeDecodeError:
            raise SerializationException("the JSON body is not valid UTF-8") from None
        except RecursionError:
            raise SerializationException("the JSON body is nested too deeply") from None
