"""The VP8 RTP payload descriptor (RFC 7741 §4.2): temporal layers, picture ids.

Read once per frame by the relay (``VideoTap``) and rewritten only for learners who skip
temporal layers. Nothing here touches the VP8 bitstream itself.

::

          0 1 2 3 4 5 6 7
         +-+-+-+-+-+-+-+-+
         |X|R|N|S|R| PID | (REQUIRED)
         +-+-+-+-+-+-+-+-+
    X:   |I|L|T|K| RSV   | (OPTIONAL)
         +-+-+-+-+-+-+-+-+
    I:   |M| PictureID   | (OPTIONAL, 7 or 15 bits)
         +-+-+-+-+-+-+-+-+
    L:   |   TL0PICIDX   | (OPTIONAL)
         +-+-+-+-+-+-+-+-+
    T/K: |TID|Y| KEYIDX  | (OPTIONAL)
         +-+-+-+-+-+-+-+-+
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Layer", "descriptor_size", "keyframe_size", "layer_of", "shift_picture_id"]


class Layer(NamedTuple):
    """What the relay needs from a frame's first descriptor."""

    #: temporal layer id (0 = base), or None when the stream has no temporal layers
    tid: int | None
    #: layer sync (Y): the frame refers only to the base layer, a learner can switch up here
    sync: bool
    #: whether the descriptor carries a picture id
    picture_id: bool


_NONE = Layer(None, False, False)


def layer_of(payload: bytes) -> Layer:
    """The temporal layer of a VP8 payload (its descriptor); a malformed one has none."""
    try:
        if not payload[0] & 0x80:
            return _NONE
        ext = payload[1]
        pos = 2
        has_pid = bool(ext & 0x80)
        if has_pid:
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:
            pos += 1  # TL0PICIDX: only base-layer frames move it, dropping upper ones keeps it
        if not ext & 0x20:
            return Layer(None, False, has_pid)
        tk = payload[pos]
        return Layer(tk >> 6, bool(tk & 0x20), has_pid)
    except IndexError:
        return _NONE


def shift_picture_id(payload: bytes, delta: int) -> bytes:
    """``payload`` with its picture id moved back by ``delta`` (mod 2**15 or 2**7).

    A learner who skips upper-layer frames gets consecutive picture ids: browsers' receivers
    wait for a missing picture id (they cannot know it was of a layer they never get).
    """
    if not payload[0] & 0x80 or not payload[1] & 0x80:
        return payload
    first = payload[2]
    if first & 0x80:
        pid = ((((first & 0x7F) << 8) | payload[3]) - delta) & 0x7FFF
        return payload[:2] + bytes((0x80 | pid >> 8, pid & 0xFF)) + payload[4:]
    return payload[:2] + bytes(((first - delta) & 0x7F,)) + payload[3:]


def descriptor_size(payload: bytes) -> int:
    """Bytes of the payload descriptor at the start of ``payload`` (the VP8 data follows).

    The recorder strips it from each RTP payload to write the frame as the encoder made it.
    """
    if not payload[0] & 0x80:
        return 1
    ext = payload[1]
    size = 2
    if ext & 0x80:
        size += 2 if payload[2] & 0x80 else 1
    if ext & 0x40:
        size += 1
    if ext & 0x30:  # T or K: one byte
        size += 1
    return size


def keyframe_size(frame: bytes) -> tuple[int, int] | None:
    """Width and height a VP8 keyframe's header announces (RFC 6386 §9.1); None if ``frame``
    is not a keyframe."""
    if len(frame) < 10 or frame[0] & 0x01 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(frame[6:8], "little") & 0x3FFF
    height = int.from_bytes(frame[8:10], "little") & 0x3FFF
    return width, height
