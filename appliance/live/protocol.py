"""The classroom socket protocol (docs/protocol.md): msgspec tagged unions, ``type`` is the tag.

Client messages carry an optional ``ref`` that the server echoes in ``ack`` and errors.
Broadcast events carry ``seq``, a per-cohort sequence number used to resume after a reconnect;
direct replies (``welcome``, ``error``...) have none.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import msgspec

from appliance.attendance.schemas import WindowOut
from appliance.chat.schemas import ChatMessageOut
from appliance.polls.schemas import PollOut, PollResults

__all__ = [
    "CLIENT_MESSAGES",
    "MEDIA_CLIENT_MESSAGES",
    "MEDIA_SERVER_MESSAGES",
    "PROTOCOL_VERSION",
    "RECORDING_CLIENT_MESSAGES",
    "RECORDING_SERVER_MESSAGES",
    "SERVER_MESSAGES",
    "ClientMessage",
    "Event",
]

PROTOCOL_VERSION = 1

DB_ID_MAX = 2**31 - 1
"""Largest row id: ids are PostgreSQL ``integer`` (SERIAL) columns; beyond is no such row."""

Ref = Annotated[str, msgspec.Meta(max_length=64)]
Id = Annotated[int, msgspec.Meta(ge=1, le=DB_ID_MAX)]
"""A row id: out of the database's range is ``invalid_message`` (never a query)."""
ParticipantState = Literal["waiting", "in_class", "low_bandwidth"]
ReactionKind = Literal["lost", "slower", "ok"]


# ---- client -> server ---------------------------------------------------------------------
class ClientMessage(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True):
    ref: Ref | None = None


class Ping(ClientMessage, tag="ping"):
    pass


class HeartbeatIn(ClientMessage, tag="heartbeat"):
    """The client's answer to the server's ``heartbeat``: no reply."""


class ChatSend(ClientMessage, tag="chat_send"):
    text: str
    question: bool = False


class ChatDelete(ClientMessage, tag="chat_delete"):
    message_id: Id


class ChatMute(ClientMessage, tag="chat_mute"):
    user_id: Id


class ChatUnmute(ClientMessage, tag="chat_unmute"):
    user_id: Id


class QuestionVote(ClientMessage, tag="question_vote"):
    message_id: Id


class QuestionAnswer(ClientMessage, tag="question_answer"):
    message_id: Id


class PollCreate(ClientMessage, tag="poll_create"):
    question: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    choices: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=200)]],
        msgspec.Meta(min_length=2, max_length=10),
    ]
    multiple: bool = False
    anonymous: bool = True


class PollLaunch(ClientMessage, tag="poll_launch"):
    poll_id: Id


class PollClose(ClientMessage, tag="poll_close"):
    poll_id: Id
    show_results: bool = False


class PollShowResults(ClientMessage, tag="poll_show_results"):
    poll_id: Id


class PollVote(ClientMessage, tag="poll_vote"):
    poll_id: Id
    choices: Annotated[list[int], msgspec.Meta(max_length=10)]


class PollChangeVote(ClientMessage, tag="poll_change_vote"):
    poll_id: Id
    choices: Annotated[list[int], msgspec.Meta(max_length=10)]


class HandRaise(ClientMessage, tag="hand_raise"):
    pass


class HandLower(ClientMessage, tag="hand_lower"):
    user_id: Id | None = None
    """Whose hand (trainers); a learner lowers their own and leaves it out."""


class Reaction(ClientMessage, tag="reaction"):
    kind: ReactionKind


class SetLowBandwidth(ClientMessage, tag="set_low_bandwidth"):
    on: bool


class SessionStart(ClientMessage, tag="session_start"):
    pass


class SessionEnd(ClientMessage, tag="session_end"):
    pass


class SigningOpen(ClientMessage, tag="signing_open"):
    half: Literal["morning", "afternoon"]
    minutes: Annotated[int, msgspec.Meta(ge=1, le=240)] | None = None


class SigningClose(ClientMessage, tag="signing_close"):
    pass


class AttendanceSign(ClientMessage, tag="attendance_sign"):
    pass


