"""Chat storage: an acknowledged message survives kill -9, and the writer it goes through.

The kill test runs the real command (``estrade serve``, its own process) on both databases: its
chat goes through the live classroom's group commit (live/chat_writer.py) and
``db.DedicatedWriter``. Two staff sockets (no rate limit) send without waiting, so messages
arrive together and are committed in batches; the server is killed with SIGKILL the moment
the client has read 40 acks, in the middle of the stream. Every message acked before then must
be in the database read afterwards. A writer that acks first and stores 50 ms later fails it
(tried: 1 and 2 acked messages lost); one that acks a single step before its COMMIT does not
reliably (the window is under a millisecond): the order is also read in chat_writer.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path

import pytest
from piccolo.engine.sqlite import SQLiteEngine

from appliance import db
from appliance.chat import services as chat
from appliance.chat.tables import ChatMessage
from appliance.settings import Settings
from tests.helpers.classroom import Peer, ProcessServer
from tests.helpers.world import World
from tests.test_live import join

ACKS_BEFORE_KILL = 40


def _size(path: str) -> int:
    return Path(path).stat().st_size if Path(path).exists() else 0


async def test_every_acknowledged_message_survives_kill_9(
    app: object, world: World, settings: Settings, tmp_path: Path
) -> None:
    server = ProcessServer(settings, tmp_path / "server.log", log_level="warning").start()
    try:
        peers = [await join(server, world, "trainer"), await join(server, world, "admin")]
        acked: set[str] = set()
        sent: list[str] = []
        killed = asyncio.Event()

        async def send(peer: Peer, tag: str) -> None:
            for i in range(2000):
                ref = f"{tag}{i}"
                sent.append(ref)
                await peer.send("chat_send", text=ref, ref=ref)
                await asyncio.sleep(0.002)
            raise AssertionError("2000 messages sent and the server was not killed")

        async def read(peer: Peer) -> None:
            while not killed.is_set():
                msg = json.loads(await peer.ws.recv())
                if msg["type"] == "heartbeat":
                    await peer.ws.send('{"type": "heartbeat"}')
                elif msg["type"] == "ack":
                    acked.add(msg["ref"])
                elif msg["type"] in ("error", "forbidden", "rate_limited"):
                    raise AssertionError(msg)
                if len(acked) >= ACKS_BEFORE_KILL and not killed.is_set():
                    os.kill(server.pid, signal.SIGKILL)
                    killed.set()

        tasks = [asyncio.create_task(send(p, f"p{k}-")) for k, p in enumerate(peers)]
        tasks += [asyncio.create_task(read(p)) for p in peers]
        try:
            await asyncio.wait_for(killed.wait(), 60)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(BaseException):
                    await t
        acked_at_kill = set(acked)
        assert server.process is not None
        assert server.process.wait(10) == -signal.SIGKILL
        assert len(acked_at_kill) >= ACKS_BEFORE_KILL

        rows = await ChatMessage.select(ChatMessage.text).where(
            ChatMessage.cohort == world.cohort.id
        )
        stored = {r["text"] for r in rows}
        assert acked_at_kill <= stored, f"acked, then lost: {sorted(acked_at_kill - stored)}"
        assert stored <= set(sent)
    finally:
        await server.close_peers()
        server.stop()


async def test_the_dedicated_writer_commits_each_statement_on_its_kept_connection(
    app: object, world: World
) -> None:
    engine = db.piccolo_conf.DB
    writer = db.DedicatedWriter(engine, checkpoint_s=0.05)
    draft = chat.Draft(author_id=world.trainer.id, author_name="T", text="kept", question=False)
    try:
        with contextlib.suppress(RuntimeError):
            async with writer.connection():
                await chat.post_messages(world.cohort.id, None, [draft])
                raise RuntimeError("the block fails after the INSERT returned")
        assert await ChatMessage.count() == 1  # committed when the INSERT returned

        async def post(n: int) -> None:
            for _ in range(n):
                async with writer.connection():
                    await chat.post_messages(world.cohort.id, None, [draft, draft])

        await asyncio.gather(post(10), post(10))  # blocks take turns on the one connection
        assert await ChatMessage.count() == 41
        if isinstance(engine, SQLiteEngine):
            # Inside the block Piccolo's queries run on the writer's connection.
            async with writer.connection():
                (sync,) = await engine.run_ddl("PRAGMA synchronous")
                (auto,) = await engine.run_ddl("PRAGMA wal_autocheckpoint")
            assert sync["synchronous"] == 2  # FULL: the WAL is fsynced at every commit
            assert auto["wal_autocheckpoint"] == 0  # its commits never checkpoint
            # Its connection stays open, so the WAL is not checkpointed and deleted whenever
            # Piccolo closes the last of its own connections.
            assert _size(engine.path + "-wal") > 0
            # The background checkpoint copies it into the database meanwhile.
            for _ in range(100):
                if writer.checkpoints >= 2:
                    break
                await asyncio.sleep(0.05)
            assert writer.checkpoints >= 2
    finally:
        await writer.close()
        await writer.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        async with writer.connection():
            pass
