"""Piccolo's configuration module.

Piccolo finds its engine through this module (``PICCOLO_CONF=appliance.piccolo_conf``).
``DB`` is only a placeholder until :func:`appliance.db.bind` replaces it with the engine
built from the settings; nothing here reads the environment.
"""

from typing import Any

from piccolo.conf.apps import AppRegistry
from piccolo.engine.base import Engine
from piccolo.engine.sqlite import SQLiteEngine

DB: Engine[Any] = SQLiteEngine(path="estrade-dev.sqlite3")

APP_REGISTRY = AppRegistry(
    apps=[
        "appliance.accounts.piccolo_app",
        "appliance.chat.piccolo_app",
        "appliance.polls.piccolo_app",
        "appliance.attendance.piccolo_app",
        "appliance.documents.piccolo_app",
        "appliance.engagement.piccolo_app",
        "appliance.replays.piccolo_app",
    ]
)
