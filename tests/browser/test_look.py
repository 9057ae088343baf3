"""Language, accessibility (axe-core, vendored) and screenshots at 360 px and 1440 px."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.helpers.browser import ADMIN_EMAIL, BrowserServer, axe_violations, shoot, sign_in

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def world(live_server: BrowserServer) -> dict[str, Any]:
    api = live_server.api()
    w: dict[str, Any] = {"api": api, "cohort": api.cohort("Développement web — session d'automne")}
    cid = w["cohort"]["id"]
    trainer = api.user("trainer@example.org", "Tina Trainer", "trainer")
    api.enrol(cid, trainer["id"])
    api.call(
        "POST",
        f"/api/admin/cohorts/{cid}/learners/import",
        content="Léa Lefèvre,lea@example.org\nMarc-Antoine Dubois-Hernández,marc@example.org\n",
        headers={"content-type": "text/csv"},
    )
    learners = api.call("GET", f"/api/admin/cohorts/{cid}")["learners"]
    w["learner"] = learners[0]
    api.link(cid, learners[0]["id"])
    return w


def test_language_follows_the_browser_then_the_choice(
    new_page: Any, world: dict[str, Any], live_server: BrowserServer
) -> None:
    page = new_page(locale="fr-FR")
    page.goto("/login")
    expect(page.locator("h1")).to_have_text("Connexion")
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    page.get_by_role("button", name="Switch to English").click()
    expect(page.locator("h1")).to_have_text("Sign in")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.reload()
    expect(page.locator("h1")).to_have_text("Sign in")
    # Signed in, a switch is remembered by the account too.
    sign_in(page, "trainer@example.org")
    expect(page.locator("h1")).to_have_text("My cohorts")
    page.get_by_role("button", name="Passer en français").click()
    expect(page.locator("h1")).to_have_text("Mes promotions")
    expect(page.locator("#my-cohorts")).to_contain_text("Ouvrir la console")
    page.reload()
    expect(page.locator("h1")).to_have_text("Mes promotions")
    expect(page).to_have_title("Mes promotions · Estrade")
    me = page.request.get(f"{live_server.url}/api/me").json()
    assert me["locale"] == "fr"


def test_an_english_browser_gets_english(new_page: Any, world: dict[str, Any]) -> None:
    page = new_page(locale="en-GB")
    page.goto("/link-problem?reason=expired")
    expect(page.locator("h1")).to_have_text("This link has expired")
    page = new_page(locale="de-DE")
    page.goto("/link-problem?reason=expired")
    expect(page.locator("h1")).to_have_text("Ce lien a expiré")


def _pages(world: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(name, path, who): the pages checked and photographed."""
    cid = world["cohort"]["id"]
    return [
        ("login", "/login", None),
        ("link-problem-revoked", "/link-problem?reason=revoked", None),
        ("error-404", "/classroom/99999", "trainer@example.org"),
        ("admin-cohorts", "/admin", ADMIN_EMAIL),
        ("admin-cohort", f"/admin/cohorts/{cid}", ADMIN_EMAIL),
        ("admin-people", "/admin/people", ADMIN_EMAIL),
        ("trainer-cohorts", "/cohorts", "trainer@example.org"),
        ("trainer-console", f"/cohorts/{cid}/console", "trainer@example.org"),
        ("operator", "/operator", ADMIN_EMAIL),
    ]


# Both languages and both themes, without the full product of them (each run takes ~10 s).
@pytest.mark.parametrize(("lang", "scheme"), [("fr", "light"), ("en", "dark")])
def test_no_serious_accessibility_violation(
    new_page: Any, world: dict[str, Any], lang: str, scheme: str
) -> None:
    page = new_page(locale=lang, color_scheme=scheme)
    signed_in: str | None = None
    found = {}
    for name, path, who in sorted(_pages(world), key=lambda p: p[2] or ""):
        if who != signed_in:
            if who:
                sign_in(page, who)
            signed_in = who
        page.goto(path)
        expect(page.locator("html.ready")).to_have_count(1)
        page.wait_for_load_state("networkidle")
        violations = axe_violations(page)
        if violations:
            found[name] = violations
    assert not found, found


def test_password_form_is_accessible(new_page: Any, world: dict[str, Any]) -> None:
    api = world["api"]
    user = api.user("guard@example.org", "Gabriel Garde", "learner", password="learner-pass-1")
    api.enrol(world["cohort"]["id"], user["id"])
    url = api.link(world["cohort"]["id"], user["id"])
    page = new_page(locale="fr-FR")
    page.goto(url)
    expect(page.locator("#join-form")).to_be_visible()
    page.get_by_role("button", name="Rejoindre la classe").click()
    expect(page.locator("#join-error")).to_have_text("Saisissez votre mot de passe.")
    assert axe_violations(page) == []
    shoot(page, "link-password-fr-1440")


