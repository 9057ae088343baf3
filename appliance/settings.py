"""Settings: read once, from ``ESTRADE_*`` variables and an optional TOML file.

Nothing here runs at import time: :func:`load_settings` is called by the CLI (or a test)
and the result is passed to :func:`appliance.app.create_app`.

Precedence: built-in defaults < TOML file < environment variables.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

__all__ = ["DEFAULT_CONFIG_PATH", "Settings", "SettingsError", "load_settings", "usable_cores"]

DEFAULT_CONFIG_PATH = Path("/etc/estrade/estrade.toml")
ENV_PREFIX = "ESTRADE_"
# ESTRADE_* variables that are read by commands, not settings.
NOT_SETTINGS = frozenset(
    {"ESTRADE_CONFIG", "ESTRADE_ADMIN_PASSWORD", "ESTRADE_ARTIFACTS", "ESTRADE_TEST_CACHE"}
)


class SettingsError(ValueError):
    """A setting has a bad value. The message names the key and the value."""


# Constrained types: msgspec checks them; the description is the reason an error gives.
Positive = Annotated[int, Meta(gt=0, description="must be positive")]
NonNegative = Annotated[int, Meta(ge=0, description="must be 0 or more")]
PositiveFloat = Annotated[float, Meta(gt=0, description="must be positive")]
Ratio = Annotated[float, Meta(ge=0, le=1, description="must be a ratio within 0-1")]
Port = Annotated[int, Meta(ge=1, le=65535, description="is not a TCP port (1-65535)")]
CpuCost = Annotated[
    float, Meta(gt=0, lt=64, description="must be a positive number of CPU-seconds per second")
]
CpuShare = Annotated[float, Meta(gt=0, le=1, description="must be in (0, 1]")]
# Patterns: re.search, so anchored with ^ and \Z (an empty value means "not set").
DatabaseUrl = Annotated[
    str,
    Meta(
        pattern=r"^(?:(?:postgres|postgresql|sqlite)://|\Z)",
        description="must start with postgresql:// or sqlite://",
    ),
]
HttpUrl = Annotated[
    str, Meta(pattern=r"^(?:https?://|\Z)", description="must start with http:// or https://")
]
SessionStore = Annotated[
    str,
    Meta(
        pattern=r"^(?:file\Z|memory\Z|rediss?://)",
        description="must be file, memory or a redis:// URL",
    ),
]
RedisUrl = Annotated[
    str, Meta(pattern=r"^(?:rediss?://|\Z)", description="must start with redis:// or rediss://")
]
SecretKey = Annotated[
    str,
    Meta(pattern=r"^(?:[\s\S]{32}|\Z)", description="is too short (at least 32 characters)"),
]
MetricsToken = Annotated[
    str,
    Meta(pattern=r"^(?:[\s\S]{16}|\Z)", description="is too short (at least 16 characters)"),
]
StunUrl = Annotated[
    str, Meta(pattern=r"^(?:stuns?:|\Z)", description="must start with stun: or stuns:")
]
SECRETS = frozenset({"secret_key", "metrics_token", "turn_secret"})
"""Settings whose value an error never echoes."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of the appliance. The environment variable is ``ESTRADE_`` + upper name."""

    data_dir: Path = Path("data")
    """Folder for the SQLite database, documents, sessions and the generated secret key."""
    database_url: DatabaseUrl = ""
    """Empty for SQLite in ``data_dir``; ``postgresql://user:pass@host:port/db`` for PostgreSQL."""
    database_pool_size: NonNegative = 10
    """PostgreSQL connections kept open (0: a new connection per query)."""
    host: str = "127.0.0.1"
    """Address the HTTP server binds."""
    port: Port = 8000
    """Port the HTTP server binds."""
    public_url: HttpUrl = ""
    """Base URL people use (``https://classe.example.org``); default ``http://host:port``."""
    allowed_origins: str = ""
    """Other origins (``https://host[:port]``, comma-separated) whose pages may open the
    classroom socket besides ``public_url``'s; empty: none."""
    secret_key: SecretKey = ""
    """Secret for CSRF tokens; empty: generated once and kept in ``data_dir/secret_key``."""
    secure_cookies: bool | None = None
    """Mark cookies Secure; default: true when ``public_url`` starts with https."""
    session_max_age_s: Positive = 12 * 3600
    """Lifetime of a sign-in session, in seconds."""
    session_sweep_s: Positive = 600
    """How often expired sessions are deleted from the file (or memory) store, in seconds."""
    session_store: SessionStore = "file"
    """Where sessions live: ``file`` (in ``data_dir``), ``memory`` or a ``redis://`` URL; with
    ``redis_url`` set, ``file`` means that Redis."""
    redis_url: RedisUrl = ""
    """Redis shared by several app hosts (``redis://db.example.org:6379/0``); empty: one host.
    When set, sessions, sign-in limits and access changes go through it (docs/deploy.md
    "Several hosts"), and PostgreSQL is required."""
    max_request_bytes: Positive = 1024 * 1024
    """Largest accepted JSON/CSV request body, in bytes (documents have their own limit)."""
    document_max_bytes: Positive = 200 * 1024 * 1024
    """Largest document a trainer may upload, in bytes (413 above it)."""
    document_quota_bytes: Positive = 5 * 1024 * 1024 * 1024
    """Total size of the documents of one cohort, in bytes (413 when an upload would pass it)."""
    recording_sweep_s: Positive = 24 * 3600
    """How often expired recordings are deleted (disk and list), in seconds (docs/replays.md)."""
    recording_check_s: PositiveFloat = 15.0
    """How often a running recording's size is checked against its cohort's quota, in seconds."""
    login_attempts_per_address: Positive = 20
    """Failed sign-ins allowed per client address per ``login_window_s``."""
    login_attempts_per_account: Positive = 5
    """Failed sign-ins allowed per account per ``login_window_s``."""
    login_window_s: Positive = 900
    """Window of the sign-in rate limits, in seconds."""
    password_workers: Positive = 2
    """Threads verifying passwords (argon2, ~0.2 s of CPU each) next to the event loop."""
    password_queue: NonNegative = 8
    """Sign-ins that may wait for a password thread; beyond, 503 with Retry-After at once."""
    join_link_ttl_days: Positive = 180
    """Validity of a learner's personal join link, in days."""
    forwarded_allow_ips: str = "127.0.0.1"
    """Proxies whose X-Forwarded-For is trusted (comma-separated, as uvicorn takes it)."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """One of debug, info, warning, error."""
    demo: bool = False
    """Seed a demo cohort when the data folder is new (``make run`` sets it)."""
    metrics_allow_cidrs: str = "127.0.0.1/32,::1/128"
    """Client networks allowed to read ``/metrics`` (comma-separated CIDRs; ``0.0.0.0/0``: any)."""
    metrics_token: MetricsToken = ""
    """When set, ``/metrics`` also needs ``Authorization: Bearer <token>`` (16+ characters)."""
    capacity_learner_cpu: CpuCost = 0.0009
    """CPU-seconds per second one learner costs besides video (signalling, audio; measured)."""
    capacity_video_track_cpu: CpuCost = 0.0024
    """CPU-seconds per second relaying one video track to one learner (benchmarks/relay.py)."""
    capacity_video_tracks: NonNegative = 2
    """Video tracks a class is planned with (camera and screen), for the capacity estimate."""
    capacity_cpu_target: CpuShare = 0.8
    """Share of the machine's cores the appliance may use before it counts as full (0-1]."""
    ws_max_frame_bytes: Positive = 64 * 1024
    """Largest classroom-socket frame accepted; a bigger one closes the socket (code 1009)."""
    ws_malformed_limit: Positive = 10
    """Malformed frames tolerated per socket; the next closes it (code 1008)."""
    ws_idle_timeout_s: PositiveFloat = 15.0
    """A classroom socket that sends nothing for this long is closed (code 4408) and the learner
    counted as gone; the server sends ``heartbeat`` every third of it, clients answer."""
    ws_learner_sockets_per_session: Positive = 1
    """Classroom sockets one learner session may hold per cohort; a new one closes the oldest
    (code 4409: the class is open in another tab)."""
    ws_staff_sockets_per_session: Positive = 4
    """Classroom sockets one staff session may hold per cohort (console, learner view...)."""
    chat_max_chars: Positive = 2000
    """Longest chat message or question, in characters."""
    chat_rate_limit: Positive = 5
    """Chat messages a learner may send per ``chat_rate_window_s`` (more: ``rate_limited``)."""
    chat_rate_window_s: Positive = 10
    """Window of the learners' chat rate limit, in seconds."""
    live_rate_limit: Positive = 10
    """Messages of one type (hand, reaction, vote...) a learner may send per
    ``live_rate_window_s``; more: ``rate_limited`` (chat has its own, stricter limit)."""
    live_rate_window_s: Positive = 10
    """Window of the learners' per-message-type rate limit, in seconds."""
    attendance_reconnect_grace_s: NonNegative = 10
    """A learner whose last socket closes and who is back within this many seconds stays
    connected in the attendance record (a reload or a network blip is not an absence)."""
    chat_history: Positive = 100
    """Recent chat messages sent to a participant when they join."""
    live_resume_events: Positive = 1000
    """Events kept per cohort for resuming after a reconnect (beyond: the client reloads)."""
    reaction_window_s: Positive = 60
    """Quick reactions are counted over this many seconds for the trainer."""
    signing_window_minutes: Positive = 15
    """Default length of an attendance signing window, in minutes."""
    media_interface: str = ""
    """IP address the media relay binds its UDP sockets to; empty: every non-loopback address."""
    media_port_min: int = 0
    """First UDP port of the media range (0 with ``media_port_max`` 0: any port)."""
    media_port_max: int = 0
    """Last UDP port of the media range (one port per learner and per trainer connection)."""
    media_public_address: str = ""
    """Public IPv4 address announced in SDP for a server behind 1:1 NAT; empty: none."""
    stun_url: StunUrl = ""
    """STUN server (``stun:host:3478``); empty: none, never a public one by default."""
    turn_url: str = ""
    """TURN servers, comma-separated, in the order browsers should try them (e.g.
    ``turn:host:3478?transport=udp,turns:turn.host:443?transport=tcp``): each is handed to
    browsers with the same time-limited credentials; the relay itself uses the first."""
    turn_secret: str = ""
    """Shared secret of coturn's ``use-auth-secret``; required with ``turn_url``."""
    turn_ttl_s: Positive = 12 * 3600
    """Lifetime of the TURN credentials handed to each browser, in seconds."""
    media_max_learners_per_room: Positive = 200
    """Learners receiving media in one class; the next one is refused with a clear message."""
    media_max_rooms: Positive = 2
    """Classes relaying media at the same time on this server."""
    media_step_down_loss: Ratio = 0.08
    """Loss ratio in a learner's receiver reports that makes a bad second; 3 in a row step the
    learner down the ladder (full > screen > audio). 0: every reported second counts as bad."""
    media_step_down_rtt_s: PositiveFloat = 0.6
    """Round-trip time that makes a bad second, likewise."""
    media_send_path: Literal["lean", "aiortc"] = "lean"
    """How forwarded packets reach learners: ``lean`` (header rewrite, SRTP, sendto; the
    default) or ``aiortc`` (each learner's ``RTCRtpSender`` packetizes; for comparison)."""
    media_workers: NonNegative | None = None
    """Media worker processes (docs/media-workers.md), each with its own event loop and an N-th
    of the port range; unset (or ``auto``): one per core this process may run on (at least 1,
    at most one per port of the media range); 0: the relay runs in the web process."""
    recording_segment_s: Positive = 300
    """A class's recording is written in segments of this many seconds (docs/recordings.md): a
    crash loses at most the one being written."""
    recording_min_free_mb: NonNegative = 512
    """A recording stops (``disk_full``) when the disk of ``data_dir/recordings`` has less free
    space than this, in MiB, so the disk never fills up for the rest of the appliance."""
    media_worker_learners: Positive = 100
    """With media workers: learners of one class a worker serves before the class spreads to
    the others (its trainer's frames piped to them, docs/media-workers.md "Pipes")."""
    media_pipe_batch_ms: NonNegative = 40
    """With media workers: a class's frames piped to another worker are written three at a
    time, a frame waiting at most this many milliseconds (the other worker wakes once per
    write, not once per frame: docs/media-workers.md "Pipes"); that worker's learners receive
    them ~12 ms later on average. 0: each frame at once."""

    @property
    def open_files_needed(self) -> int:
        """File descriptors the configured capacity needs: 8 per participant (sockets, media,
        downloads) of every class, plus 1024 (database, logs, listeners). The systemd unit's
        ``LimitNOFILE`` (roles/estrade) uses the same formula."""
        return 1024 + 8 * self.media_max_rooms * (self.media_max_learners_per_room + 1)

    @property
    def media_worker_count(self) -> int:
        """``media_workers``, or when unset the cores this process may run on (at least 1, at
        most the ports of ``media_port_min..media_port_max``). 0: the relay is in process."""
        if self.media_workers is not None:
            return self.media_workers
        count = usable_cores()
        if self.media_port_min:
            count = min(count, self.media_port_max - self.media_port_min + 1)
        return max(1, count)

    @property
    def resolved_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.host}:{self.port}"

    @property
    def cookies_secure(self) -> bool:
        if self.secure_cookies is not None:
            return self.secure_cookies
        return self.resolved_public_url.startswith("https://")

    @property
    def turn_urls(self) -> list[str]:
        """``turn_url`` split at commas (empty entries dropped)."""
        return [u.strip() for u in self.turn_url.split(",") if u.strip()]

    @property
    def uses_postgres(self) -> bool:
        return self.database_url.startswith(("postgres://", "postgresql://"))

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "estrade.sqlite3"


