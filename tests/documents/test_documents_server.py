"""Uploads against a real server (``estrade serve`` in a subprocess on 127.0.0.1).

Memory stays flat during a 50 MB upload (VmHWM/VmRSS of the server process), a client that
disconnects mid-body leaves nothing, an announced length over the limit gets 413 before
any body is sent, and zip bombs are refused without memory growth while ``/health`` keeps
answering. Both databases.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from appliance.documents.tables import Document
from tests.documents import bombs, samples
from tests.helpers.server import ServedProcess
from tests.helpers.world import PASSWORD, World

MB = 1024 * 1024


class Server(ServedProcess):
    """``estrade serve`` on the test database, documents up to 100 MB, a pool of 2."""

    def __init__(self, data_dir: Path, database_url: str) -> None:
        super().__init__(
            data_dir,
            {
                "ESTRADE_DATABASE_URL": database_url,
                "ESTRADE_SESSION_STORE": "memory",
                "ESTRADE_DATABASE_POOL_SIZE": "2",
                "ESTRADE_DOCUMENT_MAX_BYTES": str(100 * MB),
            },
        )

    @contextlib.contextmanager
    def signed_in(self, email: str) -> Iterator[httpx.Client]:
        with httpx.Client(base_url=self.base, timeout=60) as client:
            client.get("/api/auth/csrf").raise_for_status()
            client.headers["x-csrftoken"] = client.cookies["csrftoken"]
            r = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
            assert r.status_code == 200, r.text
            client.headers["x-csrftoken"] = client.cookies["csrftoken"]
            yield client


@pytest.fixture
def server(tmp_path: Path, database_url: str, world: World) -> Iterator[Server]:
    with Server(tmp_path / "server-data", database_url) as server:
        yield server


def _body(size: int, chunk: int = 256 * 1024) -> Iterator[bytes]:
    line = b"Exercice 7: lire un fichier ligne a ligne, compter les mots.\n"
    block = (line * (chunk // len(line) + 1))[:chunk]
    sent = 0
    while sent < size:
        part = block[: min(chunk, size - sent)]
        sent += len(part)
        yield part


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def test_a_50_mb_upload_keeps_server_memory_flat(server: Server, world: World) -> None:
    size = 50 * MB
    with server.signed_in(world.trainer.email) as client:
        url = f"/api/cohorts/{world.cohort.id}/documents"
        # Warm up: the first upload imports and allocates what every upload needs.
        r = client.post(url, params={"filename": "warm.txt"}, content=b"hello\n")
        assert r.status_code == 201, r.text
        server.reset_peak()
        before = server.memory_kib()
        assert before["VmHWM"] <= before["VmRSS"] + 1024, before  # the reset worked
        r = client.post(
            url,
            params={"filename": "big.txt", "title": "Gros fichier"},
            content=_body(size),
            headers={"content-length": str(size)},
        )
        after = server.memory_kib()
        assert r.status_code == 201, r.text
        doc = r.json()
        assert doc["size"] == size
        growth_kib = after["VmHWM"] - before["VmHWM"]
        print(
            f"\nserver memory during a {size // MB} MB upload: VmRSS {before['VmRSS']} -> "
            f"{after['VmRSS']} KiB, VmHWM {before['VmHWM']} -> {after['VmHWM']} KiB "
            f"(peak growth {growth_kib} KiB)"
        )
        # Held whole, the body alone would add 51 200 KiB.
        assert growth_kib < 10 * 1024, (before, after)
        blob = server.data_dir / "documents" / "sha256" / doc["sha256"][:2] / doc["sha256"]
        assert blob.stat().st_size == size
        # And it comes back, resumably, from a real server too.
        r = client.get(doc["download_url"], headers={"range": f"bytes={size - 100}-"})
        assert r.status_code == 206 and len(r.content) == 100
        assert r.headers["content-range"] == f"bytes {size - 100}-{size - 1}/{size}"


def _raw_request_head(server: Server, client: httpx.Client, path: str, length: int) -> bytes:
    cookies = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Cookie: {cookies}\r\nx-csrftoken: {client.headers['x-csrftoken']}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def test_an_interrupted_upload_leaves_no_file_and_no_row(
    server: Server, world: World
) -> None:
    tmp_dir = server.data_dir / "documents" / "tmp"
    with server.signed_in(world.trainer.email) as client:
        path = f"/api/cohorts/{world.cohort.id}/documents?filename=cut.txt"
        sent = 0
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(_raw_request_head(server, client, path, 20 * MB))
            chunk = b"abcdefgh" * 8192
            deadline = time.monotonic() + 20
            # Send part of the body until the server is visibly writing the temporary file.
            while not _files(tmp_dir):
                sock.sendall(chunk)
                sent += len(chunk)
                assert sent < 15 * MB, "no temporary file appeared"
                assert time.monotonic() < deadline, "no temporary file appeared"
            sock.sendall(chunk)
        # The socket is closed: the client went away mid-body.
        deadline = time.monotonic() + 10
        # Polls another process's files: there is no event to wait on.
        while _files(tmp_dir) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        assert _files(server.data_dir / "documents") == []
        assert await Document.count() == 0
        # The server keeps serving everyone else.
        r = client.post(
            f"/api/cohorts/{world.cohort.id}/documents",
            params={"filename": "after.txt"},
            content=b"still here\n",
        )
        assert r.status_code == 201, r.text


async def test_an_announced_length_over_the_limit_is_refused_before_the_body(
    server: Server, world: World
) -> None:
    with server.signed_in(world.trainer.email) as client:
        path = f"/api/cohorts/{world.cohort.id}/documents?filename=huge.txt"
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(_raw_request_head(server, client, path, 101 * MB))
            # Not one byte of body sent: the answer comes from the Content-Length alone.
            answer = b""
            while b"}" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"larger than the limit of 100 MiB" in answer
        assert _files(server.data_dir / "documents") == []
        assert await Document.count() == 0


class _HealthProbe:
    """``GET /health`` every 20 ms in a thread; keeps the slowest answer."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.slowest = 0.0
        self.answers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                assert client.get("/health").status_code == 200
                self.slowest = max(self.slowest, time.monotonic() - started)
                self.answers += 1
                self._stop.wait(0.02)

    def __enter__(self) -> _HealthProbe:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.answers:  # probing before the upload starts
            assert time.monotonic() < deadline, "/health did not answer"
            time.sleep(0.005)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        # 472 bytes whose mimetype entry unpacks to 256 MiB (the old sniffer read it whole).
        (bombs.bzip2_mimetype_bomb, "would expand"),
        # 18 MB, 200 000 entries (the old sniffer built one object per entry on the loop).
        (lambda: bombs.many_entries(200_000, announce=1), "table of contents is"),
    ],
    ids=["bzip2-mimetype", "200k-entries"],
)
async def test_zip_bombs_cost_no_memory_and_never_stall_the_server(
    server: Server, world: World, make: object, message: str
) -> None:
    content = make()  # type: ignore[operator]
    with server.signed_in(world.trainer.email) as client:
        url = f"/api/cohorts/{world.cohort.id}/documents"
        r = client.post(url, params={"filename": "warm.zip"}, content=samples.plain_zip())
        assert r.status_code == 201, r.text
        server.reset_peak()
        before = server.memory_kib()
        with _HealthProbe(server.base) as probe:
            r = client.post(url, params={"filename": "archive.zip"}, content=content)
        after = server.memory_kib()
        assert r.status_code == 422, r.text
        assert message in r.json()["detail"] and "zip bomb" in r.json()["detail"]
        growth_mib = (after["VmHWM"] - before["VmHWM"]) / 1024
        print(
            f"\n{len(content)} bytes: peak memory +{growth_mib:.1f} MiB, slowest /health "
            f"{probe.slowest * 1000:.0f} ms over {probe.answers} answers"
        )
        # The upload itself streams (a few MiB of buffers); the old sniffer took +256 MiB.
        assert growth_mib < 48, (before, after)
        # Generous: a loaded 2-core machine; the old sniffer blocked the loop for seconds.
        assert probe.slowest < 1.0, probe.slowest
        assert await Document.count() == 1  # the warm-up only
        assert _files(server.data_dir / "documents" / "tmp") == []
