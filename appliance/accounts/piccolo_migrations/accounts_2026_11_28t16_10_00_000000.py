from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-28T16:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "unique enrolment per cohort and user"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="accounts", description=DESCRIPTION)

    async def unique_enrolment() -> None:
        # SQLite has no ALTER TABLE ADD CONSTRAINT: a unique index works on both engines.
        engine = engine_finder()
        assert engine is not None
        await engine.run_ddl(
            "CREATE UNIQUE INDEX IF NOT EXISTS estrade_enrolment_cohort_user "
            'ON estrade_enrolment (cohort, "user")'
        )

    manager.add_raw(unique_enrolment)
    return manager
