"""Client errors that name the offending field, in Litestar's validation-error shape."""

import unicodedata

from litestar.exceptions import ClientException, ValidationException

__all__ = ["RuleViolation", "conflict", "field_error", "is_blank", "require_visible"]

# Categories that show nothing by themselves: spaces and separators, controls, format
# characters (zero-width space and joiners, bidi marks), combining marks with no base,
# private-use, unassigned and surrogate code points.
_INVISIBLE_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Mn", "Me", "Co", "Cn", "Cs"})
# Letters and symbols that render as blanks (Hangul fillers, braille blank, Mongolian separator).
_BLANK_CHARACTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e")


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


def field_error(key: str, message: str, status_code: int = 400) -> ClientException:
    """A 4xx whose JSON body names ``key`` in ``extra`` (Litestar's validation-error shape)."""
    if status_code == 400:
        return ValidationException(
            detail=f"{key}: {message}", extra=[{"key": key, "message": message}]
        )
    return ClientException(
        detail=f"{key}: {message}",
        status_code=status_code,
        extra=[{"key": key, "message": message}],
    )


def conflict(key: str, message: str) -> ClientException:
    return field_error(key, message, status_code=409)


class RuleViolation(Exception):
    """A domain rule refused an action (voting twice, a closed poll...).

    Services raise it; the classroom socket turns it into an ``error`` event carrying ``code``
    and ``detail``, HTTP routes into a 409 or 422.
    """

    def __init__(self, code: str, detail: str, status_code: int = 409) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status_code = status_code
