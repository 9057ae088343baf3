"""Replays: recording policy, recording rows, the replay list and timeline, retention, quota.

Paths: a recording's directory is built here from the cohort and recording ids only
(``data_dir/recordings/{cohort_id}/{recording_id}``); nothing a user sends is part of a path.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import shutil
import time
from pathlib import Path

from appliance import clock
from appliance.accounts.services.cohorts import get_cohort
from appliance.accounts.tables import Cohort, Enrolment, Role
from appliance.chat.tables import ChatMessage
from appliance.errors import DomainError, not_found
from appliance.media import RecordingFiles, finalize_directory
from appliance.polls.tables import Poll
from appliance.replays import schemas as s
from appliance.replays.presence import presence
from appliance.replays.tables import Recording, RecordingDocument, RecordingPolicy, RecordingStatus
from appliance.settings import Settings

__all__ = [
    "active_recording",
    "cohort_used_bytes",
    "delete_recording",
    "directory_of",
    "end_recording",
    "get_policy",
    "get_recording",
    "list_replays",
    "recover_interrupted",
    "replay_detail",
    "set_policy",
    "start_recording",
    "sweep_expired",
]

log = logging.getLogger("estrade.replays")

ERROR_REASONS = frozenset({"write_error", "disk_full", "relay_restarted", "quota"})


def directory_of(settings: Settings, cohort_id: int, recording_id: int) -> Path:
    return Path(settings.data_dir) / "recordings" / str(int(cohort_id)) / str(int(recording_id))


# ---- policy ---------------------------------------------------------------------------------
async def _policy_row(cohort_id: int) -> RecordingPolicy:
    row = await RecordingPolicy.objects().where(RecordingPolicy.cohort == cohort_id).first()
    return row if row is not None else RecordingPolicy(cohort=cohort_id)


def expires_on(cohort: Cohort, retention_days: int) -> dt.date:
    return cohort.last_day + dt.timedelta(days=retention_days)


async def get_policy(cohort_id: int) -> s.PolicyOut:
    cohort = await get_cohort(cohort_id)
    row = await _policy_row(cohort_id)
    return s.PolicyOut(
        cohort_id=cohort_id,
        enabled=row.enabled,
        notice=row.notice,
        chat_names=row.chat_names,  # type: ignore[arg-type]
        retention_days=row.retention_days,
        quota_bytes=row.quota_bytes,
        used_bytes=await cohort_used_bytes(cohort_id),
        expires_on=expires_on(cohort, row.retention_days),
    )


async def notice_of(cohort_id: int) -> tuple[bool, str]:
    """(recording on, notice) of a cohort: one small query, for every socket that joins."""
    row = await (
        RecordingPolicy.select(RecordingPolicy.enabled, RecordingPolicy.notice)
        .where(RecordingPolicy.cohort == cohort_id)
        .first()
    )
    return (False, "") if row is None else (bool(row["enabled"]), str(row["notice"]))


async def set_policy(cohort_id: int, data: s.PolicyIn) -> s.PolicyOut:
    await get_cohort(cohort_id)
    row = await _policy_row(cohort_id)
    row.enabled = data.enabled
    row.notice = data.notice.strip()
    row.chat_names = data.chat_names
    row.retention_days = data.retention_days
    row.quota_bytes = data.quota_bytes
    row.updated_at = clock.utcnow()
    await row.save()
    return await get_policy(cohort_id)


# ---- recordings -----------------------------------------------------------------------------
async def cohort_used_bytes(cohort_id: int, settings: Settings | None = None) -> int:
    """Bytes of the cohort's finished recordings (plus, with ``settings``, what the running
    one has written so far)."""
    rows = await Recording.select(
        Recording.id,
        Recording.status,
        Recording.audio_bytes,
        Recording.camera_bytes,
        Recording.screen_bytes,
    ).where(Recording.cohort == cohort_id)
    total = 0
    for r in rows:
        if r["status"] == RecordingStatus.recording.value:
            if settings is not None:
                path = directory_of(settings, cohort_id, r["id"])
                total += await asyncio.to_thread(directory_bytes, path)
            continue
        total += r["audio_bytes"] + r["camera_bytes"] + r["screen_bytes"]
    return total


def directory_bytes(path: Path) -> int:
    """Bytes of the files in ``path`` (not recursive: a recording directory is flat)."""
    try:
        return sum(e.stat().st_size for e in path.iterdir() if e.is_file())
    except FileNotFoundError:
        return 0


async def active_recording(cohort_id: int) -> Recording | None:
    return (
        await Recording.objects()
        .where(
            (Recording.cohort == cohort_id) & (Recording.status == RecordingStatus.recording.value)
        )
        .first()
    )


async def start_recording(
    settings: Settings, cohort_id: int, class_session_id: int, user_id: int
) -> tuple[Recording, s.PolicyOut]:
    """A new row for a recording starting now, after the policy and quota checks."""
    policy = await get_policy(cohort_id)
    if not policy.enabled:
        raise DomainError(
            "recording_disabled", "recording is not enabled for this cohort (an admin decides)"
        )
    left = await active_recording(cohort_id)
    if left is not None and settings.redis_url and not await _written_lately(settings, left):
        # Several hosts: the host that recorded this cohort died and the cohort moved here
        # (this process's manager holds no recording for it): close that one, start anew.
        log.info("recording %s: its host stopped writing it, finalized", left.id)
        await _close_interrupted(settings, left)
        left = None
    if left is not None:
        raise DomainError("already_recording", "this class is already being recorded")
    if policy.used_bytes >= policy.quota_bytes:
        raise DomainError(
            "recording_quota",
            f"the cohort's recordings use {policy.used_bytes} of their {policy.quota_bytes}"
            " bytes: delete old replays or ask an admin for a larger quota",
        )
    row = Recording(
        cohort=cohort_id,
        class_session=class_session_id,
        started_by=user_id,
        directory="",
        started_at=clock.utcnow(),
    )
    await row.save()
    path = directory_of(settings, cohort_id, row.id)
    row.directory = str(path.relative_to(Path(settings.data_dir)))
    await row.save(columns=[Recording.directory])
    return row, policy


async def end_recording(
    row: Recording, reason: str, result: RecordingFiles, failure: str | None = None
) -> Recording:
    """Record how a recording ended and what it left on disk."""
    row.ended_at = row.ended_at or clock.utcnow()
    row.end_reason = reason
    row.duration_s = result.duration_s
    row.audio_bytes = result.files.get("audio", 0)
    row.camera_bytes = result.files.get("camera", 0)
    row.screen_bytes = result.files.get("screen", 0)
    has_video = bool(result.files.get("camera") or result.files.get("screen"))
    ok = bool(result.files) and (has_video or bool(result.files.get("audio")))
    if not ok:
        row.status = RecordingStatus.failed.value
        row.failure = failure or "nothing was recorded (the trainer sent no media)"
    else:
        row.status = RecordingStatus.ready.value
        row.failure = failure
    await row.save()
    return row


def _cohort_of(row: Recording) -> int:
    return row.cohort if isinstance(row.cohort, int) else row.cohort.id


async def finalize(settings: Settings, row: Recording) -> RecordingFiles:
    # Built from the ids again: the stored directory is for people reading the table.
    path = directory_of(settings, _cohort_of(row), row.id)
    return await asyncio.to_thread(finalize_directory, path)


STALE_S = 30.0
"""Several hosts: a recording whose files were not written for this long has no host writing
it any more (its host died); a fresher one is another host's, running."""


