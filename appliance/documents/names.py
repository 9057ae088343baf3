"""Original file names: cleaned into metadata, and quoted for Content-Disposition (RFC 6266)."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

__all__ = ["MAX_NAME", "BadName", "clean_name", "content_disposition"]

MAX_NAME = 255
# Dots and white space (Unicode too) at either end.
_ENDS = re.compile(r"^[\s.]+|[\s.]+$")


class BadName(ValueError):
    """The file name cannot be kept (HTTP 400 naming ``filename``)."""


def clean_name(raw: str) -> str:
    """A display name: the last path component, without control characters, without dots
    or spaces at either end.

    The name is never used as a path (blobs are stored under their SHA-256); cleaning it keeps
    headers and listings safe and readable. Trailing dots and spaces go because Windows drops
    them when saving: ``run.bat.`` would be checked as ``.`` and run as ``run.bat``.

    Raises:
        BadName: longer than :data:`MAX_NAME` characters once cleaned.
    """
    name = unicodedata.normalize("NFC", raw)
    name = re.split(r"[/\\]", name)[-1]
    # Cc: control characters; Cf: invisible format characters (bidi overrides fake extensions).
    name = "".join(ch for ch in name if unicodedata.category(ch) not in {"Cc", "Cf", "Cs"})
    name = _ENDS.sub("", name)
    if len(name) > MAX_NAME:
        raise BadName(f"the file name is {len(name)} characters long (at most {MAX_NAME})")
    return name or "document"


def _ascii_fallback(name: str) -> str:
    # "é" becomes "e"; a character without an ASCII base becomes "_".
    ascii_only = "".join(
        unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode("ascii") or "_"
        for ch in name
    )
    safe = re.sub(r"[^A-Za-z0-9 ._()\[\]+,;=@!#$&\'-]", "_", ascii_only).strip()
    return safe or "document"


def content_disposition(disposition: str, name: str) -> str:
    """``attachment; filename="..."`` plus ``filename*=UTF-8''...`` when the name is not ASCII."""
    fallback = _ascii_fallback(name)
    value = f'{disposition}; filename="{fallback}"'
    if fallback != name:
        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value
