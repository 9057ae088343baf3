"""All rules and queries of polls: prepare, launch, vote, close, results, CSV export."""

from __future__ import annotations

import csv
import io
import unicodedata

from appliance import clock
from appliance.accounts.tables import Enrolment, Role
from appliance.db import write_transaction
from appliance.errors import DomainError
from appliance.polls.schemas import PollIn, PollOut, PollResults
from appliance.polls.tables import Ballot, Poll, PollChoice
from appliance.text import csv_safe

__all__ = [
    "close_poll",
    "create_poll",
    "export_csv",
    "launch_poll",
    "list_polls",
    "live_poll",
    "poll_out",
    "results",
    "show_results",
    "vote",
]


async def _poll(cohort_id: int, poll_id: int) -> Poll:
    poll = await Poll.objects().where((Poll.id == poll_id) & (Poll.cohort == cohort_id)).first()
    if poll is None:
        raise DomainError("no_such_poll", f"no poll {poll_id} in this cohort", 404)
    return poll


async def _choices(poll_id: int) -> list[str]:
    rows = (
        await PollChoice.select(PollChoice.label)
        .where(PollChoice.poll == poll_id)
        .order_by(PollChoice.position)
    )
    return [r["label"] for r in rows]


async def poll_out(poll: Poll) -> PollOut:
    return PollOut(
        id=poll.id,
        question=poll.question,
        choices=await _choices(poll.id),
        multiple=poll.multiple,
        anonymous=poll.anonymous,
        status=poll.status,  # type: ignore[arg-type]
        results_shown=poll.results_shown,
        class_session_id=poll.class_session,
    )


def _clean(text: str) -> str:
    """Without control, format or surrogate characters (NUL is refused by PostgreSQL, and none
    of them belongs in a poll), stripped."""
    return "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cf", "Cs")).strip()


async def create_poll(cohort_id: int, by: int, data: PollIn) -> PollOut:
    question = _clean(data.question)
    if not question:
        raise DomainError("empty_question", "the question is empty", 422)
    labels = [_clean(c) for c in data.choices]
    if any(not c for c in labels):
        raise DomainError("empty_choice", "a choice is empty", 422)
    if len(set(labels)) != len(labels):
        raise DomainError("duplicate_choice", "two choices have the same text", 422)
    async with write_transaction(Poll._meta.db):
        poll = Poll(
            cohort=cohort_id,
            created_by=by,
            question=question,
            multiple=data.multiple,
            anonymous=data.anonymous,
            created_at=clock.utcnow(),
        )
        await poll.save()
        await PollChoice.insert(
            *[PollChoice(poll=poll.id, position=i, label=c) for i, c in enumerate(labels)]
        )
    return await poll_out(poll)


async def list_polls(cohort_id: int) -> list[PollOut]:
    polls = await Poll.objects().where(Poll.cohort == cohort_id).order_by(Poll.id)
    return [await poll_out(p) for p in polls]


async def live_poll(cohort_id: int) -> PollOut | None:
    poll = await Poll.objects().where((Poll.cohort == cohort_id) & (Poll.status == "live")).first()
    return await poll_out(poll) if poll else None


async def launch_poll(cohort_id: int, poll_id: int, session_id: int | None) -> PollOut:
    """Put a prepared poll live; results stay attached to ``session_id``."""
    poll = await _poll(cohort_id, poll_id)
    if poll.status != "draft":
        raise DomainError("poll_not_draft", f"poll {poll_id} was already launched")
    if await Poll.exists().where((Poll.cohort == cohort_id) & (Poll.status == "live")):
        raise DomainError("poll_already_live", "another poll is live: close it first")
    await Poll.update(
        {Poll.status: "live", Poll.launched_at: clock.utcnow(), Poll.class_session: session_id}
    ).where(Poll.id == poll_id)
    poll.status, poll.class_session = "live", session_id
    return await poll_out(poll)


