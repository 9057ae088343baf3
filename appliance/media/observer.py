"""What the relay reports as it happens, for the metrics layer (no prometheus import here).

``appliance.metrics.EventMetrics`` has exactly these methods, so the app passes it as the
observer; tests may pass anything with the same methods.
"""

from __future__ import annotations

from typing import Literal, Protocol

__all__ = ["MediaObserver", "NullObserver"]

Direction = Literal["received", "sent"]


class MediaObserver(Protocol):
    def pli(self, direction: Direction, n: int = 1) -> None:
        """A PLI received from a learner, or sent to the trainer."""

    def nack(self, direction: Direction, n: int = 1) -> None:
        """A NACK received from a learner, or sent to the trainer."""

    def ice_failed(self) -> None: ...

    def dtls_failed(self) -> None: ...

    def connection_established(self, *, relayed: bool) -> None: ...

    def first_frame(self, seconds: float) -> None:
        """A learner got its first frame ``seconds`` after subscribing."""

    def keyframe_waited(self, seconds: float) -> None:
        """A keyframe arrived ``seconds`` after the relay asked the trainer for one."""

    def learner_report(self, cohort_id: int, *, rtt_s: float, loss_ratio: float) -> None:
        """A learner's receiver report (the ladder reads one per learner and second)."""


class NullObserver:
    """The default: reports go nowhere."""

    def pli(self, direction: Direction, n: int = 1) -> None:
        pass

    def nack(self, direction: Direction, n: int = 1) -> None:
        pass

    def ice_failed(self) -> None:
        pass

    def dtls_failed(self) -> None:
        pass

    def connection_established(self, *, relayed: bool) -> None:
        pass

    def first_frame(self, seconds: float) -> None:
        pass

    def keyframe_waited(self, seconds: float) -> None:
        pass

    def learner_report(self, cohort_id: int, *, rtt_s: float, loss_ratio: float) -> None:
        pass
