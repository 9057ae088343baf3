import os

from piccolo.conf.apps import AppConfig

from appliance.polls.tables import Ballot, Poll, PollChoice

APP_CONFIG = AppConfig(
    app_name="polls",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[Poll, PollChoice, Ballot],
    migration_dependencies=["appliance.accounts.piccolo_app"],
    commands=[],
)
