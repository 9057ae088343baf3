"""Property-based fuzzing of the whole HTTP API (schemathesis) against a real server.

Every operation of ``/schema/openapi.json`` is called with generated inputs, valid
(positive) and invalid (negative) for the published schema, anonymously and signed in as
each role, on SQLite and PostgreSQL. Every answer must not be a 5xx and must match the
schema the server publishes. Signing out and archiving are left out so that the session
lives through the run; the seed is fixed and the examples bounded so that ``make test``
stays within minutes.

Schemathesis' own pytest integration (``schema.parametrize``) does not run under pytest 9.2
(it sets ``Node._nodeid``, which pytest 9 no longer has): each operation's Hypothesis
strategy (``APIOperation.as_strategy``, the documented Python API) is driven with
``hypothesis.given`` instead.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.documents import samples
from tests.helpers.world import World

ROLES = ("anonymous", "learner", "trainer", "operator", "admin")
# Signing out would end the session; archiving would end the cohort (or the account).
EXCLUDED = r"^/api/auth/logout$|/archive$"
SEED = 20261130
# (mode, real ids in the path?) -> examples per operation. With random ids most calls end in a
# 404; the world's own ids (its cohort, learner, a document) take them into the handlers.
# ESTRADE_FUZZ_SCALE=N multiplies them for a deeper run by hand (make test uses 1).
SCALE = int(os.environ.get("ESTRADE_FUZZ_SCALE", "1"))
ROUNDS = {
    (GenerationMode.POSITIVE, True): 3 * SCALE,
    (GenerationMode.POSITIVE, False): 2 * SCALE,
    (GenerationMode.NEGATIVE, True): 2 * SCALE,
    (GenerationMode.NEGATIVE, False): 1 * SCALE,
}
# Every role on SQLite; on PostgreSQL the roles whose input reaches most queries and writes
# (the others are refused nearly everything; tests/test_bad_input.py covers sign-in): time
# is bounded.
RUNS = [("sqlite", role) for role in ROLES] + [("postgres", role) for role in ("trainer", "admin")]


@pytest.fixture
async def role_headers(role: str, live: Any, world: World) -> dict[str, str]:
    cookie = await live.cookie(world, role)
    token = dict(p.split("=", 1) for p in cookie.split("; "))["csrftoken"]
    return {"cookie": cookie, "x-csrftoken": token}


def _fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    examples: int,
    path_parameters: dict[str, Any],
    call: Callable[[Any], None],
) -> None:
    @seed(SEED)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    def run(case: Any) -> None:
        call(case)

    run()


@pytest.fixture
async def real_ids(live: Any, world: World) -> dict[str, int]:
    trainer = await live.cookie(world, "trainer")
    token = dict(p.split("=", 1) for p in trainer.split("; "))["csrftoken"]
    async with httpx.AsyncClient(
        base_url=live.base, headers={"cookie": trainer, "x-csrftoken": token}
    ) as client:
        r = await client.post(
            f"/api/cohorts/{world.cohort.id}/documents",
            params={"filename": "cours.pdf"},
            content=samples.pdf(),
        )
        assert r.status_code == 201, r.text
    return {"cohort_id": world.cohort.id, "user_id": world.learner.id, "doc_id": r.json()["id"]}


@pytest.mark.parametrize(("database_url", "role"), RUNS, indirect=["database_url"], scope="session")
def test_every_operation_answers_without_5xx_and_as_documented(
    role: str, live: Any, role_headers: dict[str, str], real_ids: dict[str, int]
) -> None:
    schema = schemathesis.openapi.from_url(f"{live.base}/schema/openapi.json")
    schema.config.update(base_url=live.base)
    schema = schema.exclude(path_regex=EXCLUDED)

    statuses: Counter[tuple[str, int]] = Counter()

    def call(case: Any) -> None:
        response = case.call_and_validate(
            headers=role_headers,
            checks=[not_a_server_error, response_schema_conformance],
            timeout=30,
        )
        statuses[(case.operation.label, response.status_code)] += 1

    failures: list[str] = []
    operations = 0
    # Deleting last, so that the real document and enrolment serve every other operation first.
    ordered = sorted(
        (result.ok() for result in schema.get_all_operations()),
        key=lambda op: op.method.upper() == "DELETE",
    )
    for operation in ordered:
        operations += 1
        names = re.findall(r"\{(\w+)\}", operation.path)
        for (mode, real), examples in ROUNDS.items():
            fixed = {n: real_ids[n] for n in names if n in real_ids} if real else {}
            if real and not fixed:
                continue
            try:
                _fuzz_operation(operation, mode, examples, fixed, call)
            except Exception as exc:
                where = "real ids" if real else "random ids"
                failures.append(f"{operation.label} ({mode.value}, {where}): {exc}")
    assert operations >= 30
    print(f"\n{sum(statuses.values())} calls over {operations} operations:")
    for (label, status), count in sorted(statuses.items()):
        print(f"  {status} x{count:<3} {label}")
    assert not failures, "\n\n".join(failures)
