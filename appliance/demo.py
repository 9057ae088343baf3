"""A demo cohort (one trainer, three learners) and a demo admin, for trying Estrade out.

``make run`` (``ESTRADE_DEMO=true estrade serve``) seeds it and prints what a newcomer needs: the
trainer's console and sign-in, the learners' personal links, the admin's sign-in. Nothing has a
default password: the trainer's and the admin's are generated when the demo is created. The
trainer's is kept (mode 0600) in the data folder so every run can print it again; the admin's is
printed once, then only how to reset it. Learners' links stay the same from run to run (kept in
the data folder, 0600) as long as they work; a link that was revoked or expired is replaced and
the output says so.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from pathlib import Path

import msgspec

from appliance import clock
from appliance.accounts import schemas as s
from appliance.accounts import services
from appliance.accounts.tables import Cohort, JoinLink, User
from appliance.settings import Settings

__all__ = ["DemoLinks", "format_demo", "seed_demo"]

DEMO_COHORT = "Demo — Développeur web"
TRAINER_EMAIL = "trainer@demo.estrade.invalid"
ADMIN_EMAIL = "admin@demo.estrade.invalid"


class DemoLearner(msgspec.Struct):
    name: str
    url: str
    new: bool
    """Issued by this run (first run, or the previous link was revoked or expired)."""


class DemoLinks(msgspec.Struct):
    cohort_id: int
    trainer_email: str
    trainer_password: str | None
    sign_in_url: str
    console_url: str
    classroom_url: str
    learners: list[DemoLearner]
    admin_email: str
    admin_password: str | None
    """Only on the run that created the admin (printed once)."""
    admin_url: str
    first_run: bool


def _secret_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


async def _link_still_works(url: str, user_id: int, cohort_id: int) -> bool:
    secret = url.rsplit("/join/", 1)[-1]
    return await JoinLink.exists().where(
        (JoinLink.secret_hash == services.hash_secret(secret))
        & (JoinLink.user == user_id)
        & (JoinLink.cohort == cohort_id)
        & JoinLink.revoked_at.is_null()
        & (JoinLink.expires_at > clock.utcnow())
    )


async def _ensure_admin() -> str | None:
    """The demo admin; its generated password when created now, else ``None``."""
    if await User.exists().where(User.email == ADMIN_EMAIL):
        return None
    password = secrets.token_urlsafe(12)
    await services.create_user(
        s.UserIn(email=ADMIN_EMAIL, display_name="Demo Admin", role="admin", password=password)
    )
    return password


async def seed_demo(settings: Settings) -> DemoLinks:
    """Create the demo cohort and admin if missing; keep the learners' working links."""
    base = settings.resolved_public_url
    data = settings.data_dir
    cohort = await Cohort.objects().where(Cohort.name == DEMO_COHORT).first()
    password_file = data / "demo-trainer-password"
    links_file = data / "demo-learner-links.json"
    password: str | None = None
    first_run = cohort is None
    if cohort is None:
        today = dt.date.today()
        cohort = await services.create_cohort(
            s.CohortIn(name=DEMO_COHORT, first_day=today, last_day=today + dt.timedelta(days=90))
        )
        password = secrets.token_urlsafe(12)
        _secret_file(password_file, password)
        trainer = await services.create_user(
            s.UserIn(
                email=TRAINER_EMAIL,
                display_name="Camille Formatrice",
                role="trainer",
                password=password,
            )
        )
        await services.enrol(cohort.id, trainer.id)
        for i, name in enumerate(["Alice Martin", "Bilal Haddad", "Chloé Nguyen"], start=1):
            learner = await services.create_user(
                s.UserIn(
                    email=f"learner{i}@demo.estrade.invalid", display_name=name, role="learner"
                )
            )
            await services.enrol(cohort.id, learner.id)
    elif password_file.exists():
        password = password_file.read_text().strip()
    admin_password = await _ensure_admin()

    try:
        kept: dict[str, str] = json.loads(links_file.read_text()) if links_file.exists() else {}
    except ValueError:
        kept = {}
    _, members = await services.members(cohort.id)
    learners: list[DemoLearner] = []
    for m in members:
        url = kept.get(str(m.id), "")
        if url.startswith(f"{base}/join/") and await _link_still_works(url, m.id, cohort.id):
            learners.append(DemoLearner(m.display_name, url, new=False))
            continue
        link = await services.issue_link(
            cohort.id, m.id, base_url=base, ttl_days=settings.join_link_ttl_days
        )
        kept[str(m.id)] = link.url
        learners.append(DemoLearner(m.display_name, link.url, new=True))
    _secret_file(links_file, json.dumps(kept, indent=1))
    trainer_user = await User.objects().where(User.email == TRAINER_EMAIL).first()
    console = f"/cohorts/{cohort.id}/console"
    return DemoLinks(
        cohort_id=cohort.id,
        trainer_email=trainer_user.email if trainer_user else TRAINER_EMAIL,
        trainer_password=password,
        sign_in_url=f"{base}/login?next={console}",
        console_url=f"{base}{console}",
        classroom_url=f"{base}/classroom/{cohort.id}",
        learners=learners,
        admin_email=ADMIN_EMAIL,
        admin_password=admin_password,
        admin_url=f"{base}/admin",
        first_run=first_run,
    )


def format_demo(links: DemoLinks) -> str:
    replaced = [x for x in links.learners if x.new]
    if links.first_run:
        note = "  Learners (personal join links, the same on every run while they work):"
    elif replaced:
        note = (
            "  Learners (personal join links; new ones were issued where the old link had been "
            "revoked or had expired, marked *; the old ones no longer work):"
        )
    else:
        note = "  Learners (personal join links, unchanged since the last run):"
    lines = [
        "",
        "Estrade demo room",
        "  Trainer: open the console (you will be asked to sign in)",
        f"           {links.console_url}",
        f"           email    {links.trainer_email}",
        (
            f"           password {links.trainer_password}"
            if links.trainer_password
            else "           password (set when the demo was first created; "
            "reset it with the admin pages)"
        ),
        note,
        *[
            f"    {x.name}: {x.url}{' *' if x.new and not links.first_run else ''}"
            for x in links.learners
        ],
        f"  Admin: {links.admin_url}",
        f"           email    {links.admin_email}",
        (
            f"           password {links.admin_password}   (shown only this once: note it)"
            if links.admin_password
            else "           password (shown when the demo was created; to set a new one: "
            f"estrade create-admin {links.admin_email})"
        ),
        "",
    ]
    return "\n".join(lines)
