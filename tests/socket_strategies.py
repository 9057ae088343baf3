"""Hypothesis strategies for classroom-socket frames, derived from the msgspec protocol types.

Every client message class registered in the dispatcher gives valid messages (values inside
the types' bounds), boundary values (each bound, one past it) and oversized or wrong ones
(ints beyond 64 bits, long strings, NUL and other control characters, wrong JSON types,
missing and unknown fields); raw frames add what is not a message at all.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import strategies as st

__all__ = ["frames", "message"]

# Small ids hit real rows (the test world's users, messages, polls); the rest are boundaries.
SMALL_IDS = st.integers(min_value=1, max_value=12)
HUGE_INTS = st.sampled_from([0, -1, 2**31 - 1, 2**31, 2**53, 2**63 - 1, 2**63, 2**64, 10**30])
ODD_TEXT = st.sampled_from(
    ["", " ", "\x00", "a\x00b", "\u200b", "\ud7ff", "<script>alert(1)</script>", "é" * 3,
     "\u202eevil", "\r\n", "null", "0", "-1", "NaN", "\U0001f600"]
)  # fmt: skip
CONTROL = ["\x00", "\x07", "\x1b", "\x7f", "\u200e", "\ufeff", "\u2028", "\n", "\t"]
WRONG_TYPES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5),
    st.just([]), st.just({}), st.just([1, "a"]), st.just({"a": 1}),
)  # fmt: skip


def _long_text(lengths: list[int]) -> st.SearchStrategy[str]:
    return st.builds(
        lambda c, n: c * n, st.sampled_from(["x", "é", "\x00", "😀", " "]), st.sampled_from(lengths)
    )


def _int(t: mi.IntType, valid: bool) -> st.SearchStrategy[int]:
    lo = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else None)
    hi = t.le if t.le is not None else (t.lt - 1 if t.lt is not None else None)
    small_hi = min(hi, 12) if hi is not None else 12
    inside = st.integers(min_value=lo if lo is not None else -3, max_value=small_hi)
    edges = {e for b in (lo, hi) if b is not None for e in (b - 1, b, b + 1)}
    if valid:  # in range, and each bound itself
        keep = [e for e in edges if (lo is None or e >= lo) and (hi is None or e <= hi)]
        return st.one_of(inside, inside, st.sampled_from(sorted(keep))) if keep else inside
    return st.one_of(inside, HUGE_INTS, st.sampled_from(sorted(edges)) if edges else SMALL_IDS)


def _str(t: mi.StrType, valid: bool) -> st.SearchStrategy[str]:
    lo, hi = t.min_length or 0, t.max_length
    lengths = {2000, 2001, 10_000, lo, lo + 1} | ({hi, hi - 1} if hi is not None else set())
    if valid:
        lengths = {n for n in lengths if n >= max(lo, 1) and (hi is None or n <= hi)}
    else:
        lengths |= {lo - 1} | ({hi + 1} if hi is not None else set())
    cap = min(hi if hi is not None else 40, 40)
    short = st.text(min_size=lo, max_size=max(cap, lo))
    odd = ODD_TEXT.filter(lambda x: len(x) >= lo) if valid else ODD_TEXT
    # Control characters inside ordinary text (NUL: PostgreSQL refuses it in text columns).
    inner = st.builds(lambda a, c, b: a + c + b, short, st.sampled_from(CONTROL), short)
    if hi is not None:
        inner = inner.map(lambda x: x[: max(hi, 1)])
    return st.one_of(short, odd, inner, _long_text(sorted(n for n in lengths if n >= 0)))


def _value(t: Any, valid: bool) -> st.SearchStrategy[Any]:
    if isinstance(t, mi.IntType):
        return _int(t, valid)
    if isinstance(t, mi.StrType):
        return _str(t, valid)
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.LiteralType):
        values = st.sampled_from(t.values)
        return values if valid else st.one_of(values, ODD_TEXT)
    if isinstance(t, mi.UnionType):
        return st.one_of([_value(x, valid) for x in t.types])
    if isinstance(t, mi.ListType):
        lo, hi = t.min_length or 0, t.max_length or 10
        size = {"min_size": lo, "max_size": hi} if valid else {"max_size": hi + 1}
        return st.lists(_value(t.item_type, valid), **size)
    if isinstance(t, mi.DictType):
        hi = t.max_length or 8
        return st.dictionaries(
            _value(t.key_type, valid), _value(t.value_type, valid), max_size=hi if valid else hi + 1
        )
    return WRONG_TYPES


def _struct(info: mi.StructType, valid: bool) -> st.SearchStrategy[dict[str, Any]]:
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for f in info.fields:
        if f.name == "ref":
            value: st.SearchStrategy[Any] = st.none()
        elif valid:
            value = _value(f.type, True)
        else:
            good = _value(f.type, False)
            value = st.one_of(good, good, WRONG_TYPES)
        fields[f.name] = value if f.required else st.one_of(st.just(msgspec.UNSET), value)

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        out: dict[str, Any] = {"type": info.tag}
        for name, strategy in fields.items():
            v = draw(strategy)
            if v is not msgspec.UNSET:
                out[name] = v
        if not valid and draw(st.booleans()):  # a field too many or one missing
            if out.keys() - {"type"} and draw(st.booleans()):
                out.pop(draw(st.sampled_from(sorted(out.keys() - {"type"}))))
            else:
                out[draw(st.sampled_from(["extra", "user_id", "role", "seq"]))] = 1
        return out

    return build()


def message(cls: type[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A dict for one message type: mostly within the type's bounds (so it reaches the
    handler), else with values past the bounds, wrong types, missing or extra fields."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    valid = _struct(info, True)
    return st.one_of(valid, valid, valid, _struct(info, False))


def _json(obj: Any) -> str:
    # Python's json writes lone surrogates as escapes and big ints exactly: as a hostile
    # client would.
    return json.dumps(obj, ensure_ascii=False) if _encodable(obj) else json.dumps(obj)


def _encodable(obj: Any) -> bool:
    try:
        json.dumps(obj, ensure_ascii=False).encode()
        return True
    except UnicodeEncodeError:
        return False


_RAW_SAMPLES = [
    "", "{}", "[]", "null", "1e999", '{"type": null}', '{"type": 1}', '{"type": "ping"',
    '{"type": "ping", "type": "chat_send"}', "[" * 2000 + "]" * 2000,
    '{"type": "chat_send", "text": ' + "[" * 2000 + "]" * 2000 + "}",
    b"\xff\xfe\x00".decode("latin-1"), '{"type": "ping", "ref": "' + "r" * 65 + '"}',
]  # fmt: skip
RAW = st.one_of(st.binary(max_size=40), st.text(max_size=40), st.sampled_from(_RAW_SAMPLES))


def frames(classes: list[type[Any]]) -> st.SearchStrategy[str | bytes]:
    """One frame: a message of one of ``classes`` (9 times in 10), else a raw frame."""
    messages = st.one_of([message(c) for c in classes]).map(_json)
    return st.one_of(messages, messages, messages, messages, RAW)
