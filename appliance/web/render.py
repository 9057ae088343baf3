"""HTML page shells: a base layout, a page fragment and a few escaped data attributes.

Pages carry no user data in their markup: the page's ES module fetches it from the JSON API and
inserts it as text. The only values rendered here are ids and fixed reason codes, escaped anyway.
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Mapping
from pathlib import Path
from string import Template

import jinja2
from litestar import Response
from litestar.enums import MediaType
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig

__all__ = [
    "CSP",
    "LANGUAGES",
    "PAGE_HEADERS",
    "pick_language",
    "render_page",
    "request_language",
    "strings",
    "template_config",
    "translate",
]

PAGES_DIR = Path(__file__).parent / "pages"
LANGUAGES = ("fr", "en")

# Nothing inline, nothing from elsewhere: a name that slips past escaping still cannot run.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@functools.cache
def _read(name: str) -> str:
    return (PAGES_DIR / name).read_text(encoding="utf-8")


# Every HTML page's headers (the server-rendered sign-in sheet too).
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
# Set by i18n.js when a visitor switches language, so server-rendered pages follow the choice.
LANG_COOKIE = "estrade_lang"


TEMPLATES_DIR = Path(__file__).parent / "templates"


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """Jinja2 for the few pages the server renders itself (the sign-in sheet): autoescaped."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return TemplateConfig(engine=JinjaTemplateEngine.from_environment(env))


@functools.cache
def strings(lang: str) -> dict[str, str]:
    """The UI's translations (``static/i18n/<lang>.json``), shared with the page scripts."""
    path = Path(__file__).parent / "static" / "i18n" / f"{lang}.json"
    data: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    return data


def translate(lang: str, key: str, **values: object) -> str:
    """``key`` in ``lang`` with ``{name}`` filled, as ``t()`` does in i18n.js."""
    text = strings(lang).get(key, key)
    return re.sub(r"\{(\w+)\}", lambda m: str(values.get(m.group(1), "")), text)


def request_language(headers: Mapping[str, str], cookies: Mapping[str, str]) -> str:
    """The visitor's language: the choice made on a page (cookie), else the browser's."""
    chosen = cookies.get(LANG_COOKIE, "")
    if chosen in LANGUAGES:
        return chosen
    return pick_language(headers.get("accept-language", ""))


def pick_language(accept_language: str) -> str:
    """The first of our languages named in an ``Accept-Language`` header (French otherwise)."""
    for part in accept_language.split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in LANGUAGES:
            return tag
    return LANGUAGES[0]


def render_page(
    page: str,
    *,
    lang: str = "fr",
    data: dict[str, str | int] | None = None,
    status_code: int = 200,
    fragment: str | None = None,
) -> Response[str]:
    """Render ``pages/<fragment or page>.html`` inside the base layout, run ``js/pages/<page>.js``.

    Args:
        page: the page name (also the ES module that drives it).
        lang: the language the server guesses; the page module may switch it.
        data: ``data-*`` attributes set on ``<body>`` for the page module (escaped).
        status_code: the HTTP status (error pages keep theirs).
        fragment: the HTML fragment to use when it differs from ``page``.
    """
    attrs = " ".join(
        f'data-{html.escape(k.replace("_", "-"))}="{html.escape(str(v))}"'
        for k, v in (data or {}).items()
    )
    main = _read(f"{fragment or page}.html")
    body = Template(_read("base.html")).substitute(
        lang=html.escape(lang), page=html.escape(page), attrs=attrs, main=main
    )
    return Response(
        body,
        media_type=MediaType.HTML,
        status_code=status_code,
        headers=dict(PAGE_HEADERS),
    )
