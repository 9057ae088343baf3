"""The admin pages, driven like an administrator would: cohorts, people, CSV import, links."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.helpers.browser import ADMIN_EMAIL, PASSWORD, BrowserServer, sign_in

pytestmark = pytest.mark.browser

XSS_NAME = "<img src=x onerror=alert(1)>"
XSS_FILE = "<img src=y onerror=alert(2)>.csv"


def csv_file(name: str, text: str) -> dict[str, Any]:
    return {"name": name, "mimeType": "text/csv", "buffer": text.encode()}


@pytest.fixture
def admin_page(new_page: Any) -> Any:
    page = new_page()
    alerts: list[str] = []

    def on_dialog(dialog: Any) -> None:
        # Our confirmations are accepted; an alert() would be a script that ran from data.
        if dialog.type != "confirm":
            alerts.append(dialog.message)
        dialog.accept()

    page.on("dialog", on_dialog)
    page.alerts = alerts
    sign_in(page, ADMIN_EMAIL)
    return page


def test_cohort_people_import_and_links(
    admin_page: Any, new_page: Any, live_server: BrowserServer, tmp_path: Path
) -> None:
    page = admin_page
    assert page.url.endswith("/admin")

    # Create a cohort: it is listed, and its page opens.
    page.get_by_label("Name").fill("Compta 2027")
    page.get_by_label("First day").fill("2027-01-04")
    page.get_by_label("Last day").fill("2027-03-26")
    page.get_by_role("button", name="Create the cohort").click()
    row = page.locator("#cohort-table tbody tr", has_text="Compta 2027")
    expect(row).to_have_count(1)
    expect(page.locator("#notices")).to_contain_text("Cohort “Compta 2027” created.")
    row.get_by_role("link", name="Manage Compta 2027").click()
    page.wait_for_url("**/admin/cohorts/*")
    expect(page.locator("html.ready")).to_have_count(1)  # forms handled by the page's module
    cohort_path = page.url.removeprefix(live_server.url)
    expect(page.locator("h1")).to_have_text("Compta 2027")

    # Edit it.
    page.get_by_label("Name").fill("Comptabilité 2027")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("h1")).to_have_text("Comptabilité 2027")
    # A bad edit is refused with the field named, and nothing changes.
    page.get_by_label("Time zone").fill("Mars/Olympus")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#edit-error")).to_contain_text("Time zone")
    page.get_by_label("Time zone").fill("Europe/Paris")

    # Schedule classes: times are the cohort's wall clock (Paris), winter and summer.
    for day in ("2027-01-11", "2027-06-14"):
        page.get_by_label("Day", exact=True).fill(day)
        page.get_by_label("Start", exact=True).fill("09:00")
        page.get_by_label("End", exact=True).fill("12:30")
        page.get_by_role("button", name="Schedule").click()
        expect(page.locator("#session-table tbody tr", has_text=day[:4])).not_to_have_count(0)
    expect(page.locator("#session-table tbody tr")).to_have_count(2)
    expect(page.locator("#session-table")).to_contain_text("9:00")
    cohort_id = cohort_path.rsplit("/", 1)[1]
    scheduled = live_server.api().call("GET", f"/api/admin/cohorts/{cohort_id}/sessions")
    starts = [dt.datetime.fromisoformat(c["scheduled_start"]) for c in scheduled]
    assert starts == [
        dt.datetime(2027, 1, 11, 8, 0, tzinfo=dt.UTC),
        dt.datetime(2027, 6, 14, 7, 0, tzinfo=dt.UTC),
    ]
    page.get_by_label("End", exact=True).fill("08:00")
    page.get_by_role("button", name="Schedule").click()
    expect(page.locator("#session-error")).to_have_text("The end must come after the start.")

    # A trainer account, created on the people page, then enrolled.
    page.get_by_role("link", name="Create trainers and learners").click()
    page.wait_for_url("**/admin/people")
    expect(page.locator("html.ready")).to_have_count(1)  # forms handled by the page's module
    page.get_by_label("Name").fill("Tom Trainer")
    page.get_by_label("Email").fill("tom@example.org")
    page.get_by_label("Role").select_option("trainer")
    page.locator("#person-password").fill(PASSWORD)
    page.get_by_role("button", name="Create the account").click()
    expect(page.locator("#people-table tbody tr", has_text="tom@example.org")).to_have_count(1)
    # The same email twice is refused, clearly.
    page.get_by_label("Name").fill("Tom Again")
    page.get_by_label("Email").fill("tom@example.org")
    page.get_by_role("button", name="Create the account").click()
    expect(page.locator("#person-error")).to_contain_text("Already exists")

    page.goto(cohort_path)
    expect(page.locator("html.ready")).to_have_count(1)  # forms handled by the page's module
    page.get_by_label("Enrol a trainer or a learner").select_option(
        label="Tom Trainer <tom@example.org>"
    )
    page.get_by_role("button", name="Enrol", exact=True).click()
    expect(page.locator("#trainer-list")).to_contain_text("Tom Trainer")

    # A CSV with one bad row: the report shows it, and nothing is imported.
    page.get_by_label("CSV file").set_input_files(
        csv_file(XSS_FILE, "name,email\nAlice Martin,alice@example.org\nBob,not-an-email\n")
    )
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator("#import-summary")).to_contain_text("Nothing was imported: 1 line")
    report = page.locator("#import-table tbody tr")
    expect(report).to_have_count(2)
    expect(report.nth(1)).to_contain_text("not-an-email")
    expect(report.nth(1)).to_contain_text("Error: this is not an email address")
    expect(page.locator("#import-caption")).to_have_text(f"Report for {XSS_FILE}")
    expect(page.locator("#learners-empty")).to_be_visible()

    # Then a good file, with markup for a name: imported, shown as text.
    page.get_by_label("CSV file").set_input_files(
        csv_file("good.csv", f"Alice Martin,alice@example.org\n{XSS_NAME},xss@example.org\n")
    )
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator("#import-summary")).to_contain_text("2 account(s) created")
    learners = page.locator("#learner-table tbody tr")
    expect(learners).to_have_count(2)
    expect(page.locator("#learner-table")).to_contain_text(XSS_NAME)
    assert page.locator("main img").count() == 0

    # Issue Alice's link: shown once, and it opens the classroom for her.
    alice = learners.filter(has_text="alice@example.org")
    expect(alice).to_contain_text("No link")
    alice.get_by_role("button", name="Issue a link for Alice Martin").click()
    issued = page.get_by_label("Personal link for Alice Martin (shown only once)")
    expect(issued).to_be_visible()
    url = issued.input_value()
    assert url.startswith(f"{live_server.url}/join/")
    expect(alice).to_contain_text("Active until")
    learner = new_page()
    learner.goto(url)
    learner.wait_for_url(f"**/classroom/{cohort_path.rsplit('/', 1)[1]}")
    expect(learner.locator("#topbar")).to_contain_text("Alice Martin")
    expect(learner.locator("#stage-state h2")).to_be_visible()  # in the room (welcome came)

    # Revoke it: her open classroom goes by itself to the page that says the link is no longer
    # valid (socket closed with 4401), and the link keeps saying so. The test opens the link
    # again only once the page has left by itself, or the two navigations race (ERR_ABORTED).
    alice.get_by_role("button", name="Revoke the link of Alice Martin").click()
    expect(alice).to_contain_text("Revoked")
    learner.wait_for_url("**/link-problem?reason=revoked")
    expect(learner.locator("h1")).to_have_text("This link is no longer valid")
    learner.goto(url)
    learner.wait_for_url("**/link-problem?reason=revoked")
    expect(learner.locator("h1")).to_have_text("This link is no longer valid")

    # Export: fresh links for everyone, as a CSV download.
    with page.expect_download() as info:
        page.get_by_role("button", name="Download new links for everyone (CSV)").click()
    download = info.value
    assert download.suggested_filename.endswith("-join-links.csv")
    saved = tmp_path / "links.csv"
    download.save_as(saved)
    rows = list(csv.reader(io.StringIO(saved.read_text(encoding="utf-8-sig"))))
    assert rows[0] == ["name", "email", "join_url", "expires_at"]
    assert sorted(r[1] for r in rows[1:]) == ["alice@example.org", "xss@example.org"]
    expect(learners.filter(has_text="xss@example.org")).to_contain_text("Active until")

    # Archive: gone from the list, back with "show archived".
    page.get_by_role("button", name="Archive the cohort").click()
    expect(page.locator("#archived-badge")).to_be_visible()
    page.get_by_role("link", name="Cohorts", exact=True).first.click()
    page.wait_for_url("**/admin")
    expect(page.locator("html.ready")).to_have_count(1)  # forms handled by the page's module
    expect(page.locator("#cohort-table")).not_to_contain_text("Comptabilité 2027")
    page.get_by_label("Show archived cohorts").check()
    expect(page.locator("#cohort-table")).to_contain_text("Comptabilité 2027")

    assert page.alerts == []
    assert learner.locator("img").count() == 0


def test_people_page_shows_markup_as_text_and_deactivates(
    admin_page: Any, live_server: BrowserServer
) -> None:
    api = live_server.api()
    api.user("markup@example.org", "<b>bold</b><script>alert(3)</script>", "learner", None)
    page = admin_page
    page.goto("/admin/people")
    row = page.locator("#people-table tbody tr", has_text="markup@example.org")
    expect(row).to_contain_text("<b>bold</b><script>alert(3)</script>")
    assert row.locator("b, script").count() == 0
    page.get_by_label("Show").select_option("learner")
    expect(page.locator("#people-table tbody tr", has_text="admin@example.org")).to_have_count(0)
    row.get_by_role("button").click()
    expect(row).to_contain_text("Deactivated")
    assert page.alerts == []


def test_a_form_sent_before_the_page_is_ready_is_sent_once_it_is(
    admin_page: Any, live_server: BrowserServer
) -> None:
    """A slow start (the page shows after 1.5 s even when its module has not booted): an account
    typed and sent meanwhile is neither lost nor sent by the browser itself (a bare 405)."""
    page = admin_page
    held: list[Any] = []
    page.route("**/api/me", lambda route: held.append(route))  # the module's boot waits here
    page.goto("/admin/people")
    expect(page.locator("html.ready")).to_have_count(0)
    page.get_by_label("Name").fill("Early Bird")
    page.get_by_label("Email").fill("early@example.org")
    page.get_by_role("button", name="Create the account").click()
    page.get_by_role("button", name="Create the account").click()
    page.wait_for_timeout(300)  # time for a native submission to leave the page, were it sent
    assert page.url.endswith("/admin/people")
    assert len(held) == 1
    held[0].continue_()
    expect(page.locator("#people-table tbody tr", has_text="early@example.org")).to_have_count(1)
    expect(page.locator("#notices")).to_contain_text("Early Bird")
    users = live_server.api().call("GET", "/api/admin/users")
    assert [u["email"] for u in users].count("early@example.org") == 1
    assert page.alerts == []