_WORDS = {"yes": "true", "on": "true", "no": "false", "off": "false"}
_NOT_A = {
    bool: "is not a boolean (use true or false)",
    int: "is not an integer",
    float: "is not a number",
    str: "is not a string",
    Path: "is not a path",
}


def _path(kind: type, value: Any) -> Any:
    """msgspec's hook for the types it does not know (here: Path, from a non-empty string)."""
    if kind is Path and isinstance(value, str | Path) and str(value):
        return Path(value)
    raise TypeError(f"not a {kind.__name__}")


def _convert(key: str, raw: Any, hint: Any) -> Any:
    """``raw`` (TOML value or environment string) as the field's type, or a SettingsError
    naming the key and the value: as given for a wrong type, as read for a broken constraint."""
    # ``Annotated[int, Meta] | None`` or ``Annotated[int | None, Meta]``: the optional part,
    # the plain type (constraints off) and its base type, in either order.
    optional = typing.get_origin(hint) in (types.UnionType, typing.Union)
    inner = typing.get_args(hint)[0] if optional else hint
    annotated = inner if typing.get_origin(inner) is Annotated else hint
    plain = typing.get_args(annotated)[0] if typing.get_origin(annotated) is Annotated else inner
    if typing.get_origin(plain) in (types.UnionType, typing.Union):
        optional, plain = True, typing.get_args(plain)[0]
    base = plain
    if optional:
        plain = plain | None
    if isinstance(raw, str) and base in (bool, int, float):
        # What msgspec's lax mode leaves to us: spaces, yes/on/no/off, "auto" for optional.
        word = raw.strip().lower()
        raw = None if optional and word in ("", "auto") else _WORDS.get(word, raw.strip())
    try:
        return msgspec.convert(raw, hint, strict=False, dec_hook=_path)
    except msgspec.ValidationError:
        pass
    try:  # the right type, a broken constraint: show the value as read
        raw = msgspec.convert(raw, plain, strict=False, dec_hook=_path)
        metas = [m for m in typing.get_args(annotated) if isinstance(m, Meta)]
        why = metas[0].description or "is out of range"
    except msgspec.ValidationError:
        why = _NOT_A.get(base) or f"is not one of {list(typing.get_args(base))}"
    shown = "***" if key in SECRETS else raw
    raise SettingsError(f"setting {key!r}: {shown!r} {why}")


