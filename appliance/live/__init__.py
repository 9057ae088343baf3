"""The live classroom: one WebSocket per participant, one room object per cohort."""

from litestar.channels import ChannelsPlugin

from appliance.live.access import access_listeners
from appliance.live.room import CohortRoom, RoomRegistry
from appliance.live.socket import classroom_socket
from appliance.settings import Settings

__all__ = ["CohortRoom", "RoomRegistry", "access_listeners", "classroom_socket", "live_plugin"]


def live_plugin(settings: Settings) -> tuple[ChannelsPlugin, RoomRegistry]:
    """The channels plugin and the room registry (with every handler family registered)."""
    from litestar.channels.backends.memory import MemoryChannelsBackend

    from appliance.live.handlers import register_all

    channels = ChannelsPlugin(backend=MemoryChannelsBackend(), arbitrary_channels_allowed=True)
    registry = RoomRegistry(settings, channels)
    register_all(registry.dispatcher)
    return channels, registry
