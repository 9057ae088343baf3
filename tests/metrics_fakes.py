"""Small in-memory implementations of the metrics sources (our own Protocols, not a library)."""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.metrics import (
    DocumentTotals,
    LearnerLink,
    RoomMedia,
    RoomStats,
)


@dataclass
class FakeLive:
    rooms: list[RoomStats] = field(default_factory=list)
    fail: bool = False

    def room_stats(self) -> list[RoomStats]:
        if self.fail:
            raise RuntimeError("live source broke")
        return list(self.rooms)


@dataclass
class FakeMedia:
    rooms: list[RoomMedia] = field(default_factory=list)

    def media_stats(self) -> list[RoomMedia]:
        return list(self.rooms)


@dataclass
class FakeDocuments:
    count: int = 0
    size: int = 0

    def document_totals(self) -> DocumentTotals:
        return DocumentTotals(self.count, self.size)


def a_class(cohort_id: int = 7, learners: int = 12) -> tuple[FakeLive, FakeMedia, FakeDocuments]:
    """A started class: a trainer, ``learners`` learners (two on low bandwidth, one waiting)."""
    live = FakeLive(
        [
            RoomStats(
                cohort_id,
                started=True,
                participants={
                    ("trainer", "in_class"): 1,
                    ("learner", "in_class"): learners - 3,
                    ("learner", "low_bandwidth"): 2,
                    ("learner", "waiting"): 1,
                },
            ),
            RoomStats(cohort_id + 1, started=False, participants={("learner", "waiting"): 3}),
        ]
    )
    links = [LearnerLink(rtt_s=0.05, loss_ratio=0.0) for _ in range(learners - 3)]
    links += [
        LearnerLink(rtt_s=0.4, loss_ratio=0.2, relayed=True, path=path)
        for path in ("turn-udp", "turn-tls")
    ]
    media = FakeMedia(
        [
            RoomMedia(
                cohort_id,
                video_tracks=2,
                audio_tracks=1,
                learners_subscribed=learners - 1,
                bytes_forwarded=5_000_000,
                packets_forwarded=4_000,
                send_bitrate_bps=11 * 1_200_000.0,
                learners=links,
            )
        ]
    )
    return live, media, FakeDocuments(count=4, size=3_000_000)
