import os

from piccolo.conf.apps import AppConfig

from appliance.chat.tables import ChatMessage, ChatMute, QuestionVote

APP_CONFIG = AppConfig(
    app_name="chat",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[ChatMessage, QuestionVote, ChatMute],
    migration_dependencies=["appliance.accounts.piccolo_app"],
    commands=[],
)
