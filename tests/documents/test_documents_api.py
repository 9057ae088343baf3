"""The documents API in process: types, names, roles, sharing, downloads (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar

from appliance.app import create_app
from appliance.documents import services
from appliance.documents.schemas import DocumentOut
from appliance.documents.tables import Document
from tests.documents import bombs, samples
from tests.documents.helpers import assert_nothing_kept, files_under, store_of, upload
from tests.helpers.world import ROLES, Client, World, make_settings, new_client, sign_in_as

PDF = samples.pdf()


async def _as(client: Client, world: World, who: str) -> None:
    """Sign ``client`` in as ``who`` (dropping any earlier session)."""
    client.cookies.clear()
    client.headers.pop("x-csrftoken", None)
    await client.prime_csrf()
    if who in ROLES:
        await sign_in_as(client, world, who)
    else:  # other_trainer, other_learner: members of the other cohort only
        if who == "other_learner":
            from appliance.accounts import services as acc

            link = await acc.issue_link(
                world.other_cohort.id, world.other_learner.id, base_url="http://t", ttl_days=3
            )
            await client.join(link.url.removeprefix("http://t"))
        else:
            await client.login(getattr(world, who).email)


async def _staff_upload(client: Client, world: World, content: bytes, name: str, **kw: Any) -> Any:
    """Upload as the cohort's trainer (``client`` stays signed in as the trainer)."""
    await _as(client, world, "trainer")
    r = await upload(client, world.cohort.id, content, name, **kw)
    assert r.status_code == 201, r.text
    return r.json()


async def _publish(client: Client, world: World, doc_id: int) -> None:
    await _as(client, world, "trainer")
    r = await client.post(f"/api/cohorts/{world.cohort.id}/documents/{doc_id}/publish")
    assert r.status_code == 200, r.text


# --- upload and types -------------------------------------------------------------------


async def test_every_allowed_type_is_recognised_by_content(
    client: Client, world: World, app: Litestar
) -> None:
    await client.login(world.trainer.email)
    for name, (content, media_type) in samples.ALLOWED.items():
        r = await upload(client, world.cohort.id, content, name)
        assert r.status_code == 201, (name, r.text)
        doc = r.json()
        assert doc["media_type"] == media_type, name
        assert doc["size"] == len(content)
        assert doc["sha256"] == hashlib.sha256(content).hexdigest()
        assert doc["original_name"] == name
        assert doc["published"] is False
        assert doc["uploader_id"] == world.trainer.id
        blob = store_of(app).path(doc["sha256"])
        assert blob.read_bytes() == content
        assert blob.parent.name == doc["sha256"][:2]
    # The browser's claim does not matter: a PDF sent as image/png is a PDF.
    r = await client.post(
        f"/api/cohorts/{world.cohort.id}/documents",
        params={"filename": "cours2.pdf", "title": "Cours 2"},
        content=PDF,
        headers={"content-type": "image/png"},
    )
    assert r.status_code == 201
    assert r.json()["media_type"] == "application/pdf"
    assert r.json()["title"] == "Cours 2"
    assert files_under(store_of(app).tmp_dir) == []


