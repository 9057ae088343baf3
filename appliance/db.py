"""Database engine: built from the settings, bound to every Piccolo table, migrated."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from piccolo.apps.migrations.commands.base import BaseMigrationManager
from piccolo.apps.migrations.commands.forwards import run_forwards
from piccolo.apps.migrations.tables import Migration
from piccolo.conf.apps import Finder
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, SQLiteTransaction, TransactionType

from appliance import piccolo_conf
from appliance.settings import Settings

if TYPE_CHECKING:
    from aiosqlite import Connection

__all__ = [
    "DedicatedWriter",
    "bind",
    "close",
    "migrate",
    "pending_migrations",
    "ping",
    "write_transaction",
]

PICCOLO_CONF_MODULE = "appliance.piccolo_conf"
log = logging.getLogger("estrade.db")


class MigrationError(RuntimeError):
    """A migration failed; the database is left at the last good migration."""


def build_engine(settings: Settings) -> Engine[Any]:
    if settings.uses_postgres:
        parts = urlsplit(settings.database_url)
        config = {
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 5432,
            "user": parts.username,
            "password": parts.password,
            "database": parts.path.lstrip("/") or "estrade",
        }
        return PostgresEngine(config={k: v for k, v in config.items() if v is not None})
    if settings.database_url.startswith("sqlite://"):
        path = settings.database_url.removeprefix("sqlite://")
    else:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path = str(settings.sqlite_path)
    # A generous timeout: SQLite serialises writers; a short busy wait beats an error.
    return _SQLiteEngine(path=path, timeout=30)


def write_transaction(engine: Engine[Any]) -> Any:
    """A transaction that will write: on SQLite it takes the write lock at BEGIN (IMMEDIATE).

    A DEFERRED SQLite transaction that reads and then writes fails at once with "database is
    locked" when another connection wrote meanwhile (the busy timeout does not apply to that
    upgrade); taking the lock first makes it wait its turn instead.
    """
    if isinstance(engine, SQLiteEngine):
        return engine.transaction(transaction_type=TransactionType.immediate)
    return engine.transaction()


class _SQLiteEngine(SQLiteEngine):
    """Piccolo's SQLite engine with one thread hop per query on an open connection.

    aiosqlite runs each call in the connection's thread and wakes the event loop when it is
    done: a hop costs little on an idle machine, but on a busy one its p99 reached 20 ms (load
    8; docs/architecture.md "Chat storage"). Piccolo spends four per query
    on an open connection (``PRAGMA foreign_keys``, execute, fetch, close the cursor); here one
    (``execute_fetchall``). ``foreign_keys`` is already on: every connection comes from
    :meth:`get_connection`, which sets it.
    """

    async def _run_in_existing_connection(
        self,
        connection: Connection,
        query: str,
        args: list[Any] | None = None,
        query_type: str = "generic",
        table: Any = None,
    ) -> Any:
        if query_type == "insert" and self.get_version_sync() < 3.35:  # no RETURNING
            return await super()._run_in_existing_connection(
                connection, query, args, query_type, table
            )
        return list(await connection.execute_fetchall(query, args or []))


class _KeptConnection(SQLiteTransaction):
    """Piccolo's queries in the block run on ``connection`` (kept open, not closed at the end),
    with no BEGIN: each statement is its own transaction (autocommit), on disk when it returns.
    """

    def __init__(self, engine: SQLiteEngine, connection: Connection) -> None:
        super().__init__(engine, allow_nested=False)
        self._kept = connection

    async def get_connection(self) -> Connection:
        return self._kept

    async def begin(self) -> None:
        pass

    async def __aexit__(self, exception_type: Any, exception: Any, traceback: Any) -> bool:
        self.engine.current_transaction.reset(self.context)
        return exception is None


class DedicatedWriter:
    """A write path of its own for a hot, steady stream of small writes (the chat).

    Piccolo's SQLite engine opens a new connection (and a thread) for every query outside a
    transaction and closes it after: each query pays the open (the schema parsed again) and
    about six thread hops, and when no other connection is open the close checkpoints the whole
    WAL into the database and deletes it (fsyncs of the database file on the writer's path,
    then a new WAL). Inside :meth:`connection`, on SQLite, Piccolo's queries run instead on
    one connection kept open, one thread hop each:

    - no BEGIN: each statement commits on its own (one INSERT of a whole batch is atomic);
    - ``synchronous=FULL`` (said, though it is SQLite's default): a statement returns once the
      WAL is on disk, so what the caller acknowledges after it survives a crash or a kill;
    - ``wal_autocheckpoint=0`` on this connection: the checkpoint (copying the WAL into the
      database, and its fsync) is not done by these commits but every ``checkpoint_s`` by a
      background task on a second kept connection, ``PASSIVE`` (it never blocks a writer).

    With these connections open, the other connections' closes no longer checkpoint either.
    On PostgreSQL the block changes nothing (Piccolo's pool). :meth:`close` at shutdown.
    """

    def __init__(self, engine: Engine[Any], checkpoint_s: float = 2.0) -> None:
        self.engine = engine
        self.checkpoint_s = checkpoint_s
        self.checkpoints = 0
        """PASSIVE checkpoints run (read by tests)."""
        self._lock = asyncio.Lock()
        self._conn: Connection | None = None
        self._checkpointer: asyncio.Task[None] | None = None
        self._closed = False

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[None]:
        """Piccolo's queries in the block run on the kept connection, each committed on return.

        One block at a time (they share the connection): no other statement slips into a
        block's sequence.
        """
        engine = self.engine
        if self._closed:
            raise RuntimeError("the dedicated writer is closed")
        if not isinstance(engine, SQLiteEngine):
            yield
            return
        async with self._lock, _KeptConnection(engine, await self._connection(engine)):
            yield

    async def _connection(self, engine: SQLiteEngine) -> Connection:
        if self._closed:
            raise RuntimeError("the dedicated writer is closed")
        if self._conn is None:
            conn = await engine.get_connection()
            try:
                await conn.execute("PRAGMA synchronous = FULL")
                await conn.execute("PRAGMA wal_autocheckpoint = 0")
            except BaseException:
                await conn.close()
                raise
            self._conn = conn
            if self._checkpointer is None:
                self._checkpointer = asyncio.create_task(
                    self._checkpoint_loop(engine), name="sqlite-checkpoint"
                )
        return self._conn

    async def _checkpoint_loop(self, engine: SQLiteEngine) -> None:
        conn = await engine.get_connection()
        try:
            while True:
                await asyncio.sleep(self.checkpoint_s)
                try:
                    await conn.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")
                except Exception as exc:  # the next round tries again
                    log.warning("WAL checkpoint failed: %s", exc)
                    continue
                self.checkpoints += 1
        finally:
            await conn.close()

    async def close(self) -> None:
        """Close the kept connections (after the last write). Idempotent."""
        async with self._lock:
            self._closed = True
            if self._checkpointer is not None:
                self._checkpointer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._checkpointer
                self._checkpointer = None
            if self._conn is not None:
                conn, self._conn = self._conn, None
                await conn.close()


def _all_tables() -> list[type]:
    tables: list[type] = [Migration]
    for app_config in Finder().get_app_configs():
        tables.extend(app_config.table_classes)
    return tables


def bind(settings: Settings) -> Engine[Any]:
    """Build the engine and make every table (and Piccolo's migration runner) use it."""
    os.environ["PICCOLO_CONF"] = PICCOLO_CONF_MODULE
    engine = build_engine(settings)
    piccolo_conf.DB = engine
    for table in _all_tables():
        table._meta.db = engine  # type: ignore[attr-defined]
    return engine


async def start(engine: Engine[Any], pool_size: int = 10) -> None:
    """Open the pool (PostgreSQL) or switch to WAL (SQLite).

    A database that does not answer yet is not fatal: the process serves ``/health`` and
    ``/ready`` answers 503 until it does.
    """
    try:
        if isinstance(engine, PostgresEngine) and pool_size > 0:
            await engine.start_connection_pool(min_size=1, max_size=pool_size)
        elif isinstance(engine, SQLiteEngine):
            await engine.run_ddl("PRAGMA journal_mode=WAL")
    except Exception as exc:
        log.warning("database not available at start: %s", exc)


async def close(engine: Engine[Any]) -> None:
    if isinstance(engine, PostgresEngine) and engine.pool is not None:
        with contextlib.suppress(Exception):
            await engine.close_connection_pool()


async def ping(engine: Engine[Any]) -> bool:
    try:
        await engine.run_ddl("SELECT 1")
    except Exception:
        return False
    return True


async def pending_migrations() -> list[str]:
    """Ids of migrations that exist in the code but have not run on this database."""
    manager = BaseMigrationManager()
    table_exists = await Migration.table_exists().run()
    pending: list[str] = []
    for app_config in Finder().get_app_configs():
        modules = manager.get_migration_modules(app_config.resolved_migrations_folder_path)
        ran: set[str] = set()
        if table_exists:
            ran = set(await Migration.get_migrations_which_ran(app_name=app_config.app_name))
        pending.extend(
            f"{app_config.app_name}:{i}" for i in manager.get_migration_ids(modules) if i not in ran
        )
    return pending


async def migrate(*, quiet: bool = True) -> list[str]:
    """Run every pending migration; returns the ids that ran.

    Each migration runs in its own transaction (Piccolo's default), so a failing one leaves
    the database at the last good migration and raises :class:`MigrationError`.
    """
    before = await pending_migrations()
    out = io.StringIO()
    with contextlib.redirect_stdout(out) if quiet else contextlib.nullcontext():
        try:
            result = await run_forwards(app_name="all")
        except Exception as exc:
            raise MigrationError(f"{type(exc).__name__}: {exc}") from exc
    if not result.success:
        raise MigrationError(result.message or out.getvalue())
    return before
