"""Sign-in, where each role lands, join links and their problem pages, access to the shells."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.helpers.browser import ADMIN_EMAIL, BrowserServer, shoot, sign_in

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def world(live_server: BrowserServer) -> dict[str, Any]:
    api = live_server.api()
    w: dict[str, Any] = {"api": api}
    w["trainer"] = api.user("trainer@example.org", "Tina Trainer", "trainer")
    w["operator"] = api.user("operator@example.org", "Otto Operator", "operator")
    w["learner"] = api.user("learner@example.org", "Léa Learner", "learner", password=None)
    w["guarded"] = api.user(
        "guarded@example.org", "Gus Guarded", "learner", password="learner-pass-1"
    )
    w["cohort"] = api.cohort("Dev web")
    w["other"] = api.cohort("Réseaux")
    for user in ("trainer", "learner", "guarded"):
        api.enrol(w["cohort"]["id"], w[user]["id"])
    return w


@pytest.mark.parametrize(
    ("email", "landing"),
    [
        (ADMIN_EMAIL, "/admin"),
        ("trainer@example.org", "/cohorts"),
        ("operator@example.org", "/operator"),
    ],
)
def test_sign_in_leads_each_role_home(
    new_page: Any, world: dict[str, Any], email: str, landing: str
) -> None:
    page = new_page()
    page.goto("/")
    assert page.url.endswith("/login")
    sign_in(page, email)
    assert page.url.endswith(landing)
    page.goto("/")
    assert page.url.endswith(landing)
    # Signing out leads back to the sign-in page, and / with it.
    page.locator("#sign-out").click()
    page.wait_for_url("**/login")
    page.goto("/")
    assert page.url.endswith("/login")


def test_wrong_password_is_said_and_nothing_opens(new_page: Any, world: dict[str, Any]) -> None:
    page = new_page()
    page.goto("/login")
    page.locator("#email").fill("trainer@example.org")
    page.locator("#password").fill("not the password")
    page.locator("#login-form button[type=submit]").click()
    expect(page.locator("#login-error")).to_have_text("Wrong email or password.")
    assert page.url.endswith("/login")


def test_trainer_sees_their_cohorts_and_opens_the_console(
    new_page: Any, world: dict[str, Any]
) -> None:
    page = new_page()
    sign_in(page, "trainer@example.org")
    items = page.locator("#my-cohorts li")
    expect(items).to_have_count(1)
    expect(items.first).to_contain_text("Dev web")
    items.first.locator('a[href$="/console"]').click()
    page.wait_for_url(f"**/cohorts/{world['cohort']['id']}/console")
    expect(page.locator("h1")).to_have_text("Trainer console")
    # A cohort the trainer is not part of is the same 404 as one that does not exist.
    response = page.goto(f"/cohorts/{world['other']['id']}/console")
    assert response.status == 404
    expect(page.locator("h1")).to_have_text("Page not found")
    assert page.goto("/cohorts/99999/console").status == 404
    # The admin pages are not a trainer's.
    assert page.goto("/admin").status == 403
    expect(page.locator("h1")).to_have_text("You may not open this page")


def test_a_page_needing_sign_in_comes_back_after_it(new_page: Any, world: dict[str, Any]) -> None:
    page = new_page()
    target = f"/cohorts/{world['cohort']['id']}/console"
    page.goto(target)
    assert re.search(r"/login\?next=", page.url)
    page.locator("#email").fill("trainer@example.org")
    page.locator("#password").fill("correct horse battery")
    page.locator("#login-form button[type=submit]").click()
    page.wait_for_url(f"**{target}")


def test_learner_link_lands_in_the_classroom(new_page: Any, world: dict[str, Any]) -> None:
    url = world["api"].link(world["cohort"]["id"], world["learner"]["id"])
    page = new_page()
    page.goto(url)
    page.wait_for_url(f"**/classroom/{world['cohort']['id']}")
    expect(page.locator("h1")).to_have_text("Classroom")
    expect(page.locator("#topbar").get_by_text("Léa Learner")).to_be_visible()
    page.goto("/")
    assert page.url.endswith(f"/classroom/{world['cohort']['id']}")
    # Another cohort's classroom and the trainer's console are not the learner's.
    assert page.goto(f"/classroom/{world['other']['id']}").status == 404
    assert page.goto(f"/cohorts/{world['cohort']['id']}/console").status == 403


@pytest.mark.parametrize(
    ("reason", "title"),
    [
        ("unknown", "This link does not work"),
        ("revoked", "This link is no longer valid"),
        ("expired", "This link has expired"),
        ("password_required", "Enter your password"),
        ("nonsense<script>", "This link does not work"),
    ],
)
def test_link_problem_pages(new_page: Any, world: dict[str, Any], reason: str, title: str) -> None:
    page = new_page()
    page.goto(f"/link-problem?reason={reason}")
    expect(page.locator("h1")).to_have_text(title)
    # Without the link itself there is nothing to type a password into.
    expect(page.locator("#join-form")).to_be_hidden()


def test_unknown_and_revoked_links_explain_themselves(new_page: Any, world: dict[str, Any]) -> None:
    page = new_page()
    page.goto("/join/not-a-real-secret")
    page.wait_for_url("**/link-problem?reason=unknown")
    expect(page.locator("h1")).to_have_text("This link does not work")

    api = world["api"]
    url = api.link(world["cohort"]["id"], world["learner"]["id"])
    page.goto(url)
    page.wait_for_url("**/classroom/*")
    expect(page.locator("#topbar")).to_contain_text("Léa Learner")
    api.call(
        "POST",
        f"/api/admin/cohorts/{world['cohort']['id']}/learners/{world['learner']['id']}"
        "/join-link/revoke",
    )
    # The open session ends with the link: the socket closes (4401) and the classroom takes the
    # learner to the page that says why, by itself.
    page.wait_for_url("**/link-problem?reason=revoked")
    page.goto(url)
    page.wait_for_url("**/link-problem?reason=revoked")
    expect(page.locator("h1")).to_have_text("This link is no longer valid")


def test_link_with_password_asks_for_it(new_page: Any, world: dict[str, Any]) -> None:
    url = world["api"].link(world["cohort"]["id"], world["guarded"]["id"])
    page = new_page()
    page.goto(url)
    page.wait_for_url("**/link-problem?reason=password_required#*")
    expect(page.locator("h1")).to_have_text("Enter your password")
    field = page.get_by_label("Your password")
    expect(field).to_be_visible()
    field.fill("not-the-password")
    field.press("Enter")
    error = page.locator("#join-error")
    expect(error).to_contain_text("not the right one")
    field.fill("learner-pass-1")
    page.get_by_role("button", name="Join the class").click()
    page.wait_for_url(f"**/classroom/{world['cohort']['id']}")
    expect(page.locator("h1")).to_have_text("Classroom")


def test_sign_in_goes_back_only_to_this_site(new_page: Any, world: dict[str, Any]) -> None:
    page = new_page()
    page.goto("/login?next=//evil.example/x")
    expect(page.locator("html.ready")).to_have_count(1)
    verdicts = page.evaluate(
        """async (cases) => {
          const { safeNext } = await import("/static/js/api.js");
          return cases.map((c) => safeNext(c));
        }""",
        [
            "/cohorts/1/console",
            "//evil.example",
            "/\t/evil.example",
            "/\\evil.example",
            "https://evil.example",
            "javascript:alert(1)",
            "/\n/evil.example",
            "",
        ],
    )
    assert verdicts == ["/cohorts/1/console"] + ["/"] * 7
    page.locator("#email").fill("trainer@example.org")
    page.locator("#password").fill("correct horse battery")
    page.locator("#login-form button[type=submit]").click()
    page.wait_for_url(f"{page.url.split('/login')[0]}/cohorts")


def test_link_opened_by_a_signed_in_trainer_asks_before_switching(
    new_page: Any, world: dict[str, Any]
) -> None:
    """A learner's link opened where a trainer is signed in (e.g. a link on another site) does
    not silently replace the trainer's session: the page asks first."""
    page = new_page()
    sign_in(page, "trainer@example.org")
    url = world["api"].link(world["cohort"]["id"], world["learner"]["id"])
    page.goto(url)
    page.wait_for_url("**/link-problem?reason=switch#*")
    expect(page.locator("h1")).to_have_text("Someone is already signed in")
    expect(page.get_by_label("Your password")).to_be_hidden()
    assert page.request.get(f"{page.url.split('/link-problem')[0]}/api/me").json()["role"] == (
        "trainer"
    )
    page.get_by_role("button", name="Sign out and join the class").click()
    page.wait_for_url(f"**/classroom/{world['cohort']['id']}")
    expect(page.locator("#topbar").get_by_text("Léa Learner")).to_be_visible()