@pytest.mark.parametrize(
    ("content", "name", "why"),
    [
        (b"MZ\x90\x00" + b"\x00" * 200, "setup.exe", "executable"),
        (b"MZ\x90\x00" + b"\x00" * 200, "notes.txt", "executable named as text"),
        (b"\x00\x01\x02\xff\xfe" * 50, "data.bin", "unknown binary"),
        (b"hello, plain text\n", "cours.pdf", "text named as pdf"),
        (samples.png(), "cours.pdf", "image named as pdf"),
        (PDF, "photo.jpg", "pdf named as image"),
        (samples.plain_zip(), "tp.docx", "plain zip named as docx"),
        (samples.ALLOWED["tp.docx"][0], "tp.zip", "docx named as zip"),
        (samples.ALLOWED["tp.odt"][0], "tp.docx", "odt named as docx"),
        (b"PK\x03\x04" + b"\x00" * 100, "broken.zip", "damaged zip"),
        (b"caf\xe9 au lait\n", "latin1.txt", "text that is not UTF-8"),
        # An exe in a zip whose ``mimetype`` entry says PDF is a zip, not a PDF.
        (bombs.odf_declaring("application/pdf", ("run.exe", bombs.EXE)), "cours.pdf", "zip as pdf"),
        (bombs.odf_declaring("image/png", ("run.exe", bombs.EXE)), "schema.png", "zip as png"),
        # Windows drops trailing dots and spaces: these are .bat files.
        (b"@echo off\r\ndel /q *\r\n", "run.bat.", "trailing dot"),
        (b"@echo off\r\ndel /q *\r\n", "run.bat..", "trailing dots"),
        (b"@echo off\r\ndel /q *\r\n", "run.bat . ", "trailing dot and spaces"),
    ],
)
async def test_refused_types_keep_nothing(
    client: Client, world: World, app: Litestar, content: bytes, name: str, why: str
) -> None:
    await client.login(world.trainer.email)
    r = await upload(client, world.cohort.id, content, name)
    assert r.status_code == 415, (why, r.text)
    assert r.json()["status_code"] == 415
    await assert_nothing_kept(app)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (bombs.bzip2_mimetype_bomb, "would expand"),
        (lambda: bombs.many_entries(20_000), "holds 20000 files"),
        (bombs.lying_sizes, "would unpack to more than 2 GiB"),
    ],
    ids=["bzip2-mimetype", "entries", "declared-sizes"],
)
async def test_zip_bombs_get_422_and_keep_nothing(
    client: Client, world: World, app: Litestar, make: Any, message: str
) -> None:
    await client.login(world.trainer.email)
    r = await upload(client, world.cohort.id, make(), "archive.zip")
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"] and "zip bomb" in r.json()["detail"]
    await assert_nothing_kept(app)


async def test_a_too_long_file_name_is_a_clear_error(
    client: Client, world: World, app: Litestar
) -> None:
    await client.login(world.trainer.email)
    r = await upload(client, world.cohort.id, b"text\n", "x" * 300 + ".txt")
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["extra"][0]["key"] == "filename"
    assert "304 characters long (at most 255)" in body["detail"]
    await assert_nothing_kept(app)


async def test_empty_file_is_a_clear_error(client: Client, world: World, app: Litestar) -> None:
    await client.login(world.trainer.email)
    r = await upload(client, world.cohort.id, b"", "vide.txt")
    assert r.status_code == 400
    assert "empty" in r.json()["detail"]
    await assert_nothing_kept(app)


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("../../../../etc/passwd.txt", "passwd.txt"),
        ("..\\..\\windows\\win.ini.txt", "win.ini.txt"),
        ("a/b/../c.txt", "c.txt"),
        ("..", "document"),
        ("evil\x00name\n\r\x1b[31m.txt", "evilname[31m.txt"),
        ("facture\u202etxt.exe.txt", "facturetxt.exe.txt"),
        ("/absolute/path/notes.txt", "notes.txt"),
        (".hidden.txt", "hidden.txt"),
    ],
)
async def test_file_names_are_metadata_only(
    client: Client, world: World, app: Litestar, raw: str, kept: str
) -> None:
    await client.login(world.trainer.email)
    r = await upload(client, world.cohort.id, b"some text\n", raw)
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["original_name"] == kept
    store = store_of(app)
    # The only file written anywhere in the data folder is the blob at its hash path.
    data_files = [
        p for p in files_under(Path(app.state.settings.data_dir)) if "documents" in p.parts
    ]
    assert data_files == [store.path(doc["sha256"])]
    assert not (Path("/etc") / "passwd.txt").exists()
    d = await client.get(f"/api/cohorts/{world.cohort.id}/documents/{doc['id']}/download")
    header = d.headers["content-disposition"]
    assert "\n" not in header and "\r" not in header and "/" not in header.split(";")[1]


