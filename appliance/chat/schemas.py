"""What the chat domain hands out (msgspec Structs)."""

from __future__ import annotations

import datetime as dt

import msgspec

__all__ = ["ChatMessageOut"]


class ChatMessageOut(msgspec.Struct, kw_only=True):
    id: int
    author_id: int
    author_name: str
    text: str
    """Plain text: clients show it as text, never as HTML."""
    question: bool
    created_at: dt.datetime
    votes: int = 0
    answered: bool = False
