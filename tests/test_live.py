"""The classroom socket, driven over real sockets against uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.helpers.classroom import LiveServer
from tests.helpers.world import World


async def join(live: LiveServer, world: World, role: str, **params: Any):
    cookie = await live.cookie(world, role)
    return await live.connect(cookie, world.cohort.id, **params)


async def test_session_presence_and_chat(live: LiveServer, world: World) -> None:
    learner = await join(live, world, "learner")
    assert learner.welcome["protocol"] == 1
    assert learner.welcome["you"]["state"] == "waiting"
    assert learner.welcome["session"] is None
    trainer = await join(live, world, "trainer")
    assert trainer.welcome["staff"] is True
    assert {p["role"] for p in trainer.welcome["participants"]} == {"learner", "trainer"}
    await learner.expect("presence", connected=True)

    await trainer.request("session_start")
    started = await learner.expect("session_started")
    assert started["session"]["class_session_id"] > 0

    await learner.request("chat_send", text="Bonjour <b>tous</b> https://example.org")
    got = await trainer.expect("chat_message")
    assert got["message"]["text"] == "Bonjour <b>tous</b> https://example.org"
    assert got["message"]["author_id"] == world.learner.id

    # the trainer deletes it: everyone's view updates
    await trainer.request("chat_delete", message_id=got["message"]["id"])
    await learner.expect("chat_deleted", message_id=got["message"]["id"])

    # a late joiner sees the history and the running session
    await learner.request("chat_send", text="second")
    late = await join(live, world, "admin")
    assert [m["text"] for m in late.welcome["chat"]] == ["second"]
    assert late.welcome["session"] is not None

    await learner.request("set_low_bandwidth", on=True)
    p = await trainer.expect("presence", connected=True)
    while p["participant"]["user_id"] != world.learner.id:
        p = await trainer.expect("presence", connected=True)
    assert p["participant"]["state"] == "low_bandwidth"

    await trainer.request("session_end")
    await learner.expect("session_ended")
    await learner.close()
    gone = await trainer.expect("presence", connected=False)
    assert gone["participant"]["user_id"] == world.learner.id
    for peer in (trainer, late):
        await peer.close()


async def test_mute_and_questions(live: LiveServer, world: World) -> None:
    from appliance.accounts import services

    learner = await join(live, world, "learner")
    trainer = await join(live, world, "trainer")
    # a second learner of the same cohort
    world.other_learner_cohort = world.other_learner
    await services.enrol(world.cohort.id, world.other_learner.id)
    cookie2 = await live.cookie(world, "other_learner")
    # other_learner's link is for other_cohort: issue one for cohort
    link = await services.issue_link(
        world.cohort.id, world.other_learner.id, base_url=live.base, ttl_days=3
    )
    import httpx

    async with httpx.AsyncClient(base_url=live.base) as c:
        await c.get("/api/auth/csrf")
        r = await c.post(
            link.url.removeprefix(live.base),
            json={},
            headers={"x-csrftoken": c.cookies["csrftoken"]},
        )
        assert r.status_code == 200
        cookie2 = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
    second = await live.connect(cookie2, world.cohort.id)

    await learner.request("chat_send", text="Pourquoi ?", question=True)
    q = (await trainer.expect("chat_message"))["message"]
    assert q["question"] is True
    err = await learner.request("question_vote", expect="error", message_id=q["id"])
    assert err["code"] == "own_question"
    await second.request("question_vote", message_id=q["id"])
    voted = await trainer.expect("question_voted", message_id=q["id"])
    assert voted["votes"] == 1
    err = await second.request("question_vote", expect="error", message_id=q["id"])
    assert err["code"] == "already_voted"

    await learner.request("chat_send", text="Et ça ?", question=True)
    await trainer.expect("chat_message")
    fresh = await join(live, world, "trainer")
    assert [x["text"] for x in fresh.welcome["questions"]] == ["Pourquoi ?", "Et ça ?"]
    await trainer.request("question_answer", message_id=q["id"])
    await learner.expect("question_answered", message_id=q["id"])

    await trainer.request("chat_mute", user_id=world.learner.id)
    await learner.expect("chat_muted", user_id=world.learner.id)
    err = await learner.request("chat_send", expect="error", text="hello?")
    assert err["code"] == "muted"
    await second.request("chat_send", text="still me")  # others unaffected
    await trainer.request("chat_unmute", user_id=world.learner.id)
    await learner.request("chat_send", text="back")
    for peer in (learner, second, trainer, fresh):
        await peer.close()


async def test_polls(live: LiveServer, world: World) -> None:
    learner = await join(live, world, "learner")
    trainer = await join(live, world, "trainer")
    await trainer.request("session_start")
    await trainer.request(
        "poll_create", question="Café ou thé ?", choices=["café", "thé", "eau"], anonymous=False
    )
    poll = (await trainer.expect("poll_created"))["poll"]
    assert poll["status"] == "draft"
    assert not [m for m in await learner.quiet(0.2) if m["type"] == "poll_created"]

    err = await learner.request("poll_vote", expect="error", poll_id=poll["id"], choices=[0])
    assert err["code"] == "poll_not_live"
    await trainer.request("poll_launch", poll_id=poll["id"])
    launched = await learner.expect("poll_launched")
    assert launched["poll"]["choices"] == ["café", "thé", "eau"]

    err = await learner.request("poll_vote", expect="error", poll_id=poll["id"], choices=[3])
    assert err["code"] == "choice_out_of_range"
    err = await learner.request("poll_vote", expect="error", poll_id=poll["id"], choices=[0, 1])
    assert err["code"] == "one_choice_only"
    await learner.request("poll_vote", poll_id=poll["id"], choices=[1])
    res = await trainer.expect("poll_results", timeout=5)
    while res["results"]["ballots"] != 1:
        res = await trainer.expect("poll_results")
    assert res["results"]["counts"] == [0, 1, 0]
    assert res["results"]["voters"] == [[], ["Learner"], []]
    assert res["results"]["learners"] == 1
    err = await learner.request("poll_vote", expect="error", poll_id=poll["id"], choices=[0])
    assert err["code"] == "already_voted"
    await learner.request("poll_change_vote", poll_id=poll["id"], choices=[0])
    res = await trainer.expect("poll_results")
    assert res["results"]["counts"] == [1, 0, 0]

    await trainer.request("poll_close", poll_id=poll["id"], show_results=True)
    closed = await learner.expect("poll_closed")
    assert closed["poll"]["results_shown"] is True
    shown = await learner.expect("poll_results")
    assert shown["results"]["counts"] == [1, 0, 0] and shown["results"]["voters"] is None
    err = await learner.request("poll_change_vote", expect="error", poll_id=poll["id"], choices=[2])
    assert err["code"] == "poll_closed"

    r = await _http(live, world, "trainer", f"/api/cohorts/{world.cohort.id}/polls.csv")
    assert r.status_code == 200
    assert "Café ou thé ?" in r.text and ",café,1,1,Learner" in r.text.replace("\r", "")
    await learner.close()
    await trainer.close()


async def _http(live: LiveServer, world: World, role: str, path: str, **kw: Any):
    import httpx

    headers = {**kw.pop("headers", {})}
    cookie = "; ".join(filter(None, [await live.cookie(world, role), headers.pop("Cookie", "")]))
    async with httpx.AsyncClient(base_url=live.base) as c:
        return await c.request(
            kw.pop("method", "GET"), path, headers={"Cookie": cookie, **headers}, **kw
        )


async def test_signals(live: LiveServer, world: World) -> None:
    learner = await join(live, world, "learner")
    trainer = await join(live, world, "trainer")
    await learner.request("hand_raise")
    await trainer.expect("hand_raised", user_id=world.learner.id)
    err = await learner.request("hand_raise", expect="error")
    assert err["code"] == "hand_already_raised"
    await trainer.request("hand_lower", user_id=world.learner.id)
    await learner.expect("hand_lowered", user_id=world.learner.id, by=world.trainer.id)
    await learner.request("hand_raise")
    await learner.request("hand_lower")
    await trainer.expect("hand_lowered", by=world.learner.id)

    # A learner counts once per window: their latest reaction replaces the earlier one.
    for kind in ("lost", "lost", "ok"):
        await learner.request("reaction", kind=kind)
    counts = {}
    while counts != {"lost": 0, "slower": 0, "ok": 1}:
        counts = (await trainer.expect("reactions"))["counts"]
        assert counts["lost"] + counts["ok"] <= 1, counts
    assert not [m for m in await learner.quiet(0.2) if m["type"] == "reactions"]
    err = await learner.request("reaction", expect="error", kind="bored")
    assert err["code"] == "invalid_message"
    await learner.close()
    await trainer.close()


async def test_reactions_fade(app: Any, world: World, settings: Any) -> None:
    from tests.helpers.world import make_settings

    s = make_settings(settings.data_dir.parent, database_url=settings.database_url)
    s = type(s)(**{**{f: getattr(s, f) for f in s.__dataclass_fields__}, "reaction_window_s": 1})
    server = LiveServer(s).start()
    try:
        learner = await join(server, world, "learner")
        trainer = await join(server, world, "trainer")
        await learner.request("reaction", kind="slower")
        assert (await trainer.expect("reactions"))["counts"]["slower"] == 1
        faded = await trainer.expect("reactions", timeout=3)
        assert faded["counts"]["slower"] == 0
    finally:
        server.stop()


async def test_attendance(live: LiveServer, world: World) -> None:
    learner = await join(live, world, "learner")
    trainer = await join(live, world, "trainer")
    await trainer.request("session_start")
    err = await learner.request("attendance_sign", expect="error")
    assert err["code"] == "no_signing_window"
    err = await learner.request("signing_open", expect="forbidden", half="morning")
    assert err["message_type"] == "signing_open"
    await trainer.request("signing_open", half="morning", minutes=5)
    opened = await learner.expect("signing_opened")
    assert opened["window"]["half"] == "morning"
    await learner.request("attendance_sign")
    signed = await trainer.expect("attendance_signed", user_id=world.learner.id)
    err = await learner.request("attendance_sign", expect="error")
    assert err["code"] == "already_signed"
    again = await join(live, world, "learner")
    assert again.welcome["signed"] is True and again.welcome["signing"]["half"] == "morning"
    await trainer.request("signing_close")
    await learner.expect("signing_closed")
    await again.close()
    await learner.close()
    await asyncio.sleep(0.3)

    day = opened["window"]["day"]
    cid = world.cohort.id
    r = await _http(
        live,
        world,
        "trainer",
        f"/api/cohorts/{cid}/attendance.csv",
        params={"date_from": day, "date_to": day},
    )
    assert r.status_code == 200, r.text
    lines = r.text.strip().splitlines()
    assert lines[0].startswith("date,learner,email,morning_signed_at")
    row = lines[1].split(",")
    assert row[0] == day and row[1] == "Learner" and row[3]  # morning signature time
    assert row[8] and row[9]  # first and last connection

    sheet = await _http(live, world, "operator", f"/cohorts/{cid}/attendance/{day}/sheet")
    assert sheet.status_code == 200 and "Learner" in sheet.text
    # The sheet follows the viewer's language (the page's choice, else the browser's) and has
    # every page's security headers; French unless asked otherwise.
    assert '<html lang="fr">' in sheet.text and "Feuille d\u2019émargement" in sheet.text
    assert "Minutes de connexion" in sheet.text and "Empreinte du registre" in sheet.text
    for header, value in (
        ("content-security-policy", "frame-ancestors 'none'"),
        ("content-security-policy", "style-src 'self'"),
        ("x-content-type-options", "nosniff"),
        ("cache-control", "no-store"),
    ):
        assert value in sheet.headers[header], (header, sheet.headers)
    assert sheet.headers["content-type"].startswith("text/html")
    english = await _http(
        live,
        world,
        "trainer",
        f"/cohorts/{cid}/attendance/{day}/sheet",
        headers={"Accept-Language": "en-GB,en;q=0.8"},
    )
    assert '<html lang="en">' in english.text and "Sign-in sheet" in english.text
    assert "Minutes connected" in english.text and "émargement" not in english.text
    chosen = await _http(
        live,
        world,
        "trainer",
        f"/cohorts/{cid}/attendance/{day}/sheet",
        headers={"Accept-Language": "fr-FR", "Cookie": "estrade_lang=en"},
    )
    assert "Sign-in sheet" in chosen.text  # the language chosen on the pages wins
    # "today" is the cohort's today: the same sheet as the window's day when run that day.
    today = await _http(live, world, "trainer", f"/cohorts/{cid}/attendance/today/sheet")
    assert today.status_code == 200 and "Learner" in today.text
    bad = await _http(live, world, "trainer", f"/cohorts/{cid}/attendance/yesterday/sheet")
    assert bad.status_code == 400 and "today" in bad.text
    assert signed["signed_at"]

    # corrections: new records with author and reason; operators may not add them
    body = {
        "user_id": world.learner.id,
        "day": day,
        "half": "afternoon",
        "present": True,
        "reason": "signed on paper (network outage)",
    }
    path = f"/api/cohorts/{cid}/attendance/corrections"
    r = await _http(live, world, "operator", path, method="POST", json=body)
    assert r.status_code in (403,), r.text  # CSRF or role: refused either way
    r = await _http(live, world, "learner", f"/api/cohorts/{cid}/attendance/verify")
    assert r.status_code == 403
    r = await _http(live, world, "trainer", f"/api/cohorts/{cid}/attendance/verify")
    # connect (two tabs are one span; its disconnect waits for the reconnect grace), window
    # opened, signature, window closed
    assert r.json()["ok"] is True and r.json()["records"] >= 4
    await trainer.close()


async def test_classroom_events_are_counted_in_metrics(live: LiveServer, world: World) -> None:
    """Chat, questions, votes, reactions and open sockets reach the app's own registry."""
    registry = live.app.state.metrics.registry
    cohort = str(world.cohort.id)

    def value(name: str, **labels: str) -> float:
        got = registry.get_sample_value(name, labels)
        return 0.0 if got is None else got

    learner = await join(live, world, "learner")
    trainer = await join(live, world, "trainer")
    assert value("estrade_websocket_connections") == 2
    assert value("estrade_chat_messages_total", cohort_id=cohort) == 0  # the series starts at 0
    await learner.request("chat_send", text="hello")
    await learner.request("chat_send", text="a question?", question=True)
    await learner.request("reaction", kind="lost")
    await trainer.expect("chat_message")
    assert value("estrade_chat_messages_total", cohort_id=cohort) == 1
    assert value("estrade_questions_total", cohort_id=cohort) == 1
    assert value("estrade_reactions_total", cohort_id=cohort) == 1
    stats = live.app.state.live.room_stats()
    assert stats[0].cohort_id == world.cohort.id
    assert stats[0].count(role="learner") == 1
    await learner.close()
    await trainer.close()
    for _ in range(50):
        if value("estrade_websocket_connections") == 0:
            break
        await asyncio.sleep(0.05)
    assert value("estrade_websocket_connections") == 0