def test_learner_password_does_not_open_the_sign_in_page(
    new_page: Any, world: dict[str, Any]
) -> None:
    page = new_page()
    page.goto("/login")
    page.locator("#email").fill("guarded@example.org")
    page.locator("#password").fill("learner-pass-1")
    page.locator("#login-form button[type=submit]").click()
    expect(page.locator("#login-error")).to_contain_text("join link")
    assert "/login" in page.url


EXPIRED = {
    "en-US": ("Lifetime of the next links", "Expire now", "This link has expired", "Expired"),
    "fr-FR": ("Durée des prochains liens", "Faire expirer", "Ce lien a expiré", "Expiré"),
}


@pytest.mark.parametrize("locale", ["en-US", "fr-FR"])
def test_a_link_for_a_few_hours_then_expired_now(
    new_page: Any, world: dict[str, Any], locale: str
) -> None:
    """An admin issues a link for two hours, then makes it expire: the learner's open classroom
    goes to the expired-link page by itself, and the link keeps saying so."""
    hours_label, expire, title, state = EXPIRED[locale]
    api, cid = world["api"], world["cohort"]["id"]
    user = api.user(f"short-{locale}@example.org", f"Sam Short {locale}", "learner", password=None)
    api.enrol(cid, user["id"])
    admin = new_page(locale=locale)
    admin.on("dialog", lambda d: d.accept())
    sign_in(admin, ADMIN_EMAIL)
    admin.goto(f"/admin/cohorts/{cid}")
    admin.get_by_label(hours_label).fill("2")
    row = admin.locator(f'#learner-table tbody tr[data-user-id="{user["id"]}"]')
    row.locator("td.row-actions button").first.click()
    expect(admin.locator("#issued-url")).to_have_value(re.compile("/join/"))
    url = admin.locator("#issued-url").input_value()
    status = next(
        s
        for s in api.call("GET", f"/api/admin/cohorts/{cid}/join-links")
        if s["user_id"] == user["id"]
    )
    left = dt.datetime.fromisoformat(status["expires_at"]) - dt.datetime.now(dt.UTC)
    assert dt.timedelta(hours=1, minutes=58) < left <= dt.timedelta(hours=2), left

    learner = new_page(locale=locale, width=360, height=740)
    learner.goto(url)
    learner.wait_for_url(f"**/classroom/{cid}")
    expect(learner.locator("#stage-state h2")).to_be_visible()  # in the room (welcome came)
    row.get_by_role("button", name=re.compile(expire, re.I)).click()
    expect(row).to_contain_text(state)
    learner.wait_for_url("**/link-problem?reason=expired")
    expect(learner.locator("h1")).to_have_text(title)
    learner.goto(url)
    learner.wait_for_url("**/link-problem?reason=expired")
    expect(learner.locator("h1")).to_have_text(title)
    assert learner.evaluate("document.documentElement.scrollWidth") <= 360
    shoot(learner, f"link-expired-{locale[:2]}-360")
    # A link for more than a year of hours is refused with the field named.
    r = api.http.post(
        f"/api/admin/cohorts/{cid}/learners/{user['id']}/join-link", json={"hours": 10_000}
    )
    assert r.status_code == 400 and "hours" in r.text, r.text
