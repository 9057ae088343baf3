"""The media relay: the only package that imports aiortc. See docs/media.md."""

from .errors import (
    LearnerClosed,
    MediaError,
    MediaEvent,
    PublisherClosed,
    QualityChanged,
    RecordingEnded,
    TracksChanged,
)
from .ladder import LEVELS, LadderPolicy
from .network import turn_credentials
from .recorder import RecordingFiles, finalize_directory
from .room import SLOTS, LearnerMediaStats, MediaRoom, MediaRoomStats, SubscribeOffer
from .server import MediaServer, MediaServerStats

__all__ = [
    "LEVELS",
    "SLOTS",
    "LadderPolicy",
    "LearnerClosed",
    "LearnerMediaStats",
    "MediaError",
    "MediaEvent",
    "MediaRoom",
    "MediaRoomStats",
    "MediaServer",
    "MediaServerStats",
    "PublisherClosed",
    "QualityChanged",
    "RecordingEnded",
    "RecordingFiles",
    "SubscribeOffer",
    "TracksChanged",
    "finalize_directory",
    "turn_credentials",
]
