"""protocol.js's request() in real chromium against a real server: it resolves on the message's
own ``ack`` and rejects on its ``error``, ``forbidden`` and ``rate_limited`` (a RequestError
carrying the server's reply), and at once when the socket is not open."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.helpers.browser import BrowserServer

pytestmark = pytest.mark.browser

# Each outcome as {ok, type, ref?, code?, reply?}: what the page's code would see.
REQUESTS_JS = """async (cohortId) => {
  const { Classroom, RequestError } = await import("/static/js/protocol.js");
  const outcome = (p) => p.then(
    (msg) => ({ ok: true, type: msg.type, ref: msg.ref }),
    (err) => ({ ok: false, error: err instanceof RequestError, code: err.code,
                reply: err.reply && err.reply.type, ref: err.reply && err.reply.ref }));
  const out = {};
  out.offline = await outcome(new Classroom(cohortId).chatSend("not connected yet"));
  const room = new Classroom(cohortId);
  const open = new Promise((resolve) => room.on("status", (s) => { if (s === "open") resolve(); }));
  room.connect();
  await open;
  // Two at once: each promise settles on its own ref's reply, whatever the order.
  const [refused, accepted] = await Promise.all([
    outcome(room.chatSend("   ")), outcome(room.chatSend("Bonjour"))]);
  out.refused = refused;
  out.accepted = accepted;
  out.forbidden = await outcome(room.sessionStart());
  // A learner's message type is limited per window (ESTRADE_LIVE_RATE_LIMIT, 10): the 11th ping.
  const pings = [];
  for (let i = 0; i < 11; i++) pings.push(outcome(room.ping()));
  out.pings = await Promise.all(pings);
  out.pending = room.pending.size;
  room.close();
  return out;
}"""


def test_request_resolves_on_its_ack_and_rejects_on_each_refusal(
    new_page: Any, live_server: BrowserServer
) -> None:
    api = live_server.api()
    learner = api.user("request-learner@example.org", "Rémi", "learner", password=None)
    cohort = api.cohort("Requests")
    api.enrol(cohort["id"], learner["id"])
    page = new_page()
    page.goto(api.link(cohort["id"], learner["id"]))
    page.wait_for_url(re.compile(f"/classroom/{cohort['id']}$"))
    page.goto("/health")  # off the classroom page: its socket would share the learner's limit
    out = page.evaluate(REQUESTS_JS, cohort["id"])

    assert out["offline"] == {
        "ok": False,
        "error": True,
        "code": "not_connected",
        "reply": None,
        "ref": None,
    }
    assert out["refused"]["ok"] is False and out["refused"]["error"] is True
    assert out["refused"]["code"] == "empty_message"
    assert out["refused"]["reply"] == "error"
    assert out["accepted"]["ok"] is True and out["accepted"]["type"] == "ack"
    assert out["accepted"]["ref"] != out["refused"]["ref"]
    assert out["forbidden"]["ok"] is False and out["forbidden"]["error"] is True
    assert out["forbidden"]["code"] == "forbidden" and out["forbidden"]["reply"] == "forbidden"
    pings = out["pings"]
    assert [p["type"] for p in pings[:10]] == ["pong"] * 10, pings
    assert pings[10]["ok"] is False and pings[10]["error"] is True, pings
    assert pings[10]["code"] == "rate_limited" and pings[10]["reply"] == "rate_limited"
    assert out["pending"] == 0  # every request settled, none left waiting
