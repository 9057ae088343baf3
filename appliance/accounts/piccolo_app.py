import os

from piccolo.conf.apps import AppConfig

from appliance.accounts.tables import ClassSession, Cohort, Enrolment, JoinLink, User

APP_CONFIG = AppConfig(
    app_name="accounts",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[User, Cohort, Enrolment, ClassSession, JoinLink],
    migration_dependencies=[],
    commands=[],
)
