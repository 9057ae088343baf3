"""Join links: a learner's personal way in, one per cohort, revoked or expired by staff."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import secrets
from collections.abc import Iterable

from appliance import clock
from appliance.accounts import schemas as s
from appliance.accounts.services.cohorts import get_cohort
from appliance.accounts.services.enrolments import members, require_learner
from appliance.accounts.tables import Cohort, Enrolment, JoinLink, Role, User
from appliance.db import write_transaction
from appliance.text import csv_safe

__all__ = [
    "cohorts_of",
    "dead_links",
    "expire_links",
    "expired_links",
    "export_links_csv",
    "hash_secret",
    "issue_link",
    "issue_many",
    "link_statuses",
    "live_link_pairs",
    "resolve_link",
    "revoke_links",
    "users_whose_link_expired",
]


def hash_secret(secret: str) -> str:
    # Join-link secrets are 256 random bits: a plain SHA-256 is enough to make a stolen
    # database useless, and lets the link be found by its hash.
    return hashlib.sha256(secret.encode()).hexdigest()


async def issue_link(
    cohort_id: int, user_id: int, *, base_url: str, ttl_days: int, ttl_hours: int | None = None
) -> s.IssuedLink:
    """Issue a fresh personal link, revoking the learner's previous links for this cohort.

    The link lasts ``ttl_hours`` when given (a short trial, a one-day course), else ``ttl_days``.
    """
    await require_learner(cohort_id, user_id)
    ttl = dt.timedelta(hours=ttl_hours) if ttl_hours else dt.timedelta(days=ttl_days)
    return (await issue_many(cohort_id, [user_id], base_url=base_url, ttl=ttl))[0]


async def expire_links(cohort_id: int, user_id: int) -> int:
    """End a learner's active links now: they show "expired" (not "revoked") from then on."""
    await require_learner(cohort_id, user_id)
    now = clock.utcnow()
    active = (
        (JoinLink.cohort == cohort_id)
        & (JoinLink.user == user_id)
        & JoinLink.revoked_at.is_null()
        & (JoinLink.expires_at > now)
    )
    async with write_transaction(JoinLink._meta.db):
        count = await JoinLink.count().where(active)
        await JoinLink.update({JoinLink.expires_at: now}).where(active)
    return int(count)


async def issue_many(
    cohort_id: int, user_ids: Iterable[int], *, base_url: str, ttl: dt.timedelta
) -> list[s.IssuedLink]:
    now = clock.utcnow()
    expires = now + ttl
    issued: list[s.IssuedLink] = []
    async with write_transaction(JoinLink._meta.db):
        for user_id in user_ids:
            await JoinLink.update({JoinLink.revoked_at: now}).where(
                (JoinLink.cohort == cohort_id)
                & (JoinLink.user == user_id)
                & JoinLink.revoked_at.is_null()
            )
            secret = secrets.token_urlsafe(32)
            await JoinLink(
                user=user_id, cohort=cohort_id, secret_hash=hash_secret(secret), expires_at=expires
            ).save()
            issued.append(
                s.IssuedLink(
                    user_id=user_id,
                    cohort_id=cohort_id,
                    url=f"{base_url}/join/{secret}",
                    expires_at=expires,
                )
            )
    return issued


async def revoke_links(cohort_id: int, user_id: int) -> int:
    await require_learner(cohort_id, user_id)
    active = (
        (JoinLink.cohort == cohort_id) & (JoinLink.user == user_id) & JoinLink.revoked_at.is_null()
    )
    async with write_transaction(JoinLink._meta.db):
        count = await JoinLink.count().where(active)
        await JoinLink.update({JoinLink.revoked_at: clock.utcnow()}).where(active)
    return int(count)


async def dead_links(link_ids: Iterable[int]) -> set[int]:
    """Those of ``link_ids`` that no longer open a session (revoked, expired or deleted)."""
    ids = set(link_ids)
    if not ids:
        return set()
    alive = await JoinLink.select(JoinLink.id).where(
        JoinLink.id.is_in(list(ids))
        & JoinLink.revoked_at.is_null()
        & (JoinLink.expires_at > clock.utcnow())
    )
    return ids - {r["id"] for r in alive}


