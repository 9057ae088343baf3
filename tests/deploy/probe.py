"""Probes run inside the test host's network namespace (no third-party imports).

    python3 probe.py https HOSTNAME CA_FILE PATH     GET https://127.0.0.1/PATH (SNI HOSTNAME)
    python3 probe.py stun                            STUN binding to 127.0.0.1:3478/udp
    python3 probe.py turn SECRET REALM               TURN allocation, REST-API credentials
    python3 probe.py turn-tls SECRET REALM NAME CA [PORT]
                                                     the same over TLS to 127.0.0.1:PORT (443)
                                                     with SNI NAME: nginx must route it to coturn
    python3 probe.py prometheus JOB...               those jobs' targets are up in Prometheus
    python3 probe.py workers TOKEN N [PORT]          /metrics (127.0.0.1:8080) shows N media
                                                     workers up
Each prints one line and exits 0 on success.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import os
import socket
import ssl
import struct
import sys
import time
import zlib

MAGIC = 0x2112A442
BINDING, ALLOCATE = 0x0001, 0x0003
USERNAME, MESSAGE_INTEGRITY, ERROR_CODE, REALM, NONCE = 0x0006, 0x0008, 0x0009, 0x0014, 0x0015
XOR_RELAYED, XOR_MAPPED, REQUESTED_TRANSPORT, FINGERPRINT = 0x0016, 0x0020, 0x0019, 0x8028


def _attr(kind: int, value: bytes) -> bytes:
    pad = (4 - len(value) % 4) % 4
    return struct.pack("!HH", kind, len(value)) + value + b"\0" * pad


def _message(kind: int, tid: bytes, attrs: bytes, key: bytes | None = None) -> bytes:
    if key is not None:
        header = struct.pack("!HHI", kind, len(attrs) + 24, MAGIC) + tid
        attrs += _attr(MESSAGE_INTEGRITY, hmac.new(key, header + attrs, hashlib.sha1).digest())
    header = struct.pack("!HHI", kind, len(attrs) + 8, MAGIC) + tid
    crc = (zlib.crc32(header + attrs) ^ 0x5354554E) & 0xFFFFFFFF
    return header + attrs + _attr(FINGERPRINT, struct.pack("!I", crc))


def _parse(data: bytes) -> tuple[int, dict[int, bytes]]:
    kind, length = struct.unpack("!HH", data[:4])
    attrs, pos = {}, 20
    while pos < 20 + length:
        a_kind, a_len = struct.unpack("!HH", data[pos : pos + 4])
        attrs[a_kind] = data[pos + 4 : pos + 4 + a_len]
        pos += 4 + a_len + (4 - a_len % 4) % 4
    return kind, attrs


def _xor_address(value: bytes) -> str:
    port = struct.unpack("!H", value[2:4])[0] ^ (MAGIC >> 16)
    ip = struct.unpack("!I", value[4:8])[0] ^ MAGIC
    return f"{socket.inet_ntoa(struct.pack('!I', ip))}:{port}"


def _exchange(sock: socket.socket, request: bytes) -> tuple[int, dict[int, bytes]]:
    for _ in range(5):
        sock.sendto(request, ("127.0.0.1", 3478))
        try:
            return _parse(sock.recv(2048))
        except TimeoutError:
            continue
    raise SystemExit("no answer from 127.0.0.1:3478/udp")


def _read_stream(sock: ssl.SSLSocket) -> bytes:
    """One STUN message from a stream (over TCP/TLS messages follow each other, unframed)."""
    data = b""
    while len(data) < 20 or len(data) < 20 + struct.unpack("!H", data[2:4])[0]:
        chunk = sock.recv(4096)
        if not chunk:
            raise SystemExit("the TURN server closed the connection")
        data += chunk
    return data


def stun() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1)
    kind, attrs = _exchange(sock, _message(BINDING, os.urandom(12), b""))
    if kind != 0x0101 or XOR_MAPPED not in attrs:
        raise SystemExit(f"unexpected STUN answer {kind:#06x}")
    print("stun binding ok: mapped", _xor_address(attrs[XOR_MAPPED]))


def turn(secret: str, realm: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1)
    print(_allocate(lambda request: _exchange(sock, request), secret, realm))


def turn_tls(secret: str, realm: str, name: str, ca_file: str, port: str = "443") -> None:
    """A TURN allocation over TLS through the shared HTTPS port, the certificate checked."""
    context = ssl.create_default_context(cafile=ca_file)
    deadline = time.monotonic() + 30
    while True:
        try:
            raw = socket.create_connection(("127.0.0.1", int(port)), timeout=5)
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"cannot connect to 127.0.0.1:{port}: {exc}") from None
            time.sleep(1)
    with context.wrap_socket(raw, server_hostname=name) as sock:

        def exchange(request: bytes) -> tuple[int, dict[int, bytes]]:
            sock.sendall(request)
            return _parse(_read_stream(sock))

        result = _allocate(exchange, secret, realm)
        print(f"{result} over {sock.version()} on port {port} as {name}")


def _allocate(exchange, secret: str, realm: str) -> str:
    transport = _attr(REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))  # UDP
    kind, attrs = exchange(_message(ALLOCATE, os.urandom(12), transport))
    if kind != 0x0113 or NONCE not in attrs:
        raise SystemExit(f"expected 401 challenge, got {kind:#06x}")
    # coturn use-auth-secret: username "<expiry>:<id>", password base64(HMAC-SHA1(secret)).
    username = f"{int(time.time()) + 600}:probe"
    password = base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest())
    key = hashlib.md5(f"{username}:{realm}:".encode() + password).digest()
    attrs_out = (
        transport
        + _attr(USERNAME, username.encode())
        + _attr(REALM, attrs[REALM])
        + _attr(NONCE, attrs[NONCE])
    )
    kind, attrs = exchange(_message(ALLOCATE, os.urandom(12), attrs_out, key))
    if kind != 0x0103 or XOR_RELAYED not in attrs:
        code = attrs.get(ERROR_CODE, b"")
        raise SystemExit(f"TURN allocation refused: {kind:#06x} {code[4:]!r}")
    return f"turn allocation ok: relayed {_xor_address(attrs[XOR_RELAYED])}"


def https(hostname: str, ca_file: str, path: str) -> None:
    context = ssl.create_default_context(cafile=ca_file)
    deadline = time.monotonic() + 60
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", 443), timeout=5)
            conn = http.client.HTTPSConnection(hostname, 443, context=context, timeout=5)
            conn.sock = context.wrap_socket(sock, server_hostname=hostname)
            conn.request("GET", path, headers={"Host": hostname})
            response = conn.getresponse()
            body = response.read()
            if response.status == 200:
                print(f"https {path}: {response.status} {body[:80]!r}")
                return
            error = f"status {response.status}"
        except OSError as exc:
            error = str(exc)
        if time.monotonic() > deadline:
            raise SystemExit(f"https {path} failed: {error}")
        time.sleep(1)


def prometheus(*jobs: str) -> None:
    import json
    import urllib.request

    deadline = time.monotonic() + 90
    while True:
        with urllib.request.urlopen("http://127.0.0.1:9090/api/v1/targets", timeout=5) as r:
            targets = json.load(r)["data"]["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        if all(health.get(job) == "up" for job in jobs):
            print("prometheus targets:", health)
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"prometheus targets not up: {health}")
        time.sleep(2)


def workers(token: str, count: str, port: str = "8080") -> None:
    """The appliance's /metrics shows ``count`` media workers up, each with its loop lag."""
    import urllib.request

    deadline = time.monotonic() + 60
    while True:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as r:
                lines = r.read().decode().splitlines()
        except OSError as exc:
            lines, error = [], str(exc)
        up = [x for x in lines if x.startswith("estrade_media_worker_up{") and x.endswith(" 1.0")]
        lags = [x for x in lines if x.startswith("estrade_media_worker_loop_lag_seconds{")]
        if len(up) == int(count) and len(lags) == int(count):
            print(f"{count} media workers up: {' '.join(up)}")
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"media workers not up: {up or error if not lines else up}")
        time.sleep(1)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    commands = {"stun": stun, "turn": turn, "turn-tls": turn_tls, "https": https}
    {**commands, "prometheus": prometheus, "workers": workers}[command](*args)