@pytest.mark.parametrize("width", [360, 1440])
def test_screenshots(new_page: Any, world: dict[str, Any], width: int) -> None:
    """Every page at a phone's and a wide screen's width, for a person to look at."""
    page = new_page(locale="fr-FR", width=width, height=800)
    signed_in: str | None = None
    for name, path, who in sorted(_pages(world), key=lambda p: p[2] or ""):
        if who != signed_in:
            if who:
                sign_in(page, who)
            signed_in = who
        page.goto(path)
        expect(page.locator("html.ready")).to_have_count(1)
        page.wait_for_load_state("networkidle")
        # Nothing may stick out sideways at any width.
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} is {overflow}px too wide at {width}px"
        shoot(page, f"{name}-{width}")
    dark = new_page(locale="en-GB", width=width, height=800, color_scheme="dark")
    sign_in(dark, ADMIN_EMAIL)
    dark.goto(f"/admin/cohorts/{world['cohort']['id']}")
    expect(dark.locator("#learner-table tbody tr").nth(1)).to_be_visible()
    shoot(dark, f"admin-cohort-dark-en-{width}")
    learner = new_page(locale="fr-FR", width=width, height=800, color_scheme="dark")
    url = world["api"].link(world["cohort"]["id"], world["learner"]["id"])
    learner.goto(url)
    expect(learner.locator("html.ready")).to_have_count(1)
    shoot(learner, f"classroom-dark-{width}")


def test_the_accessibility_check_can_fail(new_page: Any, world: dict[str, Any]) -> None:
    """A planted unlabelled field and grey-on-grey text are found: the check above is real."""
    page = new_page()
    page.goto("/login")
    expect(page.locator("html.ready")).to_have_count(1)
    page.evaluate(
        """() => {
          const input = document.createElement("input");
          document.querySelector("main").append(input);
          const p = document.createElement("p");
          p.textContent = "faint";
          p.style.color = "#bbb";
          p.style.background = "#ccc";
          document.querySelector("main").append(p);
        }"""
    )
    found = " ".join(axe_violations(page))
    assert "label" in found
    assert "color-contrast" in found


FOCUS_WALK = """(steps) => {
  // Facts about the element that has the keyboard focus now.
  const el = document.activeElement;
  const style = getComputedStyle(el);
  const label = el.getAttribute("aria-label") || el.labels?.[0]?.textContent;
  const name = (label || el.textContent || "").trim();
  return {
    tag: el.tagName.toLowerCase(),
    id: el.id,
    name,
    outline: style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2,
  };
}"""


def _tab_through(page: Any, limit: int = 60) -> list[dict[str, Any]]:
    """Every stop of the Tab key from the top of the page, with its focus style and name."""
    page.locator(".skip-link").focus()
    seen: list[dict[str, Any]] = [page.evaluate(FOCUS_WALK)]
    for _ in range(limit):
        page.keyboard.press("Tab")
        info = page.evaluate(FOCUS_WALK)
        if info["tag"] == "body" or (seen and info == seen[0]):
            break
        seen.append(info)
    return seen


def test_keyboard_only_sign_in_with_visible_focus(new_page: Any, world: dict[str, Any]) -> None:
    page = new_page()
    page.goto("/login")
    expect(page.locator("html.ready")).to_have_count(1)
    stops = _tab_through(page)
    names = [s["name"] for s in stops]
    assert names[:3] == ["Skip to content", "Estrade", "Passer en français"], names
    assert all(s["outline"] for s in stops), [s for s in stops if not s["outline"]]
    assert all(s["name"] for s in stops), stops
    # Type and send with the keyboard alone.
    page.locator("#email").focus()
    page.keyboard.type(ADMIN_EMAIL)
    page.keyboard.press("Tab")
    page.keyboard.type("correct horse battery")
    page.keyboard.press("Enter")
    page.wait_for_url("**/admin")


def test_every_admin_control_shows_its_focus(new_page: Any, world: dict[str, Any]) -> None:
    page = new_page(locale="fr-FR")
    sign_in(page, ADMIN_EMAIL)
    page.goto(f"/admin/cohorts/{world['cohort']['id']}")
    expect(page.locator("#learner-table tbody tr").nth(1)).to_be_visible()
    stops = _tab_through(page, limit=80)
    assert len(stops) > 20
    assert all(s["outline"] for s in stops), [s for s in stops if not s["outline"]]
    assert all(s["name"] for s in stops), [s for s in stops if not s["name"]]
