"""The low-bandwidth ladder: which slots a learner receives, and when to move down or up."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CAMERA_DROP", "LEVELS", "LEVEL_SLOTS", "LadderPolicy", "LadderState"]

#: From most to least bandwidth. ``camera_half`` and ``camera_quarter`` keep every slot but
#: forward fewer of the camera's VP8 temporal layers (half, then a quarter of the frame rate);
#: ``screen`` keeps the screen share and the voice.
LEVELS = ("full", "camera_half", "camera_quarter", "screen", "audio")
_ALL = frozenset({"audio", "camera", "screen"})
LEVEL_SLOTS = {
    "full": _ALL,
    "camera_half": _ALL,
    "camera_quarter": _ALL,
    "screen": frozenset({"audio", "screen"}),
    "audio": frozenset({"audio"}),
}
#: temporal layers of the camera left out at each level (from the top layer down)
CAMERA_DROP = {"full": 0, "camera_half": 1, "camera_quarter": 2, "screen": 0, "audio": 0}


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
    #: a step up followed by a step down within ``2 * up_after`` samples failed: the next one
    #: waits longer (``up_after`` more, then twice as long each time, up to this many more)
    up_hold_max: int = 60
    interval_s: float = 1.0
    #: the learner's REMB estimate below this share of what its level needs is a bad sample
    remb_margin: float = 0.85
    #: REMB is ignored this long after the learner connects (browsers start from a default
    #: estimate and settle on the measured rate after a few seconds)
    remb_settle_s: float = 6.0


@dataclass(slots=True)
class LadderState:
    bad: int = 0
    good: int = 0
    #: good samples needed on top of ``up_after`` (grows after failed steps up: no flapping)
    hold: int = 0
    #: samples since the last automatic step up (None: none recently)
    since_up: int | None = None

    def moved(self, policy: LadderPolicy, direction: int) -> LadderState:
        """The state after a step: -1 down, +1 up (automatic), 0 the learner's own choice."""
        hold = self.hold
        if direction < 0 and self.since_up is not None and self.since_up <= 2 * policy.up_after:
            hold = min(max(2 * hold, policy.up_after), policy.up_hold_max)
        elif direction == 0:
            hold = 0
        return LadderState(hold=hold, since_up=0 if direction > 0 else None)

    def sample(
        self,
        policy: LadderPolicy,
        loss: float,
        rtt_s: float,
        estimate_bps: float | None = None,
        need_bps: float = 0.0,
    ) -> tuple[int, str]:
        """Feed one sample; returns (-1 down | 0 stay | +1 up, reason).

        ``estimate_bps`` is the learner's own bandwidth estimate (REMB) when there is a usable
        one, ``need_bps`` what its level receives: an estimate short of it is a bad sample. An
        estimate only ever moves a learner down: a browser's estimate hardly exceeds what it
        receives, so it cannot tell that a level up would fit.
        """
        if self.since_up is not None:
            self.since_up += 1
            if self.since_up > 6 * policy.up_after:  # the step up held: forget the failures
                self.since_up, self.hold = None, 0
        short = estimate_bps is not None and estimate_bps < need_bps * policy.remb_margin
        if loss >= policy.down_loss or rtt_s >= policy.down_rtt_s or short:
            self.bad += 1
            self.good = 0
            if self.bad >= policy.down_after:
                self.bad = 0
                if loss >= policy.down_loss:
                    what = f"loss {loss:.0%}"
                elif rtt_s >= policy.down_rtt_s:
                    what = f"rtt {rtt_s:.2f} s"
                else:
                    what = f"estimate {estimate_bps or 0:.0f} bit/s < {need_bps:.0f}"
                return -1, what
        elif loss <= policy.up_loss and rtt_s <= policy.up_rtt_s:
            self.good += 1
            self.bad = 0
            if self.good >= policy.up_after + self.hold:
                self.good = 0
                return 1, "recovered"
        else:
            self.bad = self.good = 0
        return 0, ""
