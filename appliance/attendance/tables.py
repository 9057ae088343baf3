"""The attendance log. Rows are only ever inserted: never updated, never deleted.

Each row carries ``position`` (its rank in its cohort's chain, unique per cohort) and ``hash``,
the SHA-256 of ``prev_hash`` and the row's canonical content, so any edit or deletion breaks
the chain (:func:`appliance.attendance.services.verify_chain`).
"""

from piccolo.columns import Date, ForeignKey, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.table import Table

from appliance.accounts.tables import ClassSession, Cohort, User

__all__ = ["AttendanceRecord", "Kind"]


class Kind:
    connect = "connect"
    disconnect = "disconnect"
    window_open = "window_open"
    window_close = "window_close"
    sign = "sign"
    correction = "correction"


class AttendanceRecord(Table, tablename="estrade_attendance_record"):
    id = Serial(primary_key=True)
    cohort = ForeignKey(references=Cohort, index=True)
    position = Integer()
    kind = Varchar(length=16)
    at = Timestamptz()
    class_session = ForeignKey(references=ClassSession, null=True, default=None)
    user = ForeignKey(references=User, null=True, default=None)
    connection = Varchar(length=40, null=True, default=None)
    half = Varchar(length=10, null=True, default=None)
    day = Date(null=True, default=None)
    window = Integer(null=True, default=None)
    closes_at = Timestamptz(null=True, default=None)
    signed_at = Timestamptz(null=True, default=None)
    address = Varchar(length=64, null=True, default=None)
    user_agent = Varchar(length=400, null=True, default=None)
    author = ForeignKey(references=User, null=True, default=None)
    reason = Text(null=True, default=None)
    prev_hash = Varchar(length=64)
    hash = Varchar(length=64)
