"""The handler registry: message type -> (message class, allowed capacities, handler).

Other packages register their own message families here (e.g. ``media_*`` signalling) with
:meth:`Dispatcher.register`; the decoder is rebuilt as a tagged union of every registered
class, so one parse decodes and validates a frame.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from appliance.accounts.tables import Role
from appliance.live import protocol as p

if TYPE_CHECKING:
    from appliance.live.room import CohortRoom, Conn
    from appliance.settings import Settings

__all__ = ["Context", "Dispatcher", "Handler", "Observer"]

log = logging.getLogger("estrade.live")


@dataclass(eq=False)
class Context:
    """What a handler gets: the room, the sender's connection, the settings, a reply list."""

    room: CohortRoom
    conn: Conn
    settings: Settings
    replies: list[p.Reply] = field(default_factory=list)

    def reply(self, message: p.Reply) -> None:
        self.replies.append(message)


Handler = Callable[[Context, Any], Awaitable[None]]
Observer = Callable[[Context, Any], None]
"""Told of each message accepted and handled: (the handler's context, the decoded message)."""


@dataclass(frozen=True)
class Route:
    cls: type[p.ClientMessage]
    roles: frozenset[Role]
    handler: Handler
    rate_limited: bool = False
    """Counted against the learners' chat rate limit."""


class Dispatcher:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self._decoder: msgspec.json.Decoder[Any] | None = None
        self._observers: list[Observer] = []

    def register(
        self,
        cls: type[p.ClientMessage],
        roles: frozenset[Role] | set[Role],
        handler: Handler,
        *,
        rate_limited: bool = False,
    ) -> None:
        """Route ``cls`` messages (a tagged ``ClientMessage``) sent by ``roles`` to ``handler``."""
        tag = p.tag_of(cls)
        if tag in self.routes:
            raise ValueError(f"message type {tag!r} is already registered")
        self.routes[tag] = Route(cls, frozenset(roles), handler, rate_limited)
        self._decoder = None

    def on_accepted(self, observer: Observer) -> None:
        """Call ``observer`` after each message that passed the role and rate checks and whose
        handler returned (a refused or failed message is not reported). Synchronous and cheap:
        it runs before the sender's ack (engagement counts hands and reactions this way)."""
        self._observers.append(observer)

    def accepted(self, ctx: Context, msg: Any) -> None:
        """Report ``msg`` to the observers; one failing is logged and does not fail the message."""
        for observer in self._observers:
            try:
                observer(ctx, msg)
            except Exception:
                log.exception("observer %r failed on %s", observer, p.tag_of(type(msg)))

    @property
    def decoder(self) -> msgspec.json.Decoder[Any]:
        if self._decoder is None:
            classes = tuple(r.cls for r in self.routes.values())
            self._decoder = msgspec.json.Decoder(typing.Union[classes])  # noqa: UP007
        return self._decoder

    def message_types(self) -> list[str]:
        return sorted(self.routes)
