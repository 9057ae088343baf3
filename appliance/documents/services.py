"""Every documents query and rule. Controllers check access, then call one function here.

Single entry points the metrics will hook onto: :func:`upload` (one per stored upload),
:func:`open_for_download` (one per download or resumed range) and :func:`stored_per_cohort`.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import anyio.to_thread
from litestar.exceptions import ClientException
from litestar.status_codes import HTTP_413_REQUEST_ENTITY_TOO_LARGE
from piccolo.engine.postgres import PostgresEngine
from piccolo.query.functions.aggregate import Count, Sum

from appliance import clock
from appliance.auth.guards import Access
from appliance.documents.names import BadName, clean_name
from appliance.documents.notifier import DocumentNotifier
from appliance.documents.schemas import CohortUsage, DocumentOut, DocumentPatch
from appliance.documents.sniff import ALLOWED, SuspiciousArchive, UnsupportedType, sniff
from appliance.documents.storage import BlobStore, TooLarge
from appliance.documents.tables import Document
from appliance.errors import DomainError, field_error, not_found
from appliance.metrics.sources import DocumentTotals as Totals
from appliance.settings import Settings
from appliance.text import has_control

__all__ = [
    "UploadInterrupted",
    "cohort_usage",
    "delete_document",
    "document_out",
    "get_document",
    "list_documents",
    "open_for_download",
    "push_document",
    "stored_per_cohort",
    "update_document",
    "upload",
]

_MIB = 1024 * 1024


class UploadInterrupted(DomainError):
    """The client went away mid-body; nothing was kept."""

    def __init__(self) -> None:
        super().__init__("upload_interrupted", "the upload was interrupted", 400)


def _too_large(detail: str) -> DomainError:
    return DomainError("too_large", detail, HTTP_413_REQUEST_ENTITY_TOO_LARGE)


def _unsupported(detail: str) -> DomainError:
    return DomainError("unsupported_type", detail, 415)


def document_out(doc: Document) -> DocumentOut:
    base = f"/api/cohorts/{doc.cohort}/documents/{doc.id}"
    kind = ALLOWED.get(doc.media_type)
    return DocumentOut(
        id=doc.id,
        cohort_id=doc.cohort,
        title=doc.title,
        original_name=doc.original_name,
        size=doc.size,
        media_type=doc.media_type,
        sha256=doc.sha256,
        uploader_id=doc.uploader,
        created_at=doc.created_at,
        published=doc.published,
        published_at=doc.published_at,
        download_url=f"{base}/download",
        preview_url=f"{base}/preview" if kind is not None and kind.previewable else None,
    )


async def get_document(cohort_id: int, doc_id: int, *, published_only: bool) -> Document:
    """The document ``doc_id`` of ``cohort_id``; learners see only published ones (else 404)."""
    query = Document.objects().where((Document.id == doc_id) & (Document.cohort == cohort_id))
    doc = await query.first()
    if doc is None or (published_only and not doc.published):
        raise not_found("document not found")
    return doc


async def list_documents(cohort_id: int, *, published_only: bool) -> list[DocumentOut]:
    query = Document.objects().where(Document.cohort == cohort_id)
    if published_only:
        query = query.where(Document.published.eq(True))
    rows = await query.order_by(Document.created_at, ascending=False).order_by(Document.id)
    return [document_out(d) for d in rows]


async def cohort_usage(cohort_id: int, quota_bytes: int | None = None) -> CohortUsage:
    """Documents of one cohort (count, bytes; a shared blob counts in each document)."""
    row = (
        await Document.select(Count(alias="count"), Sum(Document.size, alias="bytes"))
        .where(Document.cohort == cohort_id)
        .first()
    )
    assert row is not None
    return CohortUsage(
        cohort_id=cohort_id,
        count=int(row["count"] or 0),
        bytes=int(row["bytes"] or 0),
        quota_bytes=quota_bytes,
    )


async def stored_per_cohort() -> list[CohortUsage]:
    """Documents stored, per cohort: for the metrics collector (read at scrape time)."""
    rows = await Document.select(
        Document.cohort, Count(alias="count"), Sum(Document.size, alias="bytes")
    ).group_by(Document.cohort)
    return [
        CohortUsage(cohort_id=r["cohort"], count=int(r["count"]), bytes=int(r["bytes"] or 0))
        for r in sorted(rows, key=lambda r: r["cohort"])
    ]


@asynccontextmanager
async def _guard(store: BlobStore, *keys: str) -> AsyncIterator[None]:
    """Order "check the quota, add a reference" against "drop the last reference, delete the
    blob": ``store.lock`` in this process; on PostgreSQL also a transaction holding one advisory
    lock per key (``quota:<cohort>`` before ``blob:<sha256>``, always in that order), so hosts
    sharing the blob folder (docs/deploy.md "Several hosts") are ordered by the database."""
    async with store.lock:
        engine = Document._meta.db
        if not isinstance(engine, PostgresEngine):
            yield
            return
        async with engine.transaction():
            for key in keys:
                lock_id = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], signed=True)
                await Document.raw("SELECT pg_advisory_xact_lock({})", lock_id)
            yield


async def _stream_guarded(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Turn Litestar's "client disconnected" (a 500) into :class:`UploadInterrupted`."""
    try:
        async for chunk in chunks:
            yield chunk
    except ClientException:
        raise
    except Exception as exc:
        if "disconnect" in str(exc):
            raise UploadInterrupted() from exc
        raise


