"""Group commit of chat messages: order, acks and mutes hold when messages arrive together."""

from __future__ import annotations

import asyncio

from appliance.chat import services as chat
from appliance.errors import DomainError
from tests.helpers.classroom import LiveServer
from tests.helpers.world import World
from tests.test_live import join


async def test_a_batch_keeps_order_and_refuses_only_the_muted(world: World) -> None:
    await chat.mute(world.cohort.id, None, world.learner.id, world.trainer.id)
    drafts = [
        chat.Draft(author_id=uid, author_name="x", text=f"t{i}", question=i == 2)
        for i, uid in enumerate(
            [world.trainer.id, world.learner.id, world.trainer.id, world.admin.id]
        )
    ]
    out = await chat.post_messages(world.cohort.id, None, drafts)
    assert isinstance(out[1], DomainError) and out[1].code == "muted"
    stored = [m for m in out if not isinstance(m, DomainError)]
    assert [m.text for m in stored] == ["t0", "t2", "t3"]
    assert [m.id for m in stored] == sorted(m.id for m in stored)
    assert [m.question for m in stored] == [False, True, False]
    history = await chat.recent_messages(world.cohort.id, 10)
    assert [(m.id, m.text) for m in history] == [(m.id, m.text) for m in stored]


async def test_concurrent_senders_are_all_stored_acked_and_seen_in_one_order(
    live: LiveServer, world: World
) -> None:
    learner = await join(live, world, "learner")
    trainer = await join(live, world, "trainer")
    admin = await join(live, world, "admin")
    sends = [(learner, 5), (trainer, 15), (admin, 15)]  # the learner stays under the rate limit

    async def burst(peer, n: int, tag: str) -> None:
        for i in range(n):
            await peer.send("chat_send", text=f"{tag}{i}", ref=f"{tag}{i}")

    await asyncio.gather(*(burst(p, n, f"p{k}-") for k, (p, n) in enumerate(sends)))
    orders = []
    for k, (peer, n) in enumerate(sends):
        texts: list[str] = []
        acks: set[str] = set()
        while len(texts) < 35 or len(acks) < n:
            msg = await peer.expect("chat_message") if len(texts) < 35 else await peer.expect("ack")
            if msg["type"] == "chat_message":
                texts.append(msg["message"]["text"])
            # acks may arrive before the last chat_message: collect them from what was seen
            acks = {m["ref"] for m in peer.seen if m["type"] == "ack"}
        assert acks == {f"p{k}-{i}" for i in range(n)}
        orders.append(texts)
    assert orders[0] == orders[1] == orders[2]
    for k, (_, n) in enumerate(sends):  # each sender's own messages in the order sent
        assert [t for t in orders[0] if t.startswith(f"p{k}-")] == [f"p{k}-{i}" for i in range(n)]
    late = await join(live, world, "trainer")
    assert [m["text"] for m in late.welcome["chat"]] == orders[0]
    for peer in (learner, trainer, admin, late):
        await peer.close()


async def test_the_rooms_kept_mutes_follow_mutes_and_sessions(
    live: LiveServer, world: World
) -> None:
    """The room reads its mutes once per session and again after a mute or an unmute: a mute
    holds from the next message on, and ends with its session (as chat.is_muted says).
    (Five learner messages: the chat rate limit; unmuting: test_live.py's mute test.)"""
    learner = await join(live, world, "learner")
    trainer = await join(live, world, "trainer")
    await learner.request("chat_send", text="before")  # the room has read its mutes
    await trainer.request("session_start")
    await learner.expect("session_started")
    await trainer.request("chat_mute", user_id=world.learner.id)
    err = await learner.request("chat_send", expect="error", text="muted")
    assert err["code"] == "muted"
    await trainer.request("session_end")
    await learner.expect("session_ended")
    await learner.request("chat_send", text="between sessions")  # that mute was the session's
    await trainer.request("session_start")
    await learner.expect("session_started")
    await learner.request("chat_send", text="in the second session")
    await trainer.request("chat_mute", user_id=world.learner.id)
    err = await learner.request("chat_send", expect="error", text="muted again")
    assert err["code"] == "muted"
    history = await chat.recent_messages(world.cohort.id, 10)
    assert [m.text for m in history] == ["before", "between sessions", "in the second session"]
    for peer in (learner, trainer):
        await peer.close()
