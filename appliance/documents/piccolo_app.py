import os

from piccolo.conf.apps import AppConfig

from appliance.documents.tables import Document

APP_CONFIG = AppConfig(
    app_name="documents",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[Document],
    migration_dependencies=["appliance.accounts.piccolo_app"],
    commands=[],
)
