"""Original file names: cleaned into metadata, and quoted for Content-Disposition (RFC 6266)."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

__all__ = ["clean_name", "content_disposition"]

_MAX = 255


def clean_name(raw: str) -> str:
    """A display name: the last path component, without control characters or leading dots.

    The name is never used as a path (blobs are stored under their SHA-256); cleaning it keeps
    headers and listings safe and readable.
    """
    name = unicodedata.normalize("NFC", raw)
    name = re.split(r"[/\\]", name)[-1]
    # Cc: control characters; Cf: invisible format characters (bidi overrides fake extensions).
    name = "".join(ch for ch in name if unicodedata.category(ch) not in {"Cc", "Cf", "Cs"})
    name = name.strip().lstrip(".").strip()
    if len(name) > _MAX:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: _MAX - len(ext) - 1] + "." + ext) if dot and len(ext) < 16 else name[:_MAX]
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