def last_write(path: Path) -> float:
    """The latest modification time of ``path`` and its files (0 when there is none)."""
    try:
        times = [path.stat().st_mtime] + [e.stat().st_mtime for e in path.iterdir() if e.is_file()]
    except FileNotFoundError:
        return 0.0
    return max(times)


async def _written_lately(settings: Settings, row: Recording) -> bool:
    path = directory_of(settings, _cohort_of(row), row.id)
    return time.time() - await asyncio.to_thread(last_write, path) < STALE_S


async def _close_interrupted(settings: Settings, row: Recording) -> None:
    try:
        result = await finalize(settings, row)
    except Exception as exc:  # one damaged directory must not stop the server
        log.exception("cannot finalize recording %s", row.id)
        await end_recording(row, "server_restarted", RecordingFiles(0.0, {}), str(exc))
        return
    await end_recording(row, "server_restarted", result, "the server stopped during the recording")


async def recover_interrupted(settings: Settings) -> int:
    """At start-up: recordings a killed server left open are finalized (repaired or trimmed
    by the recorder) and listed. Returns how many. With several hosts (``redis_url``), a
    recording written in the last :data:`STALE_S` seconds is another host's, running: left
    alone (:func:`start_recording` closes it later if that host died)."""
    rows = await Recording.objects().where(Recording.status == RecordingStatus.recording.value)
    if settings.redis_url:
        rows = [row for row in rows if not await _written_lately(settings, row)]
    for row in rows:
        await _close_interrupted(settings, row)
    return len(rows)


