"""A demo cohort (one trainer, three learners) for trying Estrade out."""

from __future__ import annotations

import datetime as dt
import secrets

import msgspec

from appliance.accounts import schemas as s
from appliance.accounts import services
from appliance.accounts.tables import Cohort, User
from appliance.settings import Settings

__all__ = ["DemoLinks", "seed_demo"]

DEMO_COHORT = "Demo — Développeur web"
TRAINER_EMAIL = "trainer@demo.estrade.invalid"


class DemoLinks(msgspec.Struct):
    cohort_id: int
    trainer_email: str
    trainer_password: str | None
    sign_in_url: str
    classroom_url: str
    learner_urls: list[tuple[str, str]]


async def seed_demo(settings: Settings) -> DemoLinks:
    """Create the demo cohort if missing (fresh learner links either way)."""
    base = settings.resolved_public_url
    cohort = await Cohort.objects().where(Cohort.name == DEMO_COHORT).first()
    # The demo trainer's password is kept (mode 0600) in the data folder so that every
    # `make run` can print it again; it is a demo, not a production account.
    password_file = settings.data_dir / "demo-trainer-password"
    password: str | None = None
    if cohort is None:
        today = dt.date.today()
        cohort = await services.create_cohort(
            s.CohortIn(name=DEMO_COHORT, first_day=today, last_day=today + dt.timedelta(days=90))
        )
        password = secrets.token_urlsafe(12)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        password_file.touch(mode=0o600)
        password_file.write_text(password)
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
    _, learners = await services.members(cohort.id)
    urls = []
    for m in learners:
        link = await services.issue_link(
            cohort.id, m.id, base_url=base, ttl_days=settings.join_link_ttl_days
        )
        urls.append((m.display_name, link.url))
    trainer_user = await User.objects().where(User.email == TRAINER_EMAIL).first()
    return DemoLinks(
        cohort_id=cohort.id,
        trainer_email=trainer_user.email if trainer_user else TRAINER_EMAIL,
        trainer_password=password,
        sign_in_url=f"{base}/login",
        classroom_url=f"{base}/classroom/{cohort.id}",
        learner_urls=urls,
    )


def format_demo(links: DemoLinks) -> str:
    lines = [
        "",
        "Estrade demo room",
        f"  Trainer: sign in at {links.sign_in_url}",
        f"           email    {links.trainer_email}",
        (
            f"           password {links.trainer_password}"
            if links.trainer_password
            else "           password (set when the demo was first created; "
            "reset it with `estrade create-admin` or the admin API)"
        ),
        f"           then open {links.classroom_url}",
        "  Learners (personal join links):",
        *[f"    {name}: {url}" for name, url in links.learner_urls],
        "",
    ]
    return "\n".join(lines)
