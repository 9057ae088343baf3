from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-30T23:23:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "one engagement row per cohort, learner and day; reads by cohort and day"

INDEXES = (
    "CREATE UNIQUE INDEX IF NOT EXISTS estrade_engagement_day_cohort_user_day"
    ' ON estrade_engagement_day (cohort, "user", day)',
    "CREATE INDEX IF NOT EXISTS estrade_engagement_day_cohort_day"
    " ON estrade_engagement_day (cohort, day)",
    "CREATE UNIQUE INDEX IF NOT EXISTS estrade_engagement_class_day_cohort_day"
    " ON estrade_engagement_class_day (cohort, day)",
    "CREATE UNIQUE INDEX IF NOT EXISTS estrade_engagement_counter_cohort_user_day"
    ' ON estrade_engagement_counter (cohort, "user", day)',
    # The engagement run looks up the rare kinds of the attendance log (window_open,
    # correction) of a cohort on each refresh; without this it would read the whole log.
    "CREATE INDEX IF NOT EXISTS estrade_attendance_record_cohort_kind"
    " ON estrade_attendance_record (cohort, kind)",
    # ...and computes one day from that day's records, not the whole log.
    "CREATE INDEX IF NOT EXISTS estrade_attendance_record_cohort_at"
    " ON estrade_attendance_record (cohort, at)",
)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="engagement", description=DESCRIPTION)

    async def indexes() -> None:
        # SQLite has no ALTER TABLE ADD CONSTRAINT: unique indexes work on both engines.
        engine = engine_finder()
        assert engine is not None
        for statement in INDEXES:
            await engine.run_ddl(statement)

    manager.add_raw(indexes)
    return manager
