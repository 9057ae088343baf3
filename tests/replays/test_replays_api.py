"""Replays over HTTP and the classroom socket, on SQLite and PostgreSQL, against a real server
for the socket: the cohort's policy, who reads what, files with Range/ETag, retention, quota,
recordings left open by a killed server."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from appliance.accounts import services as acc
from appliance.accounts.tables import ClassSession, Cohort
from appliance.app import create_app
from appliance.chat.tables import ChatMessage
from appliance.replays import services
from appliance.replays.tables import Recording, RecordingPolicy
from appliance.settings import Settings
from tests.documents import samples
from tests.helpers.classroom import LiveServer
from tests.helpers.world import ROLES, Client, World, make_settings, sign_in_as
from tests.replays.media import write_recording


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url=database_url, recording_check_s=0.3)


async def _as(client: Client, world: World, who: str) -> None:
    client.cookies.clear()
    client.headers.pop("x-csrftoken", None)
    await client.prime_csrf()
    if who in ROLES:
        await sign_in_as(client, world, who)
    elif who == "other_learner":
        link = await acc.issue_link(
            world.other_cohort.id, world.other_learner.id, base_url="http://t", ttl_days=3
        )
        await client.join(link.url.removeprefix("http://t"))
    else:
        await client.login(getattr(world, who).email)


async def _enable(cohort_id: int, **kw: object) -> None:
    await RecordingPolicy(
        cohort=cohort_id, enabled=True, notice="Cette classe est enregistrée.", **kw
    ).save()


async def _recorded(
    settings: Settings, world: World, *, seconds: float = 2.0, minutes_ago: int = 30
) -> Recording:
    """A finished recording of a class session of the cohort, with files and one chat line."""
    started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes_ago)
    cs = ClassSession(
        cohort=world.cohort.id, started_at=started, ended_at=started + dt.timedelta(minutes=20)
    )
    await cs.save()
    row = Recording(cohort=world.cohort.id, class_session=cs.id, directory="", started_at=started)
    await row.save()
    path = services.directory_of(settings, world.cohort.id, row.id)
    row.directory = str(path.relative_to(settings.data_dir))
    await asyncio.to_thread(write_recording, path, seconds, segments=True)
    result = await services.finalize(settings, row)
    await services.end_recording(row, "stopped", result)
    await ChatMessage(
        cohort=world.cohort.id,
        class_session=cs.id,
        author=world.learner.id,
        text="<img src=x onerror=alert(1)> bonjour",
        created_at=started + dt.timedelta(seconds=1.5),
    ).save()
    return row


async def test_policy_is_for_admins_and_off_by_default(client: Client, world: World) -> None:
    cid = world.cohort.id
    await _as(client, world, "admin")
    r = await client.get(f"/api/admin/cohorts/{cid}/recording")
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["enabled"] is False and got["retention_days"] == 30 and got["chat_names"] == "names"
    assert got["expires_on"] == str(dt.date(2026, 11, 2) + dt.timedelta(days=60 + 30))
    body = {
        "enabled": True,
        "notice": "Enregistré",
        "chat_names": "initials",
        "retention_days": 10,
        "quota_bytes": 1000,
    }
    r = await client.put(f"/api/admin/cohorts/{cid}/recording", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["chat_names"] == "initials"
    bad = await client.put(
        f"/api/admin/cohorts/{cid}/recording", json={**body, "chat_names": "all"}
    )
    assert bad.status_code == 400
    bad = await client.put(
        f"/api/admin/cohorts/{cid}/recording", json={**body, "retention_days": -1}
    )
    assert bad.status_code == 400
    assert (await client.get("/api/admin/cohorts/999999/recording")).status_code == 404
    for who, admin_status, staff_status in (
        ("trainer", 403, 200),
        ("operator", 403, 403),
        ("learner", 403, 403),
        ("other_trainer", 403, 404),
    ):
        await _as(client, world, who)
        assert (
            await client.put(f"/api/admin/cohorts/{cid}/recording", json=body)
        ).status_code == admin_status
        r = await client.get(f"/api/cohorts/{cid}/recording")
        assert r.status_code == staff_status, (who, r.text)
    await _as(client, world, "trainer")
    assert (await client.get(f"/api/cohorts/{cid}/recording")).json()["enabled"] is True


async def test_who_reads_a_replay(client: Client, world: World, settings: Settings) -> None:
    row = await _recorded(settings, world)
    cid = world.cohort.id
    base = f"/api/cohorts/{cid}/replays"
    await _as(client, world, "learner")
    listed = (await client.get(base + "/")).json()
    assert [x["id"] for x in listed] == [row.id]
    assert set(listed[0]["files"]) == {"audio", "camera", "screen"}
    assert listed[0]["failure"] is None and listed[0]["duration_s"] == pytest.approx(2.0, abs=0.1)
    detail = (await client.get(f"{base}/{row.id}")).json()
    assert set(detail["presence"]) == {"camera", "screen"}
    assert detail["presence"]["screen"] == [[0.0, pytest.approx(1.933, abs=0.01)]]
    chat = [i for i in detail["timeline"] if i["kind"] == "chat"]
    assert chat[0]["text"] == "<img src=x onerror=alert(1)> bonjour"  # the page escapes it
    assert chat[0]["t"] == pytest.approx(1.5) and chat[0]["author"] == "Learner"
    url = listed[0]["files"]["camera"]
    full = await client.get(url)
    assert full.status_code == 200 and full.headers["content-type"].startswith("video/webm")
    assert full.content[:4] == b"\x1aE\xdf\xa3"  # EBML: a Matroska file
    etag = full.headers["etag"]
    part = await client.get(url, headers={"Range": "bytes=4-99"})
    assert part.status_code == 206 and part.content == full.content[4:100]
    assert part.headers["content-range"] == f"bytes 4-99/{len(full.content)}"
    assert (await client.get(url, headers={"If-None-Match": etag})).status_code == 304
    assert (await client.get(url, headers={"Range": "bytes=999999-"})).status_code == 416
    assert (await client.get(f"{base}/{row.id}/files/..%2Fsecret_key")).status_code == 404
    assert (await client.get(f"{base}/{row.id}/files/other")).status_code == 404
    # initials, then no names
    await RecordingPolicy(cohort=cid, chat_names="initials").save()
    detail = (await client.get(f"{base}/{row.id}")).json()
    assert [i["author"] for i in detail["timeline"] if i["kind"] == "chat"] == ["L."]
    await RecordingPolicy.update({RecordingPolicy.chat_names: "none"}).where(
        RecordingPolicy.cohort == cid
    )
    detail = (await client.get(f"{base}/{row.id}")).json()
    assert [i["author"] for i in detail["timeline"] if i["kind"] == "chat"] == [""]

    # a learner of another cohort: 404 on everything; an operator: 403, reads nothing
    for who, status in (("other_learner", 404), ("other_trainer", 404), ("operator", 403)):
        await _as(client, world, who)
        for path in (base + "/", f"{base}/{row.id}", url):
            r = await client.get(path)
            assert r.status_code == status, (who, path, r.status_code)
            assert b"EBML" not in r.content and r.content[:4] != b"\x1aE\xdf\xa3"
        assert (await client.delete(f"{base}/{row.id}")).status_code == status
    # the learner may not delete; the trainer may
    await _as(client, world, "learner")
    assert (await client.delete(f"{base}/{row.id}")).status_code == 403
    await _as(client, world, "trainer")
    directory = services.directory_of(settings, cid, row.id)
    assert directory.is_dir()
    assert (await client.delete(f"{base}/{row.id}")).status_code == 204
    assert not directory.exists()
    assert (await client.get(base + "/")).json() == []
    assert (await client.get(url)).status_code == 404


async def test_an_expired_replay_is_gone_from_disk_and_list(
    client: Client, world: World, settings: Settings
) -> None:
    row = await _recorded(settings, world)
    directory = services.directory_of(settings, world.cohort.id, row.id)
    keep = await _recorded(settings, world)  # kept: the other cohort's retention is not over
    await Recording.update({Recording.cohort: world.other_cohort.id}).where(Recording.id == keep.id)
    await Cohort.update({Cohort.last_day: dt.date(2026, 1, 10)}).where(Cohort.id == world.cohort.id)
    await RecordingPolicy(cohort=world.cohort.id, retention_days=5).save()
    await _as(client, world, "learner")
    base = f"/api/cohorts/{world.cohort.id}/replays"
    # past its retention: hidden at once, deleted by the sweep
    assert (await client.get(base + "/")).json() == []
    assert (await client.get(f"{base}/{row.id}/files/camera")).status_code == 404
    assert await services.sweep_expired(settings, dt.date(2026, 1, 15)) == 0  # day 5: kept
    assert directory.is_dir()
    assert await services.sweep_expired(settings) == 1
    assert not directory.exists()
    assert await Recording.count().where(Recording.id == row.id) == 0
    assert await Recording.count().where(Recording.id == keep.id) == 1


async def test_a_recording_left_open_is_finalized_at_start(
    client: Client, world: World, settings: Settings, app: Litestar
) -> None:
    started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    cs = ClassSession(cohort=world.cohort.id, started_at=started)
    await cs.save()
    row = Recording(cohort=world.cohort.id, class_session=cs.id, directory="x", started_at=started)
    await row.save()
    path = services.directory_of(settings, world.cohort.id, row.id)
    await asyncio.to_thread(write_recording, path, 1.5, ("audio", "camera"), segments=True)
    async with AsyncTestClient(app=create_app(settings)) as fresh:  # a new start: the lifespan runs
        await sign_in_as(Client(app=fresh.app), world, "anonymous")
    got = await Recording.objects().where(Recording.id == row.id).first()
    assert got is not None
    assert got.status == "ready" and got.end_reason == "server_restarted"
    assert got.camera_bytes > 0 and got.screen_bytes == 0
    assert sorted(p.name for p in path.iterdir()) == ["audio.webm", "camera.webm"]


# ---- the socket: the trainer's start and stop, what everyone sees ----------------------------
async def _join(live: LiveServer, world: World, role: str):
    return await live.connect(await live.cookie(world, role), world.cohort.id)


async def test_recording_over_the_socket(
    live: LiveServer, world: World, settings: Settings
) -> None:
    trainer = await _join(live, world, "trainer")
    state = await trainer.expect("recording_state")
    assert state["enabled"] is False and state["recording"] is False
    await trainer.request("session_start")
    refused = await trainer.request("recording_start", expect="error")
    assert refused["code"] == "recording_disabled"
    await _enable(world.cohort.id)
    learner = await _join(live, world, "learner")
    state = await learner.expect("recording_state")
    assert state == {
        "type": "recording_state",
        "enabled": True,
        "notice": "Cette classe est enregistrée.",
        "recording": False,
        "started_at": None,
    }
    forbidden = await learner.request("recording_start", expect="forbidden")
    assert forbidden["message_type"] == "recording_start"
    forbidden = await learner.request("recording_stop", expect="forbidden")
    operator = await _join(live, world, "operator")  # operators watch; they never record
    forbidden = await operator.request("recording_start", expect="forbidden")
    assert forbidden["message_type"] == "recording_start"

    await trainer.request("recording_start")
    on = await learner.expect("recording_changed", recording=True)
    assert on["notice"] == "Cette classe est enregistrée."
    again = await trainer.request("recording_start", expect="error")
    assert again["code"] == "already_recording"
    late = await _join(live, world, "learner")  # the classroom says so to whoever joins
    assert (await late.expect("recording_state"))["recording"] is True

    row = await Recording.objects().where(Recording.id == on["recording_id"]).first()
    assert row is not None and row.status == "recording"
    directory = services.directory_of(settings, world.cohort.id, row.id)
    # what the recorder (branch rec) writes meanwhile: segments in the contract's layout
    await asyncio.to_thread(write_recording, directory, 1.0, segments=True)
    # the class goes on: a chat line, a poll, a pushed document
    await learner.request("chat_send", text="Je vois <b>bien</b>")
    await trainer.request("poll_create", question="Clair ?", choices=["oui", "non"])
    poll = (await trainer.expect("poll_created"))["poll"]
    await trainer.request("poll_launch", poll_id=poll["id"])
    async with httpx.AsyncClient(base_url=live.base) as c:
        cookie = await live.cookie(world, "trainer")
        c.headers["cookie"] = cookie
        c.headers["x-csrftoken"] = cookie.split("csrftoken=")[1].split(";")[0]
        r = await c.post(
            f"/api/cohorts/{world.cohort.id}/documents/",
            params={"filename": "plan.pdf", "title": "Plan <du> jour"},
            content=samples.pdf(),
        )
        assert r.status_code == 201, r.text
        r = await c.post(f"/api/cohorts/{world.cohort.id}/documents/{r.json()['id']}/push")
        assert r.status_code == 200, r.text
    await learner.expect("document_pushed")
    await trainer.request("recording_stop")
    off = await learner.expect("recording_changed", recording=False)
    assert off["reason"] == "stopped"
    row = await Recording.objects().where(Recording.id == row.id).first()
    assert row is not None and row.status == "ready" and row.ended_at is not None
    assert row.audio_bytes > 0 and row.camera_bytes > 0 and row.screen_bytes > 0
    assert (await trainer.request("recording_stop", expect="error"))["code"] == "not_recording"
    detail = await services.replay_detail(world.cohort.id, row.id, staff=False)
    kinds = [(i.kind, i.text) for i in detail.timeline]
    assert kinds == [
        ("chat", "Je vois <b>bien</b>"),
        ("poll", "Clair ?"),
        ("document", "Plan <du> jour"),
    ]
    assert detail.timeline[2].url is not None and detail.timeline[2].url.endswith("/download")

    # another recording stops with the class session
    await trainer.request("recording_start")
    await learner.expect("recording_changed", recording=True)
    await trainer.request("session_end")
    off = await learner.expect("recording_changed", recording=False)
    assert off["reason"] == "session_ended"
    # nothing was written by the stand-in recorder: listed for staff as failed, not for learners
    async with httpx.AsyncClient(base_url=live.base) as c:
        c.headers["cookie"] = await live.cookie(world, "learner")
        listed = (await c.get(f"/api/cohorts/{world.cohort.id}/replays/")).json()
        assert [x["id"] for x in listed] == [row.id]
        c.headers["cookie"] = await live.cookie(world, "trainer")
        listed = (await c.get(f"/api/cohorts/{world.cohort.id}/replays/")).json()
        assert [x["status"] for x in listed] == ["failed", "ready"]
        assert listed[0]["end_reason"] == "session_ended"
    assert (await trainer.request("recording_start", expect="error"))[
        "code"
    ] == "session_not_started"


async def test_the_quota_refuses_and_stops(
    live: LiveServer, world: World, settings: Settings
) -> None:
    await _enable(world.cohort.id, quota_bytes=4000)
    trainer = await _join(live, world, "trainer")
    await trainer.request("session_start")
    await trainer.request("recording_start")
    on = await trainer.expect("recording_changed", recording=True)
    directory = services.directory_of(settings, world.cohort.id, on["recording_id"])
    await asyncio.to_thread(write_recording, directory, 1.0, ("audio",), segments=True)
    off = await trainer.expect("recording_changed", recording=False, timeout=10)
    assert off["reason"] == "quota"
    row = await Recording.objects().where(Recording.id == on["recording_id"]).first()
    assert row is not None and row.end_reason == "quota" and "quota" in (row.failure or "")
    refused = await trainer.request("recording_start", expect="error")
    assert refused["code"] == "recording_quota" and "of their 4000 bytes" in refused["detail"]


async def test_the_recorder_s_end_updates_the_row(
    client: Client, world: World, settings: Settings
) -> None:
    """RecordingEnded as branch rec's bridge sends it: an error reason with the recorder's
    result, or no result (the web side finalizes); an absolute path or a relative one."""
    from appliance.live import live_plugin
    from appliance.live.media import MediaBridge
    from appliance.live.recording import Active, LiveRecordings
    from appliance.media import RecordingEnded, finalize_directory

    await _enable(world.cohort.id)
    cid = world.cohort.id
    _, registry = live_plugin(settings)
    recordings = LiveRecordings(registry, MediaBridge(registry))
    cs = ClassSession(cohort=cid, started_at=dt.datetime.now(dt.UTC))
    await cs.save()
    for reason, absolute, finalized_by_recorder in (
        ("disk_full", True, True),
        ("relay_restarted", False, False),
    ):
        row, _ = await services.start_recording(settings, cid, cs.id, world.trainer.id)
        directory = services.directory_of(settings, cid, row.id)
        await asyncio.to_thread(write_recording, directory, 1.0, ("audio",), segments=True)
        result = (
            await asyncio.to_thread(finalize_directory, directory)
            if finalized_by_recorder
            else None
        )
        recordings.active[cid] = Active(row.id, directory, row.started_at, "", 10**12)
        path = str(directory.resolve()) if absolute else str(directory)
        await recordings.ended(RecordingEnded(cid, path, reason, result))  # type: ignore[arg-type]
        assert cid not in recordings.active
        got = await Recording.objects().where(Recording.id == row.id).first()
        assert got is not None and got.status == "ready" and got.end_reason == reason
        assert got.audio_bytes > 0 and got.failure is not None
        assert sorted(p.name for p in directory.iterdir()) == ["audio.webm"]
    # A directory outside the layout is no recording of ours: nothing changes, nothing fails.
    await recordings.ended(RecordingEnded(cid, "/elsewhere/3", "stopped", None))


def test_presence_finds_when_a_source_was_off(tmp_path: Path) -> None:
    """The screen off from 1 s to 3 s: two spans; the result is kept beside the files."""
    from appliance.replays.presence import presence
    from tests.replays.media import write_kind

    write_kind(tmp_path / "screen.webm", "screen", 5.0, gap=(1.0, 3.0))
    write_kind(tmp_path / "camera.webm", "camera", 5.0)
    got = presence(tmp_path)
    assert got["camera"] == [[0.0, pytest.approx(4.933, abs=0.01)]]
    [first, second] = got["screen"]
    assert first == [0.0, pytest.approx(0.933, abs=0.01)]
    assert second == [pytest.approx(3.0, abs=0.01), pytest.approx(4.933, abs=0.01)]
    assert (tmp_path / "presence.json").is_file() and presence(tmp_path) == got
