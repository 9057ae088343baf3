"""Socket message handlers, one module per message family. Each calls domain services."""

from appliance.live.dispatch import Dispatcher
from appliance.live.handlers import attendance, chat, polls, questions, session, signals

__all__ = ["register_all"]


def register_all(dispatcher: Dispatcher) -> None:
    for family in (session, chat, questions, polls, signals, attendance):
        family.register(dispatcher)
