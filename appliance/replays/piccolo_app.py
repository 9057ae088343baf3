import os

from piccolo.conf.apps import AppConfig

from appliance.replays.tables import Recording, RecordingDocument, RecordingPolicy

APP_CONFIG = AppConfig(
    app_name="replays",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[RecordingPolicy, Recording, RecordingDocument],
    migration_dependencies=[
        "appliance.accounts.piccolo_app",
        "appliance.documents.piccolo_app",
    ],
    commands=[],
)