async def test_pushed_document_reaches_learners_and_metrics(live: LiveServer, world: World) -> None:
    """The trainer uploads then pushes a document: learners get a notice with a working link."""
    import httpx

    learner = await join(live, world, "learner")
    cookie = await live.cookie(world, "trainer")
    csrf = cookie.split("csrftoken=")[1].split(";")[0]
    headers = {"Cookie": cookie, "x-csrftoken": csrf}
    registry = live.app.state.metrics.registry
    async with httpx.AsyncClient(base_url=live.base, headers=headers) as http:
        r = await http.post(
            f"/api/cohorts/{world.cohort.id}/documents",
            params={"filename": "Énoncé <b onclick=x>TP.txt"},
            content=b"Exercice 1\n",
        )
        assert r.status_code == 201, r.text
        doc = r.json()
        assert registry.get_sample_value("estrade_document_uploads_total") == 1
        assert registry.get_sample_value("estrade_documents_stored") == 1
        r = await http.post(f"/api/cohorts/{world.cohort.id}/documents/{doc['id']}/push")
        assert r.status_code == 200, r.text
    notice = await learner.expect("document_pushed")
    assert notice["document"]["original_name"] == "Énoncé <b onclick=x>TP.txt"
    learner_cookie = await live.cookie(world, "learner")
    async with httpx.AsyncClient(base_url=live.base, headers={"Cookie": learner_cookie}) as http:
        r = await http.get(notice["document"]["download_url"])
        assert r.status_code == 200
        assert r.content == b"Exercice 1\n"
    assert registry.get_sample_value("estrade_document_downloads_total") == 1
    await learner.close()