CLIENT_MESSAGES: tuple[type[ClientMessage], ...] = (
    Ping,
    HeartbeatIn,
    ChatSend,
    ChatDelete,
    ChatMute,
    ChatUnmute,
    QuestionVote,
    QuestionAnswer,
    PollCreate,
    PollLaunch,
    PollClose,
    PollShowResults,
    PollVote,
    PollChangeVote,
    HandRaise,
    HandLower,
    Reaction,
    SetLowBandwidth,
    SessionStart,
    SessionEnd,
    SigningOpen,
    SigningClose,
    AttendanceSign,
)


# ---- server -> client ---------------------------------------------------------------------
class Reply(msgspec.Struct, tag_field="type", kw_only=True):
    """A message to one socket only (no ``seq``)."""


class Event(msgspec.Struct, tag_field="type", kw_only=True):
    """A broadcast to the cohort (or its staff); ``seq`` is set when published."""

    seq: int = 0


class Participant(msgspec.Struct, kw_only=True):
    user_id: int
    display_name: str
    role: str
    state: ParticipantState
    hand_raised: bool = False


class SessionInfo(msgspec.Struct, kw_only=True):
    class_session_id: int
    started_at: dt.datetime


class Welcome(Reply, tag="welcome"):
    protocol: int
    epoch: str
    seq: int
    resumed: bool
    you: Participant
    cohort_id: int
    staff: bool
    session: SessionInfo | None = None
    participants: list[Participant] = []
    chat: list[ChatMessageOut] = []
    questions: list[ChatMessageOut] = []
    polls: list[PollOut] = []
    live_poll: PollOut | None = None
    results: PollResults | None = None
    my_ballot: list[int] | None = None
    reactions: dict[str, int] | None = None
    signing: WindowOut | None = None
    signed: bool = False
    muted: bool = False
    cohort_name: str = ""
    heartbeat_s: float | None = None
    """How often the server sends ``heartbeat``; no frame for twice that: the link is dead."""


class Reload(Reply, tag="reload"):
    reason: str


class Error(Reply, tag="error"):
    code: str
    detail: str
    ref: str | None = None
    limit: int | None = None


class Forbidden(Reply, tag="forbidden"):
    message_type: str
    detail: str
    ref: str | None = None


class RateLimited(Reply, tag="rate_limited"):
    message_type: str
    retry_after: int
    ref: str | None = None


class Ack(Reply, tag="ack"):
    ref: str


class Pong(Reply, tag="pong"):
    ref: str | None = None


class Heartbeat(Reply, tag="heartbeat"):
    """Sent every ``interval_s``: the link is alive; the client answers ``heartbeat``."""

    interval_s: float


class ChatMessage(Event, tag="chat_message"):
    message: ChatMessageOut


class ChatDeleted(Event, tag="chat_deleted"):
    message_id: int


class ChatMuted(Event, tag="chat_muted"):
    user_id: int


class ChatUnmuted(Event, tag="chat_unmuted"):
    user_id: int


class QuestionVoted(Event, tag="question_voted"):
    message_id: int
    votes: int


class QuestionAnswered(Event, tag="question_answered"):
    message_id: int


class PollCreated(Event, tag="poll_created"):
    poll: PollOut


class PollLaunched(Event, tag="poll_launched"):
    poll: PollOut


class PollResultsEvent(Event, tag="poll_results"):
    results: PollResults


class PollClosed(Event, tag="poll_closed"):
    poll: PollOut


class HandRaised(Event, tag="hand_raised"):
    user_id: int
    display_name: str


class HandLowered(Event, tag="hand_lowered"):
    user_id: int
    by: int


class Reactions(Event, tag="reactions"):
    counts: dict[str, int]
    window_s: int


class Presence(Event, tag="presence"):
    participant: Participant
    connected: bool


class SessionStarted(Event, tag="session_started"):
    session: SessionInfo


class SessionEnded(Event, tag="session_ended"):
    class_session_id: int
    ended_at: dt.datetime


class SigningOpened(Event, tag="signing_opened"):
    window: WindowOut


class SigningClosed(Event, tag="signing_closed"):
    window_id: int


class AttendanceSigned(Event, tag="attendance_signed"):
    user_id: int
    signed_at: dt.datetime


