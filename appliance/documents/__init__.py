"""Course documents: upload, share, download and preview (see docs/documents.md)."""

from appliance.documents.controllers import DocumentController
from appliance.documents.notifier import DocumentNotifier, NullNotifier
from appliance.documents.storage import BlobStore

__all__ = ["BlobStore", "DocumentController", "DocumentNotifier", "NullNotifier"]