async def live_link_pairs(pairs: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
    """Those (cohort_id, user_id) of ``pairs`` where the learner holds a live join link."""
    wanted = set(pairs)
    if not wanted:
        return set()
    rows = await JoinLink.select(JoinLink.cohort, JoinLink.user).where(
        JoinLink.user.is_in(sorted({u for _, u in wanted}))
        & JoinLink.revoked_at.is_null()
        & (JoinLink.expires_at > clock.utcnow())
    )
    return wanted & {(r["cohort"], r["user"]) for r in rows}


async def expired_links(link_ids: Iterable[int]) -> set[int]:
    """Those of ``link_ids`` that reached their expiry without being revoked."""
    ids = list(link_ids)
    if not ids:
        return set()
    rows = await JoinLink.select(JoinLink.id).where(
        JoinLink.id.is_in(ids)
        & JoinLink.revoked_at.is_null()
        & (JoinLink.expires_at <= clock.utcnow())
    )
    return {r["id"] for r in rows}


async def users_whose_link_expired(user_ids: Iterable[int]) -> set[int]:
    """Those of ``user_ids`` whose latest link expired without being revoked."""
    ids = list(user_ids)
    if not ids:
        return set()
    rows = (
        await JoinLink.select(JoinLink.user, JoinLink.revoked_at, JoinLink.expires_at)
        .where(JoinLink.user.is_in(ids))
        .order_by(JoinLink.id)
    )
    latest = {r["user"]: r for r in rows}
    now = clock.utcnow()
    return {u for u, r in latest.items() if r["revoked_at"] is None and r["expires_at"] <= now}


async def link_statuses(cohort_id: int) -> list[s.LinkStatus]:
    await get_cohort(cohort_id)
    _, learners = await members(cohort_id)
    links = await JoinLink.select().where(JoinLink.cohort == cohort_id).order_by(JoinLink.id)
    latest = {link["user"]: link for link in links}
    now = clock.utcnow()
    out = []
    for m in learners:
        link = latest.get(m.id)
        status = "none"
        expires = None
        if link is not None:
            expires = link["expires_at"]
            if link["revoked_at"] is not None:
                status = "revoked"
            elif expires <= now:
                status = "expired"
            else:
                status = "active"
        out.append(
            s.LinkStatus(
                user_id=m.id,
                display_name=m.display_name,
                email=m.email,
                status=status,  # type: ignore[arg-type]
                expires_at=expires,
            )
        )
    return out


async def export_links_csv(cohort_id: int, *, base_url: str, ttl_days: int) -> str:
    """Fresh links for every active learner of the cohort, as CSV for a mail merge.

    Secrets are only stored hashed, so an export issues new links (the old ones stop working).
    """
    await get_cohort(cohort_id)
    _, learners = await members(cohort_id)
    active = {
        r["id"]
        for r in await User.select(User.id).where(
            User.id.is_in([m.id for m in learners] or [-1]) & User.active.eq(True)
        )
    }
    chosen = [m for m in learners if m.id in active]
    issued = await issue_many(
        cohort_id, [m.id for m in chosen], base_url=base_url, ttl=dt.timedelta(days=ttl_days)
    )
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["name", "email", "join_url", "expires_at"])
    for m, link in zip(chosen, issued, strict=True):
        writer.writerow([csv_safe(m.display_name), m.email, link.url, link.expires_at.isoformat()])
    return out.getvalue()


async def resolve_link(secret: str) -> JoinLink | None:
    """The active link for ``secret`` (not revoked, not expired, user active), or None."""
    if not secret or len(secret) > 100:
        return None
    link = await JoinLink.objects().where(JoinLink.secret_hash == hash_secret(secret)).first()
    return link


async def cohorts_of(user: User) -> list[Cohort]:
    """The cohorts ``user`` may open: every one for admins and operators, else those they are
    enrolled in (for a learner, with a live link: why this lives with the links)."""
    if user.role in (Role.admin.value, Role.operator.value):
        return await Cohort.objects().order_by(Cohort.first_day)
    ids = [
        r["cohort"]
        for r in await Enrolment.select(Enrolment.cohort).where(Enrolment.user == user.id)
    ]
    if user.role == Role.learner.value:
        # A learner's cohorts are those they hold a live join link for (guards.cohort_access).
        ids = [c for c, _ in await live_link_pairs((c, user.id) for c in ids)]
    if not ids:
        return []
    query = Cohort.objects().where(Cohort.id.is_in(ids))
    if user.role == Role.learner.value:
        query = query.where(Cohort.archived.eq(False))
    return await query.order_by(Cohort.first_day)