def _validate(s: Settings) -> None:
    """What no field type says: lists in a string, addresses, and settings that go together."""

    def bad(key: str, value: Any, why: str) -> SettingsError:
        return SettingsError(f"setting {key!r}: {value!r} {why}")

    for origin in (o.strip() for o in s.allowed_origins.split(",")):
        if origin and not _is_origin(origin):
            raise bad("allowed_origins", origin, "is not an origin (http(s)://host[:port])")
    for cidr in (c.strip() for c in s.metrics_allow_cidrs.split(",")):
        try:
            if cidr:
                ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise bad("metrics_allow_cidrs", cidr, "is not an address or network (CIDR)") from None
    for key in ("media_interface", "media_public_address"):
        try:
            if value := getattr(s, key):
                ipaddress.ip_address(value)
        except ValueError:
            raise bad(key, value, "is not an IP address") from None
    if (s.media_port_min == 0) != (s.media_port_max == 0):
        raise bad("media_port_min", s.media_port_min, "and media_port_max must both be set")
    if s.media_port_min and not 1024 <= s.media_port_min <= s.media_port_max <= 65535:
        ports = f"{s.media_port_min}-{s.media_port_max}"
        raise bad("media_port_min", ports, "is not a UDP port range within 1024-65535")
    port_count = s.media_port_max - s.media_port_min + 1
    if s.media_port_min and s.media_workers is not None and s.media_workers > port_count:
        why = f"is more than the {port_count} ports of media_port_min..media_port_max"
        raise bad("media_workers", s.media_workers, why)
    for url in s.turn_urls:
        if not url.startswith(("turn:", "turns:")):
            raise bad("turn_url", url, "must start with turn: or turns:")
    if s.turn_url and not s.turn_secret:
        raise bad("turn_secret", "", "is required with turn_url")
    if s.redis_url and not s.uses_postgres:
        why = "means several app hosts, which need PostgreSQL: set database_url (postgresql://)"
        raise bad("redis_url", _no_password(s.redis_url), why)
    if s.redis_url and s.session_store == "memory":
        raise bad("session_store", "memory", "is per process: with redis_url, sessions go to Redis")