async def get_recording(cohort_id: int, recording_id: int) -> Recording:
    row = (
        await Recording.objects()
        .where((Recording.cohort == cohort_id) & (Recording.id == recording_id))
        .first()
    )
    if row is None:
        raise not_found("no such replay")
    return row


def _files(row: Recording) -> dict[str, int]:
    sizes = {"audio": row.audio_bytes, "camera": row.camera_bytes, "screen": row.screen_bytes}
    return {k: v for k, v in sizes.items() if v}


def replay_out(row: Recording, staff: bool) -> s.ReplayOut:
    cid = row.cohort if isinstance(row.cohort, int) else row.cohort.id
    session = row.class_session if isinstance(row.class_session, int) else row.class_session.id
    files = _files(row) if row.status == RecordingStatus.ready.value else {}
    return s.ReplayOut(
        id=row.id,
        class_session_id=session,
        started_at=row.started_at,
        ended_at=row.ended_at,
        status=row.status,
        duration_s=row.duration_s,
        bytes=files,
        files={k: f"/api/cohorts/{cid}/replays/{row.id}/files/{k}" for k in files},
        end_reason=row.end_reason if staff else None,
        failure=row.failure if staff else None,
    )


async def _expired(cohort_id: int, today: dt.date | None = None) -> bool:
    cohort = await get_cohort(cohort_id)
    policy = await _policy_row(cohort_id)
    today = today or clock.utcnow().date()
    return today > expires_on(cohort, policy.retention_days)


async def list_replays(cohort_id: int, staff: bool) -> list[s.ReplayOut]:
    """Ready replays, newest first (staff also see running and failed ones)."""
    if await _expired(cohort_id):
        return []  # the sweep deletes them; until then nobody sees them
    query = Recording.objects().where(Recording.cohort == cohort_id)
    if not staff:
        query = query.where(Recording.status == RecordingStatus.ready.value)
    rows = await query.order_by(Recording.started_at, ascending=False)
    return [replay_out(r, staff) for r in rows]


async def readable_recording(cohort_id: int, recording_id: int, staff: bool) -> Recording:
    row = await get_recording(cohort_id, recording_id)
    if await _expired(cohort_id) or (not staff and row.status != RecordingStatus.ready.value):
        raise not_found("no such replay")
    return row


def initials(name: str) -> str:
    """ "Lina Martin" -> "L. M.": the first letters of the first and last words (of letters)."""
    words = [w for w in name.replace("-", " ").split() if w[:1].isalpha()]
    if len(words) > 2:
        words = [words[0], words[-1]]
    return " ".join(f"{w[0].upper()}." for w in words)


