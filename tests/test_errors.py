"""One error model: a service's DomainError reaches HTTP and the socket through one mapping each."""

from __future__ import annotations

import pytest
from litestar.exceptions import HTTPException

from appliance.accounts import services
from appliance.errors import DomainError
from tests.helpers.classroom import LiveServer
from tests.helpers.world import Client, World, sign_in_as
from tests.test_live import join


async def test_services_raise_domain_errors_not_http_exceptions(world: World) -> None:
    with pytest.raises(DomainError) as err:
        await services.get_user(10**9)
    assert not isinstance(err.value, HTTPException)
    assert (err.value.code, err.value.status_code, err.value.field) == ("not_found", 404, None)
    with pytest.raises(DomainError) as err:
        await services.enrol(world.cohort.id, world.learner.id)
    assert (err.value.code, err.value.status_code, err.value.field) == ("conflict", 409, "user_id")


async def test_a_domain_error_reaches_http_with_its_status_and_body(
    client: Client, world: World
) -> None:
    await sign_in_as(client, world, "admin")
    # Without a field: Litestar's client-error shape.
    r = await client.get("/api/admin/users/1000000000")
    assert (r.status_code, r.json()) == (404, {"status_code": 404, "detail": "user not found"})
    # With a field: named in `extra`, as Litestar's validation errors (the web UI reads the key).
    r = await client.post(
        f"/api/admin/cohorts/{world.cohort.id}/enrolments", json={"user_id": world.learner.id}
    )
    message = "this user is already enrolled in this cohort"
    assert (r.status_code, r.json()) == (
        409,
        {
            "status_code": 409,
            "detail": f"user_id: {message}",
            "extra": [{"key": "user_id", "message": message}],
        },
    )
    # A shared check (cohort_access) refuses the same way.
    r = await client.get("/api/cohorts/1000000000/polls")
    assert (r.status_code, r.json()) == (404, {"status_code": 404, "detail": "cohort not found"})


async def test_an_http_only_service_is_not_translated_by_its_controller(
    client: Client, world: World
) -> None:
    """The attendance correction's controller used to turn the error into a field error."""
    await sign_in_as(client, world, "trainer")
    body = {
        "user_id": world.trainer.id,  # not a learner of the cohort
        "day": "2026-12-01",
        "half": "morning",
        "present": True,
        "reason": "signed on paper",
    }
    r = await client.post(f"/api/cohorts/{world.cohort.id}/attendance/corrections", json=body)
    assert r.status_code == 404, r.text
    assert r.json()["extra"] == [
        {"key": "user_id", "message": "this user is not a learner of this cohort"}
    ]


async def test_a_domain_error_reaches_the_socket_as_one_error(
    live: LiveServer, world: World
) -> None:
    learner = await join(live, world, "learner")
    trainer = await join(live, world, "trainer")
    await trainer.request("ping", expect="pong")  # what joining sent is read by now
    await trainer.quiet(0.2)
    # accounts.end_live_session refuses: no class session is running.
    await trainer.send("session_end", ref="end-1")
    replies = await trainer.quiet(0.5)
    assert replies == [
        {
            "type": "error",
            "code": "session_not_started",
            "detail": "no class session is running",
            "ref": "end-1",
            "limit": None,
        }
    ]
    # A bound the client shows travels with the error (no chat branch in the socket).
    err = await learner.request("chat_send", expect="error", text="x" * 2001)
    assert (err["code"], err["limit"]) == ("message_too_long", 2000)
    # A 403 rule of the domain is still an `error` with its code (the UI reads `muted`).
    await trainer.request("chat_mute", user_id=world.learner.id)
    await learner.expect("chat_muted")
    err = await learner.request("chat_send", expect="error", text="hello")
    assert err["code"] == "muted"
    # Only the code `forbidden` becomes the protocol's `forbidden` message.
    await learner.request("hand_raise")
    await learner.request("hand_raise", expect="error")  # already raised
    refused = await learner.request("hand_lower", expect="forbidden", user_id=world.trainer.id)
    assert refused["message_type"] == "hand_lower"
    await learner.close()
    await trainer.close()
