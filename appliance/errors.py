"""The one error model: services refuse an action by raising :class:`DomainError`.

Nothing here knows of the web. ``app.py`` turns a ``DomainError`` into an HTTP response (one
exception handler) and ``live/socket.py`` into the socket's ``error`` message (one function),
so neither controllers nor message handlers translate errors themselves.
"""

from __future__ import annotations

import unicodedata

__all__ = [
    "DomainError",
    "conflict",
    "field_error",
    "is_blank",
    "not_found",
    "require_visible",
]

# Categories that show nothing by themselves: spaces and separators, controls, format
# characters (zero-width space and joiners, bidi marks), combining marks with no base,
# private-use, unassigned and surrogate code points.
_INVISIBLE_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Mn", "Me", "Co", "Cn", "Cs"})
# Letters and symbols that render as blanks (Hangul fillers, braille blank, Mongolian separator).
_BLANK_CHARACTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e")
# The code of a field error, by status (a field error's ``field`` says which value is at fault).
_FIELD_CODES = {404: "not_found", 409: "conflict"}


class DomainError(Exception):
    """A refused action (a closed poll, a taken email, an unknown cohort...).

    Attributes:
        code: stable, for clients: the web UI translates ``live.err.<code>``.
        detail: for people.
        status_code: the HTTP status (409 by default: a rule of the domain refused).
        field: the request field at fault, if one is; an HTTP body then names it in ``extra``
            (Litestar's validation-error shape, which the web UI reads).
        limit: a bound the client may show ("at most {limit} characters").
    """

    def __init__(
        self,
        code: str,
        detail: str,
        status_code: int = 409,
        *,
        field: str | None = None,
        limit: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status_code = status_code
        self.field = field
        self.limit = limit


def field_error(key: str, message: str, status_code: int = 400) -> DomainError:
    """A refusal that names the request field ``key`` (code: invalid, not_found or conflict)."""
    return DomainError(_FIELD_CODES.get(status_code, "invalid"), message, status_code, field=key)


def conflict(key: str, message: str) -> DomainError:
    return field_error(key, message, status_code=409)


def not_found(detail: str) -> DomainError:
    return DomainError("not_found", detail, 404)


def is_blank(text: str) -> bool:
    """True when ``text`` has nothing a reader could see (empty, spaces, zero-width...)."""
    return all(
        c.isspace() or c in _BLANK_CHARACTERS or unicodedata.category(c) in _INVISIBLE_CATEGORIES
        for c in text
    )


def require_visible(key: str, text: str) -> str:
    """``text`` stripped, or a 422 naming ``key`` when nothing visible is left."""
    if is_blank(text):
        raise field_error(key, "must contain visible characters", 422)
    return text.strip()
