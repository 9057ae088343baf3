from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-28T16:13:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "one +1 per learner and question"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="chat", description=DESCRIPTION)

    async def unique_index() -> None:
        # SQLite has no ALTER TABLE ADD CONSTRAINT: a unique index works on both engines.
        engine = engine_finder()
        assert engine is not None
        await engine.run_ddl(
            'CREATE UNIQUE INDEX IF NOT EXISTS estrade_question_vote_message_user ON estrade_question_vote (message, "user")'
        )

    manager.add_raw(unique_index)
    return manager
