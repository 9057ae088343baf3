from typing import Annotated, Literal

import msgspec

from appliance.text import NO_NUL

__all__ = ["JoinIn", "LoginIn", "Me", "MePatch"]


class LoginIn(msgspec.Struct, forbid_unknown_fields=True):
    # No NUL: PostgreSQL refuses it in the query (a 500 before).
    email: Annotated[str, msgspec.Meta(min_length=1, max_length=254, pattern=NO_NUL)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class JoinIn(msgspec.Struct, forbid_unknown_fields=True):
    """Joining with a personal link: ``{}``, or the learner's password when they have one."""

    password: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None


class Me(msgspec.Struct):
    id: int
    email: str
    display_name: str
    role: str
    locale: str


class MePatch(msgspec.Struct, forbid_unknown_fields=True):
    locale: Literal["fr", "en"]
