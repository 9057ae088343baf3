"""The local channel: frames over a real UNIX socketpair, good and bad."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator

import msgspec
import pytest

from appliance.media.channel import MAX_FRAME, Channel, ChannelClosed, ChannelError, open_channel


class Ping(msgspec.Struct, tag="ping", frozen=True):
    n: int
    text: str


class Pong(msgspec.Struct, tag="pong", frozen=True):
    n: int


Message = Ping | Pong


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Channel[Message], socket.socket]]:
    """A channel on one end of a socketpair, the raw other end to write anything on."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    channel: Channel[Message] = await open_channel(ours, Message)
    theirs.setblocking(False)
    try:
        yield channel, theirs
    finally:
        await channel.close()
        theirs.close()


async def test_messages_round_trip_in_order() -> None:
    a_sock, b_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a: Channel[Message] = await open_channel(a_sock, Message)
    b: Channel[Message] = await open_channel(b_sock, Message)
    try:
        big = "é" * 100_000  # spans many socket reads
        await a.send(Ping(1, "hello"))
        a.write(Pong(2))
        await a.send(Ping(3, big))
        assert await b.receive() == Ping(1, "hello")
        assert await b.receive() == Pong(2)
        assert await b.receive() == Ping(3, big)
        await b.send(Pong(4))
        assert await a.receive() == Pong(4)
    finally:
        await a.close()
        await b.close()


async def test_a_frame_of_an_unknown_message_is_refused(
    pair: tuple[Channel[Message], socket.socket],
) -> None:
    channel, raw = pair
    for payload in (
        msgspec.msgpack.encode({"type": "nope", "n": 1}),  # no known tag
        msgspec.msgpack.encode({"type": "ping", "n": "one", "text": ""}),  # wrong field type
        b"\xc1",  # not msgpack at all
    ):
        raw.send(struct.pack(">I", len(payload)) + payload)
        with pytest.raises(ChannelError) as caught:
            await channel.receive()
        assert not isinstance(caught.value, ChannelClosed)
    # The stream stays framed: a good message after the bad ones is read.
    good = msgspec.msgpack.encode(Pong(9))
    raw.send(struct.pack(">I", len(good)) + good)
    assert await channel.receive() == Pong(9)


async def test_an_oversized_frame_is_refused_before_it_is_read(
    pair: tuple[Channel[Message], socket.socket],
) -> None:
    channel, raw = pair
    raw.send(struct.pack(">I", MAX_FRAME + 1))
    with pytest.raises(ChannelError, match="exceeds"):
        await asyncio.wait_for(channel.receive(), 5)


async def test_sending_an_oversized_message_is_refused(
    pair: tuple[Channel[Message], socket.socket],
) -> None:
    channel, _raw = pair
    with pytest.raises(ChannelError, match="exceeds"):
        channel.write(Ping(1, "x" * (MAX_FRAME + 1)))


async def test_a_closed_peer_is_noticed_between_and_inside_frames(
    pair: tuple[Channel[Message], socket.socket],
) -> None:
    channel, raw = pair
    good = msgspec.msgpack.encode(Pong(1))
    raw.send(struct.pack(">I", len(good)) + good + struct.pack(">I", 50) + b"half")
    raw.close()
    assert await channel.receive() == Pong(1)
    with pytest.raises(ChannelClosed):
        await asyncio.wait_for(channel.receive(), 5)
    with pytest.raises(ChannelClosed):
        await asyncio.wait_for(channel.receive(), 5)


async def test_sending_to_a_closed_peer_fails(pair: tuple[Channel[Message], socket.socket]) -> None:
    channel, raw = pair
    raw.close()
    with pytest.raises(ChannelClosed):
        for _ in range(100):  # the first writes may land in the kernel buffer
            await channel.send(Ping(1, "x" * 65536))
