"""ICE networking for an on-premise box: media interface, UDP port range, STUN/TURN, NAT address.

aioice has no option for the interface or the port range (aiortc #487, aioice #47), so this
module patches two names inside ``aioice.ice`` once, and only while an :func:`ice_scope` is
active (a context variable, inherited by the tasks aioice starts); outside a scope aioice
behaves exactly as shipped.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import hashlib
import hmac
import itertools
import re
import socket
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCBundlePolicy

__all__ = [
    "IceScope",
    "announce_address",
    "browser_ice_servers",
    "ice_scope",
    "install_aioice_patch",
    "rtc_configuration",
    "turn_credentials",
]


@dataclass(frozen=True, slots=True)
class IceScope:
    """Where media sockets bind: one address (empty: aioice's choice) and a port range."""

    interface: str = ""
    port_min: int = 0
    port_max: int = 0

    @property
    def ports(self) -> range | None:
        if not self.port_min:
            return None
        return range(self.port_min, self.port_max + 1)


_SCOPE: contextvars.ContextVar[IceScope | None] = contextvars.ContextVar(
    "estrade_ice_scope", default=None
)
_ORIGINAL_GET_HOST_ADDRESSES = aioice.ice.get_host_addresses
_ORIGINAL_ASYNCIO = aioice.ice.asyncio
# Round-robin start in the port range, so a just-freed port is not reused at once.
_NEXT_PORT = itertools.count()


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    scope = _SCOPE.get()
    if scope is not None and scope.interface:
        return [scope.interface]
    return _ORIGINAL_GET_HOST_ADDRESSES(use_ipv4=use_ipv4, use_ipv6=use_ipv6)


class _LoopProxy:
    """The running loop, except that UDP host sockets bind inside the scope's port range."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ports: range) -> None:
        self._loop = loop
        self._ports = ports

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    async def create_datagram_endpoint(
        self, factory: Any, local_addr: Any = None, **kw: Any
    ) -> tuple[asyncio.DatagramTransport, asyncio.DatagramProtocol]:
        if local_addr is None or local_addr[1] != 0 or kw:
            return await self._loop.create_datagram_endpoint(factory, local_addr=local_addr, **kw)
        host = local_addr[0]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        count = len(self._ports)
        start = next(_NEXT_PORT) % count
        for i in range(count):
            port = self._ports[(start + i) % count]
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                continue
            sock.setblocking(False)
            return await self._loop.create_datagram_endpoint(factory, sock=sock)
        raise OSError(f"no free UDP port in {self._ports.start}-{self._ports.stop - 1}")


class _AsyncioProxy(types.ModuleType):
    """``asyncio`` as seen by ``aioice.ice``: only ``get_running_loop`` differs, in a scope."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_ORIGINAL_ASYNCIO, name)

    @staticmethod
    def get_running_loop() -> Any:
        loop = _ORIGINAL_ASYNCIO.get_running_loop()
        scope = _SCOPE.get()
        if scope is not None and scope.ports is not None:
            return _LoopProxy(loop, scope.ports)
        return loop


def install_aioice_patch() -> None:
    """Replace the two names in ``aioice.ice`` (idempotent). Called by MediaServer."""
    aioice.ice.get_host_addresses = _get_host_addresses
    aioice.ice.asyncio = _AsyncioProxy("asyncio")


@contextlib.contextmanager
def ice_scope(scope: IceScope) -> Iterator[None]:
    """Bind the ICE host sockets gathered inside this block as ``scope`` says."""
    install_aioice_patch()
    token = _SCOPE.set(scope)
    try:
        yield
    finally:
        _SCOPE.reset(token)


def turn_credentials(
    secret: str, ttl_s: int, user: str = "", now: float | None = None
) -> tuple[str, str]:
    """Time-limited TURN credentials, coturn's ``use-auth-secret`` scheme (TURN REST API).

    Returns:
        ``(username, password)``: username is ``expiry[:user]``, password is
        ``base64(HMAC-SHA1(secret, username))``.
    """
    expiry = int(time.time() if now is None else now) + ttl_s
    username = f"{expiry}:{user}" if user else str(expiry)
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def browser_ice_servers(
    stun_url: str, turn_url: str, turn_secret: str, ttl_s: int, user: str = ""
) -> list[dict[str, str]]:
    """The ``iceServers`` list to hand a browser (an empty list when none is configured).

    ``turn_url`` may list several URLs, comma-separated (``turn:`` over UDP, then ``turns:``
    on port 443 for networks that only let TLS out): one entry each, in that order, with the
    same credentials.
    """
    servers: list[dict[str, str]] = []
    if stun_url:
        servers.append({"urls": stun_url})
    urls = [u.strip() for u in turn_url.split(",") if u.strip()]
    if urls:
        username, password = turn_credentials(turn_secret, ttl_s, user)
        servers += [{"urls": u, "username": username, "credential": password} for u in urls]
    return servers


def rtc_configuration(
    stun_url: str, turn_url: str, turn_secret: str, ttl_s: int, user: str = "relay"
) -> RTCConfiguration:
    """aiortc's configuration, always with an explicit (possibly empty) ``iceServers``.

    aiortc's default is a public Google STUN server, which an on-premise box must not contact.
    aiortc uses one TURN server, the first it supports: the relay's own allocation goes
    through the first ``turn_url`` (UDP), never through TLS.
    """
    servers = [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in browser_ice_servers(stun_url, turn_url, turn_secret, ttl_s, user)
    ]
    return RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


_HOST_CANDIDATE = re.compile(
    r"^(a=candidate:\S+ \d+ \S+ \d+ )(\S+)( \d+ typ host)", flags=re.MULTILINE
)
_CONNECTION_LINE = re.compile(r"^c=IN IP4 \S+", flags=re.MULTILINE)


def announce_address(sdp: str, public_address: str) -> str:
    """Rewrite host candidates (and ``c=`` lines) to the public address of a box behind NAT.

    The NAT forwards the same ports (1:1), so only the address changes.
    """
    if not public_address:
        return sdp
    sdp = _HOST_CANDIDATE.sub(lambda m: m.group(1) + public_address + m.group(3), sdp)
    return _CONNECTION_LINE.sub(f"c=IN IP4 {public_address}", sdp)
