"""Each test starts with no memory of when a cohort's figures were last brought up to date
(cohort ids restart with each test's emptied tables)."""

from collections.abc import Iterator

import pytest

from appliance.engagement import services


@pytest.fixture(autouse=True)
def _fresh_checks() -> Iterator[None]:
    services._checked.clear()
    services._views.clear()
    yield
    services._checked.clear()
    services._views.clear()