async def upload(
    store: BlobStore,
    settings: Settings,
    access: Access,
    chunks: AsyncIterator[bytes],
    *,
    content_length: int | None,
    filename: str,
    title: str | None,
) -> Document:
    """Store an uploaded file for ``access.cohort`` and record it (unpublished).

    Raises:
        DomainError: 413 over the size limit or the cohort's quota (as soon as the
            announced or received length says so), 415 for a refused or contradicted type,
            400 for an empty file or a bad title. Nothing is kept in any of these cases.
    """
    try:
        name = clean_name(filename)
    except BadName as exc:
        raise field_error("filename", str(exc)) from None
    title = (title or "").strip() or name.rpartition(".")[0] or name
    if len(title) > 200:
        raise field_error("title", "at most 200 characters")
    if has_control(title):
        raise field_error("title", "control characters are not allowed")
    cohort_id = access.cohort.id
    max_bytes = settings.document_max_bytes
    quota_left = settings.document_quota_bytes - (await cohort_usage(cohort_id)).bytes
    size_msg = f"the file is larger than the limit of {max_bytes // _MIB} MiB"
    quota_msg = "this cohort's document quota is used up: delete documents first"
    limit, message = (max_bytes, size_msg) if max_bytes <= quota_left else (quota_left, quota_msg)
    if content_length is not None and content_length > limit:
        raise _too_large(message)
    try:
        received = await store.receive(_stream_guarded(chunks), max(limit, 0), message)
    except TooLarge as exc:
        raise _too_large(str(exc)) from None
    try:
        if received.size == 0:
            raise field_error("body", "the file is empty")
        try:
            # Opening an archive is file I/O and parsing: never on the event loop.
            kind = await anyio.to_thread.run_sync(
                partial(
                    sniff, received.tmp_path, received.head, is_text=received.is_text, name=name
                )
            )
        except SuspiciousArchive as exc:
            raise field_error("body", str(exc), 422) from None
        except UnsupportedType as exc:
            raise _unsupported(str(exc)) from None
        saved = False
        try:
            async with _guard(store, f"quota:{cohort_id}", f"blob:{received.sha256}"):
                # Another upload may have used the quota meanwhile: check again, atomically.
                used = (await cohort_usage(cohort_id)).bytes
                if used + received.size > settings.document_quota_bytes:
                    raise _too_large(quota_msg)
                await store.commit(received)
                doc = Document(
                    cohort=cohort_id,
                    title=title,
                    original_name=name,
                    size=received.size,
                    media_type=kind.media_type,
                    sha256=received.sha256,
                    uploader=access.user.id,
                )
                await doc.save()
                saved = True
        finally:
            if not saved:  # the blob may be ours alone: dropped with its last reference
                async with _guard(store, f"blob:{received.sha256}"):
                    if await Document.count().where(Document.sha256 == received.sha256) == 0:
                        await store.remove(received.sha256)
    finally:
        store.discard(received)
    return doc


async def update_document(doc: Document, patch: DocumentPatch) -> Document:
    """Rename, publish (visible to the cohort's learners) or hide a document."""
    if patch.title is not None:
        doc.title = patch.title.strip() or doc.title
    if patch.published is not None and patch.published != doc.published:
        doc.published = patch.published
        doc.published_at = clock.utcnow() if patch.published else None
    await doc.save()
    return doc


async def delete_document(store: BlobStore, doc: Document) -> None:
    """Delete a document; the blob goes with its last reference."""
    async with _guard(store, f"blob:{doc.sha256}"):
        await Document.delete().where(Document.id == doc.id)
        left = await Document.count().where(Document.sha256 == doc.sha256)
        if left == 0:
            await store.remove(doc.sha256)


async def push_document(notifier: DocumentNotifier, doc: Document) -> DocumentOut:
    """Publish ``doc`` (the notice carries a link learners must be able to open) and notify."""
    if not doc.published:
        doc = await update_document(doc, DocumentPatch(published=True))
    out = document_out(doc)
    await notifier.document_pushed(doc.cohort, out)
    return out


def open_for_download(store: BlobStore, doc: Document) -> Path:
    """The blob's path, for a download or a preview (one call per response)."""
    path = store.path(doc.sha256)
    if not path.is_file():
        raise not_found("the document's file is missing")
    return path


class DocumentTotals:
    """Documents stored (count, bytes), kept in memory for the metrics collector.

    Refreshed from the database at start and after each upload or delete, so a scrape never
    queries the database.
    """

    def __init__(self) -> None:
        self.count = 0
        self.bytes = 0

    async def refresh(self) -> None:
        rows = await stored_per_cohort()
        self.count = sum(r.count for r in rows)
        self.bytes = sum(r.bytes for r in rows)

    def document_totals(self) -> Totals:
        """``appliance.metrics.sources.DocumentsSource``."""
        return Totals(count=self.count, bytes=self.bytes)
