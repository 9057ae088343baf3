"""What the polls domain takes and hands out (msgspec Structs)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = ["PollIn", "PollOut", "PollResults"]

Label = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class PollIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    question: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    choices: Annotated[list[Label], msgspec.Meta(min_length=2, max_length=10)]
    multiple: bool = False
    anonymous: bool = True


class PollOut(msgspec.Struct, kw_only=True):
    id: int
    question: str
    choices: list[str]
    multiple: bool
    anonymous: bool
    status: Literal["draft", "live", "closed"]
    results_shown: bool
    class_session_id: int | None = None


class PollResults(msgspec.Struct, kw_only=True):
    poll_id: int
    counts: list[int]
    """Ballots per choice, in the order of the choices."""
    ballots: int
    learners: int
    """Learners enrolled in the cohort (so ``learners - ballots`` have not answered)."""
    voters: list[list[str]] | None = None
    """Names per choice for a named poll (staff only); None for an anonymous poll."""