async def test_same_content_is_stored_once_and_removed_with_its_last_reference(
    client: Client, world: World, app: Litestar
) -> None:
    store = store_of(app)
    a = await _staff_upload(client, world, PDF, "a.pdf")
    await _as(client, world, "admin")
    r = await upload(client, world.other_cohort.id, PDF, "b.pdf")
    assert r.status_code == 201
    b = r.json()
    assert a["sha256"] == b["sha256"]
    assert files_under(store.blob_dir) == [store.path(a["sha256"])]
    await _as(client, world, "trainer")
    r = await client.delete(f"/api/cohorts/{world.cohort.id}/documents/{a['id']}")
    assert r.status_code == 204
    assert store.path(a["sha256"]).exists()  # still used by b
    await _as(client, world, "admin")
    r = await client.delete(f"/api/cohorts/{world.other_cohort.id}/documents/{b['id']}")
    assert r.status_code == 204
    await assert_nothing_kept(app)


# --- limits ------------------------------------------------------------------------------


async def _app_with(tmp_path: Path, database_url: str, **overrides: Any) -> Litestar:
    return create_app(make_settings(tmp_path / "limited", database_url=database_url, **overrides))


async def test_size_limit_and_quota_give_413_and_keep_nothing(
    world: World, tmp_path: Path, database_url: str
) -> None:
    app = await _app_with(
        tmp_path, database_url, document_max_bytes=1000, document_quota_bytes=2500
    )
    async with new_client(app) as c:
        await c.login(world.trainer.email)
        r = await upload(c, world.cohort.id, b"x" * 1001, "big.txt")
        assert r.status_code == 413
        assert "limit" in r.json()["detail"]
        await assert_nothing_kept(app)
        # The JSON limit of the rest of the app (1 MiB) is not the documents limit.
        for i in range(2):
            r = await upload(c, world.cohort.id, bytes([65 + i]) * 1000, f"n{i}.txt")
            assert r.status_code == 201, r.text
        r = await upload(c, world.cohort.id, b"z" * 600, "over-quota.txt")
        assert r.status_code == 413
        assert "quota" in r.json()["detail"]
        r = await upload(c, world.cohort.id, b"z" * 500, "fits.txt")
        assert r.status_code == 201
        usage = (await c.get(f"/api/cohorts/{world.cohort.id}/documents/usage")).json()
        assert usage == {
            "cohort_id": world.cohort.id,
            "count": 3,
            "bytes": 2500,
            "quota_bytes": 2500,
        }
        assert files_under(store_of(app).tmp_dir) == []
        # Other cohorts have their own quota.
        await c.login(world.admin.email)
        r = await upload(c, world.other_cohort.id, b"q" * 900, "other.txt")
        assert r.status_code == 201
    stored = await services.stored_per_cohort()
    assert [(u.cohort_id, u.count, u.bytes) for u in stored] == [
        (world.cohort.id, 3, 2500),
        (world.other_cohort.id, 1, 900),
    ]


