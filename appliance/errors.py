"""Client errors that name the offending field, in Litestar's validation-error shape."""

from litestar.exceptions import ClientException, ValidationException

__all__ = ["RuleViolation", "conflict", "field_error"]


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
