"""The web UI's HTTP side: where ``/`` leads, page access, join-link pages, static files, i18n."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from appliance.accounts import schemas as s
from appliance.accounts import services
from appliance.web.pages import LINK_PROBLEMS
from tests.helpers.world import Client, World, sign_in_as

WEB = Path(__file__).resolve().parents[1] / "appliance" / "web"


@pytest.mark.parametrize(
    ("role", "landing"),
    [
        ("anonymous", "/login"),
        ("admin", "/admin"),
        ("operator", "/operator"),
        ("trainer", "/cohorts"),
        ("learner", "/classroom/{cohort}"),
    ],
)
async def test_home_leads_each_role(client: Client, world: World, role: str, landing: str) -> None:
    await sign_in_as(client, world, role)
    r = await client.get("/")
    assert r.status_code == 303
    assert r.headers["location"] == landing.format(cohort=world.cohort.id)


@pytest.mark.parametrize(
    ("role", "path", "status"),
    [
        ("anonymous", "/classroom/{cohort}", 303),
        ("learner", "/classroom/{cohort}", 200),
        ("learner", "/classroom/{other}", 404),
        ("learner", "/classroom/999999", 404),
        ("learner", "/cohorts/{cohort}/console", 403),
        ("learner", "/admin", 403),
        ("trainer", "/cohorts/{cohort}/console", 200),
        ("trainer", "/cohorts/{other}/console", 404),
        ("trainer", "/classroom/{cohort}", 200),
        ("trainer", "/operator", 403),
        ("trainer", "/admin/people", 403),
        ("operator", "/operator", 200),
        ("operator", "/classroom/{cohort}", 403),
        ("operator", "/admin", 403),
        ("admin", "/admin", 200),
        ("admin", "/admin/cohorts/{cohort}", 200),
        ("admin", "/cohorts/{other}/console", 200),
        ("admin", "/operator", 200),
    ],
)
async def test_page_access(client: Client, world: World, role: str, path: str, status: int) -> None:
    await sign_in_as(client, world, role)
    url = path.format(cohort=world.cohort.id, other=world.other_cohort.id)
    r = await client.get(url, headers={"accept": "text/html"})
    assert r.status_code == status, r.text
    if status == 303:
        assert r.headers["location"] == f"/login?next={url}"
    else:
        assert r.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in r.headers["content-security-policy"]
    if status in (403, 404):
        assert 'data-page="error"' in r.text
        assert f'data-status="{status}"' in r.text


async def test_link_problem_reason_is_one_of_ours(client: Client) -> None:
    r = await client.get("/link-problem", params={"reason": '"><script>alert(1)</script>'})
    assert r.status_code == 200
    assert 'data-reason="unknown"' in r.text
    assert "<script>alert" not in r.text
    for reason in LINK_PROBLEMS:
        r = await client.get("/link-problem", params={"reason": reason})
        assert f'data-reason="{reason}"' in r.text


async def test_a_browser_opening_a_password_link_gets_the_form(
    client: Client, world: World
) -> None:
    await services.update_user(world.learner.id, s.UserPatch(password="learner-secret-1"))
    link = await services.issue_link(world.cohort.id, world.learner.id, base_url="", ttl_days=3)
    secret = link.url.rsplit("/", 1)[1]
    r = await client.get(link.url, headers={"accept": "text/html"})
    assert r.status_code == 303
    # The secret goes in the fragment only: browsers never send it on.
    assert r.headers["location"] == f"/link-problem?reason=password_required#{secret}"
    r = await client.post(link.url, json={"password": "learner-secret-1"})
    assert r.json() == {"status": "joined", "next": f"/classroom/{world.cohort.id}"}


async def test_language_preference(client: Client, world: World) -> None:
    assert (await client.patch("/api/me", json={"locale": "en"})).status_code == 401
    await client.login(world.trainer.email)
    r = await client.patch("/api/me", json={"locale": "en"})
    assert r.status_code == 200
    assert r.json()["locale"] == "en"
    assert (await client.get("/api/me")).json()["locale"] == "en"
    r = await client.patch("/api/me", json={"locale": "de"})
    assert r.status_code == 400
    r = await client.patch("/api/me", json={"locale": "fr", "role": "admin"})
    assert r.status_code == 400
    assert (await client.get("/api/me")).json()["role"] == "trainer"


async def test_pages_guess_the_language(client: Client) -> None:
    r = await client.get("/login", headers={"accept-language": "en-GB,en;q=0.9"})
    assert '<html lang="en"' in r.text
    r = await client.get("/login", headers={"accept-language": "de-DE,fr;q=0.5"})
    assert '<html lang="fr"' in r.text


async def test_static_files_are_served(client: Client) -> None:
    r = await client.get("/static/js/i18n.js")
    assert r.status_code == 200
    assert "javascript" in r.headers["content-type"]
    r = await client.get("/static/i18n/fr.json")
    assert r.status_code == 200
    assert r.json()["login.title"] == "Connexion"
    assert (await client.get("/static/../pages.py")).status_code == 404


def _keys_used() -> set[str]:
    keys: set[str] = set()
    for page in (WEB / "pages").glob("*.html"):
        keys |= set(re.findall(r'data-i18n(?:-label|-title)?="([^"]+)"', page.read_text()))
    for module in (WEB / "static" / "js").rglob("*.js"):
        if module.name == "i18n.js":  # its comments show how t() is called
            continue
        text = module.read_text()
        keys |= set(re.findall(r'\bt\(\s*"([^"]+)"', text))
        keys |= set(re.findall(r'\b(?:title|key): "([a-z_]+\.[a-z_.]+)"', text))
        keys |= set(re.findall(r'\["/[^"]*", "([a-z_.]+)"\]', text))
    for template in (WEB / "templates").glob("*.html"):  # rendered by the server (Jinja2)
        keys |= set(re.findall(r"""\bt\(\s*["']([^"']+)["']""", template.read_text()))
    return keys


def test_every_string_is_translated() -> None:
    fr = json.loads((WEB / "static" / "i18n" / "fr.json").read_text())
    en = json.loads((WEB / "static" / "i18n" / "en.json").read_text())
    assert fr.keys() == en.keys()
    used = _keys_used()
    # Keys built from a value (role.trainer, link.revoked.title...) are listed here.
    used |= {f"role.{r}{p}" for r in ("admin", "operator", "trainer", "learner") for p in ("", "s")}
    used |= {f"link.{r}.{p}" for r in LINK_PROBLEMS for p in ("title", "text")}
    used |= {f"link.status.{s}" for s in ("none", "active", "expired", "revoked")}
    used |= {f"import.status.{s}" for s in ("created", "existing", "already_enrolled", "error")}
    used |= {f"error.page.{s}.{p}" for s in (403, 404) for p in ("title", "text")}
    used |= {f"attendance.{w}_{h}" for w in ("this", "the") for h in ("morning", "afternoon")}
    used |= {
        f"media.pc.{s}"
        for s in ("new", "connecting", "connected", "disconnected", "failed", "closed")
    }
    used |= {
        "import.err." + e for e in ("columns", "name_empty", "name_long", "email", "twice", "role")
    }
    assert len(used) > 100
    assert sorted(used - fr.keys()) == []
    assert all(value.strip() for value in fr.values())
    assert all(value.strip() for value in en.values())


async def test_unknown_page_is_a_page_for_browsers_and_json_for_the_api(client: Client) -> None:
    r = await client.get("/nowhere", headers={"accept": "text/html"})
    assert r.status_code == 404
    assert 'data-page="error"' in r.text
    r = await client.get("/api/nowhere", headers={"accept": "text/html"})
    assert r.status_code == 404
    assert r.json()["status_code"] == 404
    r = await client.get("/nowhere")
    assert r.json()["status_code"] == 404


async def test_a_learner_whose_link_ends_is_told_why(client: Client, world: World) -> None:
    await sign_in_as(client, world, "learner")
    await services.revoke_links(world.cohort.id, world.learner.id)
    for path in ("/", f"/classroom/{world.cohort.id}"):
        r = await client.get(path, headers={"accept": "text/html"})
        assert r.status_code == 303
        assert r.headers["location"] == "/link-problem?reason=revoked"


def test_scripts_never_parse_strings_as_html() -> None:
    """Data goes into the page as text: no HTML-parsing sink in any module (see dom.js)."""
    sinks = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(")
    offenders = [
        f"{m.relative_to(WEB)}:{n}"
        for m in (WEB / "static" / "js").rglob("*.js")
        for n, line in enumerate(m.read_text().splitlines(), 1)
        if sinks.search(line)
    ]
    assert offenders == []


async def test_login_page_tells_a_learner_whose_link_was_revoked(
    client: Client, world: World
) -> None:
    """Straight after the revocation (before any 401 drops the session) /login says why."""
    from appliance.accounts import services

    await sign_in_as(client, world, "learner")
    await services.revoke_links(world.cohort.id, world.learner.id)
    r = await client.get("/login", headers={"accept": "text/html"})
    assert r.status_code == 303, r.text[:200]
    assert r.headers["location"] == "/link-problem?reason=revoked"
