"""The documents API: ``/api/cohorts/{cohort_id}/documents``.

Trainers of the cohort and admins upload and manage; the cohort's learners list, download and
preview published documents. Another cohort answers 404 (cohort ids do not leak).
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.params import FromQuery, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from appliance.accounts.tables import User
from appliance.auth.guards import Access, cohort_access
from appliance.auth.roles import RUNS_CLASS, TAKES_PART
from appliance.documents import services
from appliance.documents.names import content_disposition
from appliance.documents.schemas import CohortUsage, DocumentOut, DocumentPatch
from appliance.documents.serve import serve_file
from appliance.documents.sniff import ALLOWED
from appliance.documents.storage import BlobStore
from appliance.documents.tables import Document
from appliance.errors import not_found
from appliance.ids import PathId
from appliance.openapi import raw_body
from appliance.state import app_state

__all__ = ["DocumentController"]

AnyRequest = Request[User, Any, Any]


def _store(request: AnyRequest) -> BlobStore:
    return app_state(request).document_store


async def _document(request: AnyRequest, cohort_id: int, doc_id: int, staff: bool) -> Document:
    access = await cohort_access(request.user, cohort_id, RUNS_CLASS if staff else TAKES_PART)
    return await services.get_document(
        cohort_id, doc_id, published_only=not access.is_staff_of_cohort
    )


class DocumentController(Controller):
    path = "/api/cohorts/{cohort_id:int}/documents"
    tags = ["documents"]

    @post(
        "/",
        status_code=201,
        # The app's small JSON limit does not apply here: the documents limit and the
        # cohort's quota are enforced while the body streams (see services.upload).
        request_max_body_size=None,
        summary="Upload a document (raw body; ?filename=...&title=...)",
        operation_class=raw_body(
            "application/octet-stream", "The file itself (any Content-Type)", binary=True
        ),
    )
    async def upload(
        self,
        request: AnyRequest,
        cohort_id: PathId,
        filename: FromQuery[str],
        title: FromQuery[str | None] = None,
    ) -> DocumentOut:
        """The request body is the file itself, streamed to disk; it stays unpublished."""
        access: Access = await cohort_access(request.user, cohort_id, RUNS_CLASS)
        settings = app_state(request).settings
        doc = await services.upload(
            _store(request),
            settings,
            access,
            request.stream(),
            content_length=request.content_length,
            filename=filename,
            title=title,
        )
        app_state(request).metrics.document_uploaded(doc.size)
        await app_state(request).document_totals.refresh()
        return services.document_out(doc)

    @get("/")
    async def list_documents(self, request: AnyRequest, cohort_id: PathId) -> list[DocumentOut]:
        """All documents for the cohort's staff; published ones for its learners."""
        access = await cohort_access(request.user, cohort_id, TAKES_PART)
        return await services.list_documents(
            cohort_id, published_only=not access.is_staff_of_cohort
        )

    @get("/usage")
    async def usage(self, request: AnyRequest, cohort_id: PathId) -> CohortUsage:
        """Documents stored for the cohort, against its quota."""
        await cohort_access(request.user, cohort_id, RUNS_CLASS)
        settings = app_state(request).settings
        return await services.cohort_usage(cohort_id, settings.document_quota_bytes)

    @get("/{doc_id:int}")
    async def get_document(
        self, request: AnyRequest, cohort_id: PathId, doc_id: PathId
    ) -> DocumentOut:
        return services.document_out(await _document(request, cohort_id, doc_id, staff=False))

    @patch("/{doc_id:int}")
    async def update_document(
        self,
        request: AnyRequest,
        cohort_id: PathId,
        doc_id: PathId,
        data: JSONBody[DocumentPatch],
    ) -> DocumentOut:
        """Rename, publish or hide."""
        doc = await _document(request, cohort_id, doc_id, staff=True)
        return services.document_out(await services.update_document(doc, data))

    @post("/{doc_id:int}/publish", status_code=HTTP_200_OK)
    async def publish(self, request: AnyRequest, cohort_id: PathId, doc_id: PathId) -> DocumentOut:
        doc = await _document(request, cohort_id, doc_id, staff=True)
        patch_ = DocumentPatch(published=True)
        return services.document_out(await services.update_document(doc, patch_))

    @post("/{doc_id:int}/hide", status_code=HTTP_200_OK)
    async def hide(self, request: AnyRequest, cohort_id: PathId, doc_id: PathId) -> DocumentOut:
        doc = await _document(request, cohort_id, doc_id, staff=True)
        patch_ = DocumentPatch(published=False)
        return services.document_out(await services.update_document(doc, patch_))

    @post("/{doc_id:int}/push", status_code=HTTP_200_OK)
    async def push(self, request: AnyRequest, cohort_id: PathId, doc_id: PathId) -> DocumentOut:
        """Publish and show the document to the learners in class now."""
        doc = await _document(request, cohort_id, doc_id, staff=True)
        notifier = app_state(request).document_notifier
        return await services.push_document(notifier, doc)

    @delete("/{doc_id:int}", status_code=HTTP_204_NO_CONTENT)
    async def delete_document(self, request: AnyRequest, cohort_id: PathId, doc_id: PathId) -> None:
        doc = await _document(request, cohort_id, doc_id, staff=True)
        await services.delete_document(_store(request), doc)
        await app_state(request).document_totals.refresh()

    @get("/{doc_id:int}/download")
    async def download(
        self, request: AnyRequest, cohort_id: PathId, doc_id: PathId
    ) -> Response[Any]:
        """The file as an attachment; ``ETag``/``If-None-Match`` and single ``Range``."""
        doc = await _document(request, cohort_id, doc_id, staff=False)
        response = _serve(request, doc, "attachment")
        if response.status_code != 304:  # a full file or a resumed part
            app_state(request).metrics.document_downloaded(doc.size)
        return response

    @get("/{doc_id:int}/preview")
    async def preview(
        self, request: AnyRequest, cohort_id: PathId, doc_id: PathId
    ) -> Response[Any]:
        """PDFs and images, inline for the browser's viewer."""
        doc = await _document(request, cohort_id, doc_id, staff=False)
        kind = ALLOWED.get(doc.media_type)
        if kind is None or not kind.previewable:
            raise not_found("no inline preview for this type of document")
        return _serve(request, doc, "inline")


def _serve(request: AnyRequest, doc: Document, disposition: str) -> Response[Any]:
    path = services.open_for_download(_store(request), doc)
    return serve_file(
        request,
        path,
        size=doc.size,
        etag_value=doc.sha256,
        media_type=doc.media_type,
        headers={"Content-Disposition": content_disposition(disposition, doc.original_name)},
    )
