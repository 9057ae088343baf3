import os

from piccolo.conf.apps import AppConfig

from appliance.engagement.tables import (
    EngagementClassDay,
    EngagementCounter,
    EngagementDay,
    EngagementSettings,
)

APP_CONFIG = AppConfig(
    app_name="engagement",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[EngagementSettings, EngagementClassDay, EngagementDay, EngagementCounter],
    migration_dependencies=[
        "appliance.accounts.piccolo_app",
        "appliance.attendance.piccolo_app",
    ],
    commands=[],
)
