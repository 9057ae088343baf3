"""HTML page shells: a base layout, a page fragment and a few escaped data attributes.

Pages carry no user data in their markup: the page's ES module fetches it from the JSON API and
inserts it as text. The only values rendered here are ids and fixed reason codes, escaped anyway.
"""

from __future__ import annotations

import functools
import html
from pathlib import Path
from string import Template

from litestar import Response
from litestar.enums import MediaType

__all__ = ["CSP", "LANGUAGES", "pick_language", "render_page"]

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
        headers={
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
            "Cache-Control": "no-store",
        },
    )
