"""Course documents: one row per document shared with a cohort; the bytes live in the blob store."""

from piccolo.columns import BigInt, Boolean, ForeignKey, Serial, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from appliance.accounts.tables import Cohort, User

__all__ = ["Document"]


class Document(Table, tablename="estrade_document"):
    """A file shared with a cohort. Several rows may point at one blob (same ``sha256``)."""

    id = Serial(primary_key=True)
    cohort = ForeignKey(references=Cohort, index=True)
    title = Varchar(length=200)
    # Metadata only: never used to build a path (the blob is found by its sha256).
    original_name = Varchar(length=255)
    size = BigInt()
    media_type = Varchar(length=100)
    sha256 = Varchar(length=64, index=True)
    uploader = ForeignKey(references=User, null=True, on_delete=OnDelete.set_null)
    created_at = Timestamptz(default=TimestamptzNow())
    published = Boolean(default=False)
    published_at = Timestamptz(null=True, default=None)