def _no_password(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, for an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, so a cgroup or ``taskset`` limit
    counts), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _is_origin(value: str) -> bool:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and parts.path in ("", "/")
        and not (parts.query or parts.fragment or parts.username)
    )


def load_settings(
    env: Mapping[str, str] | None = None,
    config_path: Path | None = None,
    **overrides: Any,
) -> Settings:
    """Build validated settings.

    Args:
        env: the environment to read (default ``os.environ``).
        config_path: a TOML file; default ``$ESTRADE_CONFIG``, else
            ``/etc/estrade/estrade.toml`` when it exists.
        overrides: values that win over everything (used by tests and the CLI).

    Raises:
        SettingsError: naming the bad key and its value.
    """
    env = os.environ if env is None else env
    hints = typing.get_type_hints(Settings, include_extras=True)
    fields = {f.name for f in dataclasses.fields(Settings)}
    raw: dict[str, Any] = {}

    if config_path is None:
        if env.get("ESTRADE_CONFIG"):
            config_path = Path(env["ESTRADE_CONFIG"])
            if not config_path.is_file():
                raise SettingsError(f"setting 'ESTRADE_CONFIG': {str(config_path)!r} not found")
        elif DEFAULT_CONFIG_PATH.is_file():
            config_path = DEFAULT_CONFIG_PATH
    if config_path is not None:
        try:
            data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"config file {str(config_path)!r}: {exc}") from None
        for key, value in data.items():
            if key not in fields:
                raise SettingsError(f"config file {str(config_path)!r}: unknown key {key!r}")
            raw[key] = value

    for var, value in env.items():
        if not var.startswith(ENV_PREFIX) or var in NOT_SETTINGS:
            continue
        key = var[len(ENV_PREFIX) :].lower()
        if key not in fields:
            # The value is not echoed: a mistyped variable may well hold a secret.
            raise SettingsError(f"setting {var!r}: unknown variable")
        raw[key] = value
    raw.update(overrides)

    values = {key: _convert(key, value, hints[key]) for key, value in raw.items()}
    settings = Settings(**values)
    _validate(settings)
    return settings


def settings_table() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting, for docs and ``estrade check``."""
    import ast
    import inspect

    source = inspect.getsource(Settings)
    tree = ast.parse(source)
    docs: dict[str, str] = {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, nxt in zip(body, [*body[1:], None], strict=True):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
        ):
            docs[node.target.id] = str(nxt.value.value)
    rows = []
    for f in dataclasses.fields(Settings):
        default = f.default if f.default is not dataclasses.MISSING else ""
        rows.append((ENV_PREFIX + f.name.upper(), repr(default), docs.get(f.name, "")))
    return rows
