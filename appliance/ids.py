"""Row ids as clients may send them: positive and within the database's integer range.

Every primary and foreign key is a 32-bit ``INTEGER`` on PostgreSQL (Piccolo's ``Serial``)
and a 64-bit one on SQLite; an id past that range made the driver raise (HTTP 500) instead
of "not found". Paths take :data:`PathId`, bodies :data:`Id`: anything else is refused at
validation with a 400 that names the field.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar.params import PathParameter

__all__ = ["MAX_ID", "Id", "PathId"]

MAX_ID = 2**31 - 1

Id = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]
PathId = Annotated[int, PathParameter(ge=1, le=MAX_ID)]