async def vote(
    cohort_id: int, poll_id: int, user_id: int, choices: list[int], *, change: bool
) -> None:
    """Record (or, with ``change``, replace) a learner's ballot. The one place a vote is counted.

    Raises:
        DomainError: ``poll_not_live`` / ``poll_closed``, ``choice_out_of_range``,
            ``one_choice_only``, ``duplicate_choice``, ``no_choice``, ``already_voted`` (use
            ``poll_change_vote``), ``no_ballot`` (nothing to change).
    """
    poll = await _poll(cohort_id, poll_id)
    if poll.status == "closed":
        raise DomainError("poll_closed", f"poll {poll_id} is closed")
    if poll.status != "live":
        raise DomainError("poll_not_live", f"poll {poll_id} is not live")
    n = int(await PollChoice.count().where(PollChoice.poll == poll_id))
    if not choices:
        raise DomainError("no_choice", "choose at least one answer", 422)
    bad = [c for c in choices if not 0 <= c < n]
    if bad:
        raise DomainError(
            "choice_out_of_range", f"choice {bad[0]} is out of range (0 to {n - 1})", 422
        )
    if len(set(choices)) != len(choices):
        raise DomainError("duplicate_choice", "a choice appears twice", 422)
    if not poll.multiple and len(choices) != 1:
        raise DomainError("one_choice_only", "this poll takes exactly one answer", 422)
    existing = (
        await Ballot.objects().where((Ballot.poll == poll_id) & (Ballot.user == user_id)).first()
    )
    if existing is not None and not change:
        raise DomainError(
            "already_voted", "you already voted in this poll (send poll_change_vote to change)"
        )
    if existing is None and change:
        raise DomainError("no_ballot", "you have not voted in this poll yet")
    if existing is None:
        await Ballot(poll=poll_id, user=user_id, choices=sorted(choices)).save()
    else:
        await Ballot.update(
            {Ballot.choices: sorted(choices), Ballot.updated_at: clock.utcnow()}
        ).where(Ballot.id == existing.id)


async def close_poll(cohort_id: int, poll_id: int, show: bool) -> PollOut:
    poll = await _poll(cohort_id, poll_id)
    if poll.status != "live":
        raise DomainError("poll_not_live", f"poll {poll_id} is not live")
    await Poll.update(
        {Poll.status: "closed", Poll.closed_at: clock.utcnow(), Poll.results_shown: show}
    ).where(Poll.id == poll_id)
    poll.status, poll.results_shown = "closed", show
    return await poll_out(poll)


async def show_results(cohort_id: int, poll_id: int) -> PollOut:
    poll = await _poll(cohort_id, poll_id)
    if poll.status != "closed":
        raise DomainError("poll_not_closed", "results are shown once the poll is closed")
    await Poll.update({Poll.results_shown: True}).where(Poll.id == poll_id)
    poll.results_shown = True
    return await poll_out(poll)


def _decode(choices: object) -> list[int]:
    if isinstance(choices, str):
        import json

        choices = json.loads(choices)
    assert isinstance(choices, list)
    return [int(c) for c in choices]


async def results(cohort_id: int, poll_id: int, *, with_names: bool) -> PollResults:
    poll = await _poll(cohort_id, poll_id)
    n = int(await PollChoice.count().where(PollChoice.poll == poll_id))
    rows = await Ballot.select(Ballot.choices, Ballot.user.display_name).where(
        Ballot.poll == poll_id
    )
    counts = [0] * n
    names: list[list[str]] = [[] for _ in range(n)]
    for r in rows:
        for c in _decode(r["choices"]):
            counts[c] += 1
            names[c].append(r["user.display_name"])
    learners = await Enrolment.count().where(
        (Enrolment.cohort == cohort_id) & (Enrolment.role == Role.learner.value)
    )
    return PollResults(
        poll_id=poll_id,
        counts=counts,
        ballots=len(rows),
        learners=int(learners),
        voters=[sorted(x) for x in names] if with_names and not poll.anonymous else None,
    )


async def export_csv(cohort_id: int) -> str:
    """Every launched poll of the cohort, one row per choice (names for named polls)."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(
        [
            "poll_id",
            "class_session_id",
            "launched_at",
            "question",
            "status",
            "anonymous",
            "choice",
            "label",
            "votes",
            "ballots",
            "voters",
        ]
    )
    polls = (
        await Poll.objects()
        .where((Poll.cohort == cohort_id) & (Poll.status != "draft"))
        .order_by(Poll.id)
    )
    for p in polls:
        res = await results(cohort_id, p.id, with_names=True)
        labels = await _choices(p.id)
        for i, label in enumerate(labels):
            w.writerow(
                [
                    p.id,
                    p.class_session or "",
                    p.launched_at.isoformat() if p.launched_at else "",
                    csv_safe(p.question),
                    p.status,
                    "yes" if p.anonymous else "no",
                    i,
                    csv_safe(label),
                    res.counts[i],
                    res.ballots,
                    "; ".join(csv_safe(n) for n in res.voters[i]) if res.voters else "",
                ]
            )
    return out.getvalue()


async def ballot_of(poll_id: int, user_id: int) -> list[int] | None:
    row = (
        await Ballot.select(Ballot.choices)
        .where((Ballot.poll == poll_id) & (Ballot.user == user_id))
        .first()
    )
    return _decode(row["choices"]) if row else None