class DocumentNotice(msgspec.Struct, kw_only=True):
    id: int
    title: str
    original_name: str
    media_type: str
    size: int
    download_url: str
    preview_url: str | None


class DocumentPushed(Event, tag="document_pushed"):
    document: DocumentNotice


SERVER_MESSAGES: tuple[type[Any], ...] = (
    Welcome,
    Reload,
    Error,
    Forbidden,
    RateLimited,
    Ack,
    Pong,
    Heartbeat,
    ChatMessage,
    ChatDeleted,
    ChatMuted,
    ChatUnmuted,
    QuestionVoted,
    QuestionAnswered,
    PollCreated,
    PollLaunched,
    PollResultsEvent,
    PollClosed,
    HandRaised,
    HandLowered,
    Reactions,
    Presence,
    SessionStarted,
    SessionEnded,
    SigningOpened,
    SigningClosed,
    AttendanceSigned,
    DocumentPushed,
)


# ---- media signalling (appliance/live/media.py; the relay: docs/media.md) -------------------
MediaSlot = Literal["audio", "camera", "screen"]
MediaLevel = Literal["full", "camera_half", "camera_quarter", "screen", "audio"]
Sdp = Annotated[str, msgspec.Meta(min_length=1, max_length=60_000)]


class MediaPublish(ClientMessage, tag="media_publish"):
    """The trainer's offer (first one and every renegotiation)."""

    sdp: Sdp
    slots: Annotated[dict[str, MediaSlot], msgspec.Meta(max_length=8)] | None = None


class MediaUnpublish(ClientMessage, tag="media_unpublish"):
    pass


class MediaSubscribe(ClientMessage, tag="media_subscribe"):
    pass


class MediaAnswerIn(ClientMessage, tag="media_answer"):
    """A learner's answer to the relay's ``media_offer``."""

    sdp: Sdp


class MediaQualitySet(ClientMessage, tag="media_quality"):
    level: MediaLevel


MEDIA_CLIENT_MESSAGES: tuple[type[ClientMessage], ...] = (
    MediaPublish,
    MediaUnpublish,
    MediaSubscribe,
    MediaAnswerIn,
    MediaQualitySet,
)


class MediaConfig(Reply, tag="media_config"):
    ice_servers: list[dict[str, str]]
    tracks: dict[str, bool]
    """The trainer's tracks live now (then ``media_tracks`` tells every change)."""


class MediaOffer(Reply, tag="media_offer"):
    sdp: str
    slots: dict[str, str]


class MediaAnswer(Reply, tag="media_answer"):
    sdp: str


class MediaTracks(Event, tag="media_tracks"):
    tracks: dict[str, bool]


class MediaQuality(Reply, tag="media_quality"):
    level: str
    automatic: bool
    reason: str


class MediaClosed(Reply, tag="media_closed"):
    reason: str


MEDIA_SERVER_MESSAGES: tuple[type[Any], ...] = (
    MediaConfig,
    MediaOffer,
    MediaAnswer,
    MediaTracks,
    MediaQuality,
    MediaClosed,
)


def tag_of(cls: type[Any]) -> str:
    """The ``type`` value of a message class."""
    return str(cls.__struct_config__.tag)


# ---- recording (appliance/live/recording.py; replays: docs/replays.md) ----------------------
class RecordingStart(ClientMessage, tag="recording_start"):
    """The trainer starts recording the running class session (the cohort must allow it)."""


class RecordingStop(ClientMessage, tag="recording_stop"):
    pass


RECORDING_CLIENT_MESSAGES: tuple[type[ClientMessage], ...] = (RecordingStart, RecordingStop)


class RecordingState(Reply, tag="recording_state"):
    """Sent to each socket after ``welcome``: whether the cohort records classes, its notice,
    and whether this class is being recorded now."""

    enabled: bool
    notice: str
    recording: bool
    started_at: dt.datetime | None = None


class RecordingChanged(Event, tag="recording_changed"):
    """Recording started or ended (``reason``: why it ended; staff-facing details in the
    trainer's console)."""

    recording: bool
    notice: str = ""
    started_at: dt.datetime | None = None
    reason: str | None = None
    recording_id: int | None = None


RECORDING_SERVER_MESSAGES: tuple[type[Any], ...] = (RecordingState, RecordingChanged)
