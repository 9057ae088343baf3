"""A local channel: msgspec messages in length-prefixed frames over an asyncio UNIX stream.

Generic (it knows nothing of media): each side names the type it receives (a tagged union of
``msgspec.Struct``), frames are a 4-byte big-endian length then one msgpack document. A frame
that is too long or does not decode to that type raises :class:`ChannelError` (the caller
closes the channel: after a bad frame the stream can no longer be trusted); the peer closing
raises :class:`ChannelClosed`. See docs/media-workers.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Any, Generic, TypeVar

import msgspec

__all__ = ["HEADER", "MAX_FRAME", "Channel", "ChannelClosed", "ChannelError", "open_channel"]

MAX_FRAME = 4 * 1024 * 1024
"""Bytes of one message at most (a room's stats with 200 learners is ~60 KB)."""
HEADER = struct.Struct(">I")
"""A frame's length, before its msgpack document."""

In = TypeVar("In")


class ChannelError(Exception):
    """A frame the channel refuses (too long, or not a known message)."""


class ChannelClosed(ChannelError):
    """The peer closed the channel (or died)."""


class Channel(Generic[In]):
    """One end of the channel: :meth:`receive` messages of type ``incoming``, :meth:`send` any.

    Args:
        reader: the stream's reader.
        writer: the stream's writer.
        incoming: what this end receives (a Struct type or a union of tagged Structs).
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, incoming: Any
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._decoder: msgspec.msgpack.Decoder[In] = msgspec.msgpack.Decoder(incoming)
        self._encoder = msgspec.msgpack.Encoder()

    def write(self, message: Any) -> None:
        """Queue one message without waiting (for synchronous callers; see :meth:`send`)."""
        if self._writer.is_closing():
            raise ChannelClosed("the channel is closed")
        payload = self._encoder.encode(message)
        if len(payload) > MAX_FRAME:
            raise ChannelError(f"message of {len(payload)} bytes exceeds {MAX_FRAME}")
        self._writer.write(HEADER.pack(len(payload)) + payload)

    def buffered(self) -> int:
        """Bytes written but not yet taken by the peer's socket."""
        return self._writer.transport.get_write_buffer_size()

    def write_raw(self, data: bytes) -> None:
        """Queue bytes already framed (several messages, each with its header)."""
        if self._writer.is_closing():
            raise ChannelClosed("the channel is closed")
        self._writer.write(data)

    async def send(self, message: Any) -> None:
        """Write one message and wait until the stream's buffer has room again."""
        self.write(message)
        try:
            await self._writer.drain()
        except ConnectionError as exc:
            raise ChannelClosed(str(exc)) from exc

    async def receive(self) -> In:
        """The next message.

        Raises:
            ChannelClosed: the peer closed the stream (between or inside a frame).
            ChannelError: a frame over :data:`MAX_FRAME` or that is not an ``incoming``.
        """
        try:
            header = await self._reader.readexactly(HEADER.size)
            (length,) = HEADER.unpack(header)
            if length > MAX_FRAME:
                raise ChannelError(f"frame of {length} bytes exceeds {MAX_FRAME}")
            payload = await self._reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise ChannelClosed("the peer closed the channel") from exc
        try:
            return self._decoder.decode(payload)
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
            raise ChannelError(f"bad frame: {exc}") from exc

    async def close(self) -> None:
        if not self._writer.is_closing():
            self._writer.close()
        with contextlib.suppress(ConnectionError):  # the peer went first
            await self._writer.wait_closed()


async def open_channel(sock: socket.socket, incoming: Any) -> Channel[Any]:
    """A channel over a connected UNIX stream socket (one end of a ``socketpair``)."""
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_FRAME + 64)
    return Channel(reader, writer, incoming)
