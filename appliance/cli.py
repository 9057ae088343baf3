"""The ``estrade`` command: serve, migrate, create-admin, demo, check."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import getpass
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from appliance.settings import Settings, SettingsError, load_settings

__all__ = ["main"]


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None):
        overrides["port"] = args.port
    config = Path(args.config) if getattr(args, "config", None) else None
    return load_settings(config_path=config, **overrides)


T = TypeVar("T")


async def _with_db(settings: Settings, coro_fn: Callable[[], Awaitable[T]]) -> T:
    from appliance import db

    engine = db.bind(settings)
    await db.start(engine)
    try:
        return await coro_fn()
    finally:
        await db.close(engine)


def cmd_migrate(args: argparse.Namespace) -> int:
    from appliance import db

    settings = _settings(args)

    async def run() -> list[str]:
        return await db.migrate()

    try:
        ran = asyncio.run(_with_db(settings, run))
    except db.MigrationError as exc:
        print(f"estrade: migration failed: {exc}", file=sys.stderr)
        return 1
    print(f"estrade: {len(ran)} migration(s) applied" if ran else "estrade: database is up to date")
    return 0


def cmd_create_admin(args: argparse.Namespace) -> int:
    from appliance.accounts import schemas as s
    from appliance.accounts import services
    from appliance.accounts.tables import User
    from appliance.auth.passwords import MIN_PASSWORD_LENGTH, hash_password

    settings = _settings(args)
    password = os.environ.get("ESTRADE_ADMIN_PASSWORD") if args.password_from_env else None
    if password is None:
        password = getpass.getpass("Password (at least 10 characters): ")
    if len(password) < MIN_PASSWORD_LENGTH:
        print("estrade: the password must have at least 10 characters", file=sys.stderr)
        return 2

    async def run() -> str:
        from appliance import db

        await db.migrate()
        email = args.email.strip().lower()
        existing = await User.objects().where(User.email == email).first()
        if existing is not None:
            existing.password_hash = hash_password(password)
            existing.role = "admin"
            existing.active = True
            await existing.save()
            return f"estrade: admin {email} updated (password reset)"
        await services.create_user(
            s.UserIn(email=email, display_name=args.name or email, role="admin", password=password)
        )
        return f"estrade: admin {email} created"

    print(asyncio.run(_with_db(settings, run)))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from appliance import db
    from appliance.demo import format_demo, seed_demo

    settings = _settings(args)

    async def run() -> str:
        await db.migrate()
        return format_demo(await seed_demo(settings))

    print(asyncio.run(_with_db(settings, run)))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from appliance import db

    try:
        settings = _settings(args)
    except SettingsError as exc:
        print(f"FAIL config: {exc}")
        return 1
    print("ok   config")
    problems = 0
    data_dir = settings.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
        print(f"ok   data folder {data_dir.resolve()} is writable")
    except OSError as exc:
        print(f"FAIL data folder {data_dir}: {exc}")
        problems += 1

    async def run() -> tuple[bool, list[str]]:
        from piccolo.apps.migrations.tables import Migration

        engine = db.bind(settings)
        await db.start(engine)
        try:
            if not await db.ping(engine):
                return False, []
            if not await Migration.table_exists().run():
                return True, ["(no migration has run)"]
            return True, await db.pending_migrations()
        finally:
            await db.close(engine)

    try:
        answered, pending = asyncio.run(run())
    except Exception as exc:
        answered, pending = False, []
        print(f"FAIL database: {exc}")
    if not answered:
        print("FAIL database does not answer")
        problems += 1
    elif pending:
        print(f"FAIL database: migrations pending: {', '.join(pending)} (run `estrade migrate`)")
        problems += 1
    else:
        print("ok   database answers, migrations are current")
    return 1 if problems else 0


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for ``estrade serve`` (the tests serve with the same ones)."""
    return {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": "httptools",
        # The sans-I/O implementation: uvicorn deprecates its legacy `websockets` one.
        "ws": "websockets-sansio",
        # The WebSocket layer refuses a frame whose header says it is bigger than this before
        # reading it (close 1009): at most this much is held per frame. Twice the protocol's
        # limit, so a frame just over it still reaches the socket handler, which closes with
        # 1009 after the replies already queued (docs/protocol.md).
        "ws_max_size": ws_transport_limit(settings),
        "proxy_headers": True,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
        "log_level": settings.log_level,
        "lifespan": "on",
        "server_header": False,
    }


def ws_transport_limit(settings: Settings) -> int:
    """Largest WebSocket message the server reads at all (bytes)."""
    return 2 * settings.ws_max_frame_bytes


def _raise_open_files(settings: Settings) -> None:
    """Raise the soft open-files limit to what the capacity needs (the systemd unit sets it;
    this covers other ways of running), and say so when the hard limit is too low."""
    import resource

    need = settings.open_files_needed
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft != resource.RLIM_INFINITY and soft < need:
        print(
            f"estrade: warning: {soft} open files allowed, the configured capacity needs {need}"
            " (raise LimitNOFILE or lower media_max_rooms / media_max_learners_per_room)",
            file=sys.stderr,
            flush=True,
        )


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from appliance.app import create_app
    from appliance.auth.redact import install_log_redaction

    settings = _settings(args)
    if settings.demo:

        def demo() -> None:
            from appliance import db
            from appliance.demo import format_demo, seed_demo

            async def run() -> str:
                await db.migrate()
                return format_demo(await seed_demo(settings))

            print(asyncio.run(_with_db(settings, run)), flush=True)

        demo()
    _raise_open_files(settings)
    app = create_app(settings, migrate_on_start=True)
    config = uvicorn.Config(app, **server_options(settings))
    # uvicorn.Config set its logging up: from here on, no join-link secret reaches a log.
    install_log_redaction("uvicorn", "uvicorn.access", "uvicorn.error", "estrade")
    print(f"estrade: serving on http://{settings.host}:{settings.port}", flush=True)
    # What exists now (the modules and the app: ~126 000 objects) lives as long as the process:
    # out of the collector's sight, so a full collection no longer scans it. Measured in
    # benchmarks/chat.py at load 3-5: a full collection paused the event loop 138-255 ms
    # without this, 106 ms with (docs/architecture.md "Chat storage").
    gc.freeze()
    # uvicorn shuts down gracefully on Ctrl-C, then re-raises the signal it captured.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run()
    print("estrade: stopped", flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="estrade", description=__doc__)
    parser.add_argument("--config", help="TOML settings file (default $ESTRADE_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="migrate a new database if needed, then serve HTTP")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("migrate", help="apply pending database migrations").set_defaults(
        func=cmd_migrate
    )
    admin = sub.add_parser("create-admin", help="create an administrator (or reset its password)")
    admin.add_argument("email")
    admin.add_argument("--name")
    admin.add_argument(
        "--password-from-env",
        action="store_true",
        help="read the password from ESTRADE_ADMIN_PASSWORD instead of prompting",
    )
    admin.set_defaults(func=cmd_create_admin)
    sub.add_parser("demo", help="create the demo cohort and print its links").set_defaults(
        func=cmd_demo
    )
    sub.add_parser("check", help="check configuration, data folder and database").set_defaults(
        func=cmd_check
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"estrade: bad configuration: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