async def replay_detail(
    cohort_id: int, recording_id: int, staff: bool, settings: Settings | None = None
) -> s.ReplayDetail:
    row = await readable_recording(cohort_id, recording_id, staff)
    cohort = await get_cohort(cohort_id)
    policy = await _policy_row(cohort_id)
    start = row.started_at
    end = row.ended_at or clock.utcnow()
    session_id = row.class_session

    def t(at: dt.datetime) -> float:
        return round(max(0.0, (at - start).total_seconds()), 3)

    roles = {
        r["user"]: r["role"]
        for r in await Enrolment.select(Enrolment.user, Enrolment.role).where(
            Enrolment.cohort == cohort_id
        )
    }
    messages = (
        await ChatMessage.select(
            ChatMessage.text,
            ChatMessage.is_question,
            ChatMessage.created_at,
            ChatMessage.author,
            ChatMessage.author.display_name.as_alias("name"),
            ChatMessage.author.role.as_alias("user_role"),
        )
        .where(
            (ChatMessage.cohort == cohort_id)
            & (ChatMessage.class_session == session_id)
            & ChatMessage.deleted_at.is_null()
            & (ChatMessage.created_at >= start)
            & (ChatMessage.created_at <= end)
        )
        .order_by(ChatMessage.created_at)
    )
    items: list[s.TimelineItem] = []
    for m in messages:
        capacity = roles.get(m["author"], m["user_role"])
        is_learner = capacity == Role.learner.value
        name = m["name"]
        if is_learner and policy.chat_names == "initials":
            name = initials(name)
        elif is_learner and policy.chat_names == "none":
            name = ""
        items.append(
            s.TimelineItem(
                t=t(m["created_at"]),
                kind="question" if m["is_question"] else "chat",
                text=m["text"],
                author=name,
                author_role="learner" if is_learner else "staff",
            )
        )
    polls = await Poll.select(Poll.question, Poll.launched_at).where(
        (Poll.cohort == cohort_id)
        & Poll.launched_at.is_not_null()
        & (Poll.launched_at >= start)
        & (Poll.launched_at <= end)
    )
    items += [s.TimelineItem(t=t(p["launched_at"]), kind="poll", text=p["question"]) for p in polls]
    docs = await RecordingDocument.select(
        RecordingDocument.title, RecordingDocument.pushed_at, RecordingDocument.document
    ).where(RecordingDocument.recording == row.id)
    items += [
        s.TimelineItem(
            t=t(d["pushed_at"]),
            kind="document",
            text=d["title"],
            url=(
                f"/api/cohorts/{cohort_id}/documents/{d['document']}/download"
                if d["document"] is not None
                else None
            ),
        )
        for d in docs
    ]
    items.sort(key=lambda i: i.t)
    return s.ReplayDetail(
        replay=replay_out(row, staff),
        cohort_name=cohort.name,
        chat_names=policy.chat_names,  # type: ignore[arg-type]
        timeline=items,
        presence=(
            await asyncio.to_thread(presence, directory_of(settings, cohort_id, row.id))
            if settings is not None and row.status == RecordingStatus.ready.value
            else {}
        ),
    )


async def note_document(recording_id: int, document_id: int, title: str) -> None:
    await RecordingDocument(
        recording=recording_id, document=document_id, title=title, pushed_at=clock.utcnow()
    ).save()


async def delete_recording(settings: Settings, row: Recording) -> None:
    """The files, then the row (a running recording cannot be deleted: stop it first)."""
    if row.status == RecordingStatus.recording.value:
        raise DomainError("recording_running", "stop the recording before deleting it")
    path = directory_of(settings, _cohort_of(row), row.id)
    await asyncio.to_thread(_remove_tree, path)
    await Recording.delete().where(Recording.id == row.id)


def _remove_tree(path: Path) -> None:
    root = path.parent.parent
    if root.name != "recordings":  # never anything but a recording directory
        raise ValueError(f"not a recording directory: {path}")
    shutil.rmtree(path, ignore_errors=True)


async def sweep_expired(settings: Settings, today: dt.date | None = None) -> int:
    """Delete the recordings of every cohort past its retention (files and rows)."""
    today = today or clock.utcnow().date()
    cohort_ids = {
        r["cohort"]
        for r in await Recording.select(Recording.cohort).where(
            Recording.status != RecordingStatus.recording.value
        )
    }
    deleted = 0
    for cid in sorted(cohort_ids):
        if not await _expired(cid, today):
            continue
        rows = await Recording.objects().where(
            (Recording.cohort == cid) & (Recording.status != RecordingStatus.recording.value)
        )
        for row in rows:
            await delete_recording(settings, row)
            deleted += 1
    if deleted:
        log.info("deleted %d expired recording(s)", deleted)
    return deleted
