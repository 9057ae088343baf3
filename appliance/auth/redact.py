"""Join-link secrets never reach a log: ``/join/<secret>`` is written ``/join/[redacted]``.

A learner's link is their credential; access logs (uvicorn's, nginx's: see the nginx role's
``estrade_redacted`` log format) and the appliance's own messages get the redacted path.
"""

from __future__ import annotations

import logging
import re

__all__ = ["RedactJoinSecrets", "install_log_redaction", "redact"]

_JOIN_SECRET = re.compile(r"(/join/)[^/?#\s\"']+")


def redact(text: str) -> str:
    return _JOIN_SECRET.sub(r"\1[redacted]", text)


class RedactJoinSecrets(logging.Filter):
    """Rewrites a record's message and string arguments before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "/join/" in record.msg:
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact(a) if isinstance(a, str) and "/join/" in a else a for a in record.args
            )
        return True


def install_log_redaction(*names: str) -> None:
    """Filter the named loggers and every handler they and the root logger have (a logger's
    filter does not see records propagated from its children; a handler's does)."""
    redactor = RedactJoinSecrets()
    for name in ("", *names):
        logger = logging.getLogger(name)
        if name:
            logger.addFilter(redactor)
        for handler in logger.handlers:
            handler.addFilter(redactor)