async def test_a_large_upload_passes_the_json_limit(
    client: Client, world: World, app: Litestar
) -> None:
    """3 MiB, above the app's 1 MiB JSON limit, below the 200 MiB documents limit."""
    await client.login(world.trainer.email)
    body = b"0123456789abcdef\n" * (3 * 1024 * 1024 // 17)
    r = await upload(client, world.cohort.id, body, "big.txt")
    assert r.status_code == 201, r.text
    assert store_of(app).path(r.json()["sha256"]).stat().st_size == len(body)


# --- roles ----------------------------------------------------------------------------------

UPLOAD_STATUS = {
    "anonymous": 401,
    "learner": 403,
    "operator": 403,
    "trainer": 201,
    "admin": 201,
    "other_trainer": 404,
    "other_learner": 404,
}


@pytest.mark.parametrize(("who", "status"), UPLOAD_STATUS.items())
async def test_upload_by_role(
    client: Client, world: World, app: Litestar, who: str, status: int
) -> None:
    await _as(client, world, who)
    r = await upload(client, world.cohort.id, PDF, "cours.pdf")
    assert r.status_code == status, r.text
    if status != 201:
        await assert_nothing_kept(app)


# (role, sees unpublished, may manage) on `cohort`; others of the other cohort get 404.
MEMBER_VIEW = {
    "anonymous": 401,
    "learner": "learner",
    "operator": 403,
    "trainer": "staff",
    "admin": "staff",
    "other_trainer": 404,
    "other_learner": 404,
}


@pytest.mark.parametrize(("who", "view"), MEMBER_VIEW.items())
async def test_every_route_by_role(
    client: Client, world: World, app: Litestar, who: str, view: Any
) -> None:
    draft = await _staff_upload(client, world, samples.png(), "brouillon.png")
    shared = await _staff_upload(client, world, PDF, "cours.pdf")
    await _publish(client, world, shared["id"])
    base = f"/api/cohorts/{world.cohort.id}/documents"
    await _as(client, world, who)

    reads = {
        "list": client.get(base),
        "get shared": client.get(f"{base}/{shared['id']}"),
        "download shared": client.get(f"{base}/{shared['id']}/download"),
        "preview shared": client.get(f"{base}/{shared['id']}/preview"),
        "get draft": client.get(f"{base}/{draft['id']}"),
        "download draft": client.get(f"{base}/{draft['id']}/download"),
        "preview draft": client.get(f"{base}/{draft['id']}/preview"),
    }
    got = {k: await v for k, v in reads.items()}
    if isinstance(view, int):
        assert {k: r.status_code for k, r in got.items()} == dict.fromkeys(reads, view)
    elif view == "learner":
        assert [d["id"] for d in got["list"].json()] == [shared["id"]]
        assert got["get shared"].status_code == 200
        assert got["download shared"].content == PDF
        assert got["preview shared"].status_code == 200
        for k in ("get draft", "download draft", "preview draft"):
            assert got[k].status_code == 404, k
    else:
        assert {d["id"] for d in got["list"].json()} == {shared["id"], draft["id"]}
        assert all(r.status_code == 200 for r in got.values()), {
            k: r.status_code for k, r in got.items()
        }

    writes = {
        "patch": lambda: client.patch(f"{base}/{draft['id']}", json={"title": "Renommé"}),
        "publish": lambda: client.post(f"{base}/{draft['id']}/publish"),
        "hide": lambda: client.post(f"{base}/{shared['id']}/hide"),
        "push": lambda: client.post(f"{base}/{draft['id']}/push"),
        "usage": lambda: client.get(f"{base}/usage"),
        "delete": lambda: client.delete(f"{base}/{draft['id']}"),
    }
    expected_write = (
        {"learner": 403, "staff": None}.get(view, view) if not isinstance(view, int) else view
    )
    for name, call in writes.items():
        r = await call()
        if expected_write is None:
            assert r.status_code in (200, 204), (name, r.text)
        else:
            assert r.status_code == expected_write, (name, r.text)
    if expected_write is not None:
        # Nothing changed for a refused caller.
        row = await Document.objects().where(Document.id == draft["id"]).first()
        assert row is not None and row.title == "brouillon" and row.published is False
        row = await Document.objects().where(Document.id == shared["id"]).first()
        assert row is not None and row.published is True


# --- sharing ---------------------------------------------------------------------------------


async def test_publish_hide_and_delete_drive_what_learners_see(
    client: Client, world: World, app: Litestar
) -> None:
    doc = await _staff_upload(client, world, PDF, "cours.pdf", title="Chapitre 1")
    base = f"/api/cohorts/{world.cohort.id}/documents"
    await _as(client, world, "learner")
    assert (await client.get(base)).json() == []
    await _publish(client, world, doc["id"])
    await _as(client, world, "learner")
    listed = (await client.get(base)).json()
    assert [d["title"] for d in listed] == ["Chapitre 1"]
    assert listed[0]["published_at"] is not None
    await _as(client, world, "trainer")
    r = await client.post(f"{base}/{doc['id']}/hide")
    assert r.json()["published"] is False and r.json()["published_at"] is None
    await _as(client, world, "learner")
    assert (await client.get(base)).json() == []
    assert (await client.get(f"{base}/{doc['id']}/download")).status_code == 404
    await _as(client, world, "trainer")
    r = await client.patch(f"{base}/{doc['id']}", json={"published": True, "title": "Ch. 1"})
    assert r.status_code == 200 and r.json()["title"] == "Ch. 1"
    r = await client.patch(f"{base}/{doc['id']}", json={"owner": 3})
    assert r.status_code == 400
    assert (await client.delete(f"{base}/{doc['id']}")).status_code == 204
    assert (await client.get(f"{base}/{doc['id']}")).status_code == 404
    await _as(client, world, "learner")
    assert (await client.get(base)).json() == []
    await assert_nothing_kept(app)


class RecordingNotifier:
    def __init__(self) -> None:
        self.calls: list[tuple[int, DocumentOut]] = []

    async def document_pushed(self, cohort_id: int, doc: DocumentOut) -> None:
        self.calls.append((cohort_id, doc))


async def test_push_publishes_and_notifies_the_cohort(
    client: Client, world: World, app: Litestar
) -> None:
    notifier = RecordingNotifier()
    app.state.document_notifier = notifier
    doc = await _staff_upload(client, world, PDF, "exercice.pdf")
    await client.login(world.trainer.email)
    r = await client.post(f"/api/cohorts/{world.cohort.id}/documents/{doc['id']}/push")
    assert r.status_code == 200, r.text
    assert r.json()["published"] is True
    assert len(notifier.calls) == 1
    cohort_id, pushed = notifier.calls[0]
    assert cohort_id == world.cohort.id
    assert pushed.id == doc["id"] and pushed.published
    assert pushed.download_url == f"/api/cohorts/{world.cohort.id}/documents/{doc['id']}/download"
    # The link in the notice works for the cohort's learner.
    await _as(client, world, "learner")
    assert (await client.get(pushed.download_url)).content == PDF


async def test_the_default_notifier_is_a_no_op(client: Client, world: World, app: Litestar) -> None:
    doc = await _staff_upload(client, world, PDF, "exercice.pdf")
    await client.login(world.trainer.email)
    r = await client.post(f"/api/cohorts/{world.cohort.id}/documents/{doc['id']}/push")
    assert r.status_code == 200


# --- download ----------------------------------------------------------------------------


async def test_download_headers(client: Client, world: World, app: Litestar) -> None:
    content, media_type = samples.ALLOWED["lisez-moi.txt"]
    doc = await _staff_upload(client, world, content, "Énoncé TP n°1 « final ».txt")
    await _publish(client, world, doc["id"])
    await _as(client, world, "learner")
    r = await client.get(doc["download_url"])
    assert r.status_code == 200
    assert r.content == content
    assert r.headers["content-type"] == f"{media_type}; charset=utf-8"
    assert r.headers["content-length"] == str(len(content))
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["etag"] == f'"{doc["sha256"]}"'
    assert r.headers["content-disposition"] == (
        'attachment; filename="Enonce TP n_1 _ final _.txt"; '
        "filename*=UTF-8''%C3%89nonc%C3%A9%20TP%20n%C2%B01%20%C2%AB%20final%20%C2%BB.txt"
    )
    r = await client.get(doc["download_url"], headers={"if-none-match": r.headers["etag"]})
    assert r.status_code == 304
    assert r.content == b""
    assert r.headers["etag"] == f'"{doc["sha256"]}"'
    r = await client.get(doc["download_url"], headers={"if-none-match": '"other", W/"x"'})
    assert r.status_code == 200


async def test_ascii_names_get_a_plain_quoted_filename(
    client: Client, world: World, app: Litestar
) -> None:
    doc = await _staff_upload(client, world, PDF, 'plan "v2".pdf')
    await client.login(world.trainer.email)
    r = await client.get(doc["download_url"])
    assert r.headers["content-disposition"] == (
        "attachment; filename=\"plan _v2_.pdf\"; filename*=UTF-8''plan%20%22v2%22.pdf"
    )
    doc = await _staff_upload(client, world, PDF, "plan.pdf")
    r = await client.get(doc["download_url"])
    assert r.headers["content-disposition"] == 'attachment; filename="plan.pdf"'


async def test_a_resumed_range_download_rebuilds_the_file(
    client: Client, world: World, app: Litestar
) -> None:
    content = bytes(range(256)) * 8000  # 2 MB, more than Litestar's 1 MiB chunk
    content = b"%PDF-1.4\n" + content
    doc = await _staff_upload(client, world, content, "gros.pdf")
    await _publish(client, world, doc["id"])
    await _as(client, world, "learner")
    url = doc["download_url"]
    # The first attempt stops after 700 000 bytes (the 4G link dropped).
    received = b""
    async with client.stream("GET", url) as r:
        assert r.status_code == 200
        async for chunk in r.aiter_bytes():
            received += chunk
            if len(received) >= 700_000:
                break
    received = received[:700_000]
    r = await client.get(
        url, headers={"range": f"bytes={len(received)}-", "if-range": f'"{doc["sha256"]}"'}
    )
    assert r.status_code == 206
    assert r.headers["content-range"] == f"bytes 700000-{len(content) - 1}/{len(content)}"
    assert r.headers["content-length"] == str(len(content) - 700_000)
    assert r.headers["etag"] == f'"{doc["sha256"]}"'
    assert received + r.content == content

    r = await client.get(url, headers={"range": "bytes=0-9"})
    assert (r.status_code, r.content) == (206, content[:10])
    assert r.headers["content-range"] == f"bytes 0-9/{len(content)}"
    r = await client.get(url, headers={"range": "bytes=-5"})
    assert (r.status_code, r.content) == (206, content[-5:])
    r = await client.get(url, headers={"range": f"bytes=10-{10 * len(content)}"})
    assert (r.status_code, r.content) == (206, content[10:])
    # Several ranges: the whole file (allowed by RFC 9110); a stale If-Range: the whole file.
    r = await client.get(url, headers={"range": "bytes=0-1,5-6"})
    assert (r.status_code, len(r.content)) == (200, len(content))
    r = await client.get(url, headers={"range": "bytes=0-9", "if-range": '"older"'})
    assert (r.status_code, len(r.content)) == (200, len(content))


@pytest.mark.parametrize(
    "bad", ["bytes=999999999-", "bytes=5-2", "bytes=abc", "bytes=-0", "bytes=-", "bytes=1-2-3"]
)
async def test_a_bad_range_is_416(client: Client, world: World, app: Litestar, bad: str) -> None:
    doc = await _staff_upload(client, world, PDF, "cours.pdf")
    r = await client.get(doc["download_url"], headers={"range": bad})
    assert r.status_code == 416, r.text
    assert r.headers["content-range"] == f"bytes */{len(PDF)}"


async def test_preview_is_inline_for_pdf_and_images_only(
    client: Client, world: World, app: Litestar
) -> None:
    await client.login(world.trainer.email)
    for name in ("cours.pdf", "schema.png", "photo.jpg", "anim.gif", "image.webp"):
        content, media_type = samples.ALLOWED[name]
        doc = await _staff_upload(client, world, content, name)
        assert doc["preview_url"] is not None
        r = await client.get(doc["preview_url"])
        assert r.status_code == 200
        assert r.content == content
        assert r.headers["content-type"] == media_type
        assert r.headers["content-disposition"] == f'inline; filename="{name}"'
        assert r.headers["x-content-type-options"] == "nosniff"
    for name in ("tp.docx", "exercice.zip", "lisez-moi.txt"):
        content, _ = samples.ALLOWED[name]
        doc = await _staff_upload(client, world, content, name)
        assert doc["preview_url"] is None
        r = await client.get(f"/api/cohorts/{world.cohort.id}/documents/{doc['id']}/preview")
        assert r.status_code == 404
