"""Shared helpers of the documents tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Litestar

from appliance.documents.storage import BlobStore
from appliance.documents.tables import Document
from tests.helpers.world import Client


async def upload(
    client: Client, cohort_id: int, content: bytes, filename: str, **params: Any
) -> Any:
    return await client.post(
        f"/api/cohorts/{cohort_id}/documents",
        params={"filename": filename, **params},
        content=content,
        headers={"content-type": "application/octet-stream"},
    )


def store_of(app: Litestar) -> BlobStore:
    return app.state.document_store


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def assert_nothing_kept(app: Litestar) -> None:
    """No row, no blob, no temporary file."""
    store = store_of(app)
    assert await Document.count() == 0
    assert files_under(store.root) == []
