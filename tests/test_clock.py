"""One clock: join links, the guards and the services read ``clock.utcnow``, and nothing else."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance import clock
from appliance.accounts import services
from appliance.accounts.tables import User
from appliance.auth.guards import cohort_access
from appliance.auth.roles import LEARNERS
from appliance.errors import DomainError
from tests.helpers.world import World


async def test_moving_the_one_clock_expires_a_link_everywhere(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    link = await services.issue_link(
        world.cohort.id, world.learner.id, base_url="http://x", ttl_days=30
    )
    learner = await User.objects().where(User.id == world.learner.id).first()
    assert learner is not None
    await cohort_access(learner, world.cohort.id, LEARNERS)
    statuses = {s.user_id: s.status for s in await services.link_statuses(world.cohort.id)}
    assert statuses[world.learner.id] == "active"

    later = clock.utcnow() + dt.timedelta(days=31)
    monkeypatch.setattr(clock, "utcnow", lambda: later)
    statuses = {s.user_id: s.status for s in await services.link_statuses(world.cohort.id)}
    assert statuses[world.learner.id] == "expired"
    assert world.learner.id in await services.users_whose_link_expired([world.learner.id])
    with pytest.raises(DomainError) as err:  # the guard reads the same clock
        await cohort_access(learner, world.cohort.id, LEARNERS)
    assert err.value.status_code == 404
    assert link.expires_at < later
