"""Bodies of the documents API (msgspec Structs, unknown fields refused)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec

from appliance.text import NO_CONTROL

__all__ = ["CohortUsage", "DocumentOut", "DocumentPatch"]

Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_CONTROL)]


class Base(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class DocumentOut(Base):
    id: int
    cohort_id: int
    title: str
    original_name: str
    size: int
    media_type: str
    sha256: str
    uploader_id: int | None
    created_at: dt.datetime
    published: bool
    published_at: dt.datetime | None
    download_url: str
    preview_url: str | None


class DocumentPatch(Base):
    title: Title | None = None
    published: bool | None = None


class CohortUsage(Base):
    cohort_id: int
    count: int
    bytes: int
    quota_bytes: int | None = None
