"""The media relay: the only package that imports aiortc. See docs/media.md."""

from .errors import LearnerClosed, MediaError, MediaEvent, QualityChanged, TracksChanged
from .ladder import LEVELS, LadderPolicy
from .network import turn_credentials
from .room import SLOTS, MediaRoom, SubscribeOffer
from .server import MediaServer

__all__ = [
    "LEVELS",
    "SLOTS",
    "LadderPolicy",
    "LearnerClosed",
    "MediaError",
    "MediaEvent",
    "MediaRoom",
    "MediaServer",
    "QualityChanged",
    "SubscribeOffer",
    "TracksChanged",
    "turn_credentials",
]
