import os

from piccolo.conf.apps import AppConfig

from appliance.attendance.tables import AttendanceRecord

APP_CONFIG = AppConfig(
    app_name="attendance",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[AttendanceRecord],
    migration_dependencies=["appliance.accounts.piccolo_app"],
    commands=[],
)
