"""The low-bandwidth ladder: which slots a learner receives, and when to move down or up."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LEVELS", "LEVEL_SLOTS", "LadderPolicy", "LadderState"]

#: From most to least bandwidth. ``screen`` keeps the screen share and the voice.
LEVELS = ("full", "screen", "audio")
LEVEL_SLOTS = {
    "full": frozenset({"audio", "camera", "screen"}),
    "screen": frozenset({"audio", "screen"}),
    "audio": frozenset({"audio"}),
}


@dataclass(frozen=True, slots=True)
class LadderPolicy:
    """Thresholds on the learner's RTCP receiver reports (loss fraction, round-trip time)."""

    down_loss: float = 0.08
    down_rtt_s: float = 0.6
    up_loss: float = 0.02
    up_rtt_s: float = 0.3
    #: consecutive bad samples before a step down (one sample per ``interval_s``)
    down_after: int = 3
    #: consecutive good samples before a step up: slower up than down, to avoid flapping
    up_after: int = 10
    interval_s: float = 1.0


@dataclass(slots=True)
class LadderState:
    bad: int = 0
    good: int = 0

    def sample(self, policy: LadderPolicy, loss: float, rtt_s: float) -> tuple[int, str]:
        """Feed one sample; returns (-1 down | 0 stay | +1 up, reason)."""
        if loss >= policy.down_loss or rtt_s >= policy.down_rtt_s:
            self.bad += 1
            self.good = 0
            if self.bad >= policy.down_after:
                self.bad = 0
                what = f"loss {loss:.0%}" if loss >= policy.down_loss else f"rtt {rtt_s:.2f} s"
                return -1, what
        elif loss <= policy.up_loss and rtt_s <= policy.up_rtt_s:
            self.good += 1
            self.bad = 0
            if self.good >= policy.up_after:
                self.good = 0
                return 1, "recovered"
        else:
            self.bad = self.good = 0
        return 0, ""
