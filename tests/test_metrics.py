"""Metrics layer: event counters, scrape-time collectors and the capacity model.

Every test reads values from its own fresh CollectorRegistry.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from appliance.metrics import (
    CapacityModel,
    CpuSampler,
    CpuUsage,
    DocumentsSource,
    LiveRoomsSource,
    MediaSource,
    Metrics,
    RoomMedia,
    capacity_model,
)
from appliance.metrics.capacity import WorkerLoad
from appliance.metrics.operator import overview
from appliance.metrics.sources import MediaWorker
from appliance.settings import load_settings
from tests.metrics_fakes import FakeDocuments, FakeLive, FakeMedia, a_class

# relay_cores above the test machines' cores: these tests check the machine's budget.
MODEL = CapacityModel(
    learner_cpu=0.002, video_track_cpu=0.015, planned_video_tracks=2, cpu_target=0.8, relay_cores=8
)


class FixedCpu(CpuSampler):
    """A sampler reporting a chosen usage, so capacity figures are exact."""

    def __init__(self, usage: CpuUsage) -> None:
        super().__init__()
        self._usage = usage

    def usage(self) -> CpuUsage:
        return self._usage


IDLE = CpuUsage(2, 0.0, 0.0)


def new_metrics(cpu: CpuUsage = IDLE) -> tuple[Metrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return Metrics(registry, MODEL, FixedCpu(cpu)), registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_known_label_children_start_at_zero() -> None:
    _, r = new_metrics()
    for direction in ("received", "sent"):
        assert value(r, "estrade_rtcp_pli_total", direction=direction) == 0
        assert value(r, "estrade_rtcp_nack_total", direction=direction) == 0
    assert value(r, "estrade_webrtc_failures_total", stage="ice") == 0
    assert value(r, "estrade_webrtc_failures_total", stage="dtls") == 0
    assert value(r, "estrade_webrtc_connections_total", path="relayed") == 0
    assert value(r, "estrade_webrtc_connections_total", path="direct") == 0
    assert value(r, "estrade_document_uploads_total") == 0
    assert value(r, "estrade_join_to_first_frame_seconds_count") == 0


def test_room_opened_creates_the_cohort_series_at_zero() -> None:
    m, r = new_metrics()
    assert value(r, "estrade_chat_messages_total", cohort_id="3") is None
    m.room_opened(3)
    for name in (
        "estrade_chat_messages_total",
        "estrade_questions_total",
        "estrade_poll_votes_total",
        "estrade_reactions_total",
        "estrade_attendance_confirmations_total",
        "estrade_learner_rtt_seconds_count",
        "estrade_learner_loss_ratio_count",
    ):
        assert value(r, name, cohort_id="3") == 0, name


def test_classroom_events_count_per_cohort() -> None:
    m, r = new_metrics()
    m.chat_message(3)
    m.chat_message(3)
    m.chat_message(4)
    m.question(3)
    m.poll_vote(3)
    m.reaction(3)
    m.reaction(3)
    m.attendance_confirmed(4)
    assert value(r, "estrade_chat_messages_total", cohort_id="3") == 2
    assert value(r, "estrade_chat_messages_total", cohort_id="4") == 1
    assert value(r, "estrade_questions_total", cohort_id="3") == 1
    assert value(r, "estrade_poll_votes_total", cohort_id="3") == 1
    assert value(r, "estrade_reactions_total", cohort_id="3") == 2
    assert value(r, "estrade_attendance_confirmations_total", cohort_id="4") == 1


def test_media_and_document_events() -> None:
    m, r = new_metrics()
    m.pli("received")
    m.pli("sent", 3)
    m.nack("received", 5)
    m.ice_failed()
    m.dtls_failed()
    m.dtls_failed()
    m.connection_established(relayed=True)
    m.connection_established(relayed=False)
    m.connection_established(relayed=False)
    m.first_frame(1.2)
    m.keyframe_waited(0.3)
    m.learner_report(3, rtt_s=0.08, loss_ratio=0.01)
    m.learner_report(3, rtt_s=0.6, loss_ratio=1.7)  # clamped to 1
    m.document_uploaded(1000)
    m.document_downloaded(400)
    m.document_downloaded(600)
    assert value(r, "estrade_rtcp_pli_total", direction="received") == 1
    assert value(r, "estrade_rtcp_pli_total", direction="sent") == 3
    assert value(r, "estrade_rtcp_nack_total", direction="received") == 5
    assert value(r, "estrade_webrtc_failures_total", stage="ice") == 1
    assert value(r, "estrade_webrtc_failures_total", stage="dtls") == 2
    assert value(r, "estrade_webrtc_connections_total", path="relayed") == 1
    assert value(r, "estrade_webrtc_connections_total", path="direct") == 2
    assert value(r, "estrade_join_to_first_frame_seconds_sum") == pytest.approx(1.2)
    assert value(r, "estrade_join_to_first_frame_seconds_bucket", le="1.5") == 1
    assert value(r, "estrade_join_to_first_frame_seconds_bucket", le="1.0") == 0
    assert value(r, "estrade_keyframe_wait_seconds_count") == 1
    assert value(r, "estrade_learner_rtt_seconds_bucket", cohort_id="3", le="0.1") == 1
    assert value(r, "estrade_learner_rtt_seconds_count", cohort_id="3") == 2
    assert value(r, "estrade_learner_loss_ratio_sum", cohort_id="3") == pytest.approx(1.01)
    assert value(r, "estrade_document_uploads_total") == 1
    assert value(r, "estrade_document_upload_bytes_total") == 1000
    assert value(r, "estrade_document_downloads_total") == 2
    assert value(r, "estrade_document_download_bytes_total") == 1000


def test_bad_direction_is_refused_and_adds_no_series() -> None:
    m, r = new_metrics()
    with pytest.raises(ValueError, match="direction"):
        m.pli("sideways")  # type: ignore[arg-type]
    assert b"sideways" not in generate_latest(r)


def test_websocket_gauge_goes_up_and_down_even_on_error() -> None:
    m, r = new_metrics()
    with m.websocket_open():
        with m.websocket_open():
            assert value(r, "estrade_websocket_connections") == 2
        assert value(r, "estrade_websocket_connections") == 1
    with pytest.raises(RuntimeError), m.websocket_open():
        raise RuntimeError("socket died")
    assert value(r, "estrade_websocket_connections") == 0


def test_fakes_implement_the_protocols() -> None:
    assert isinstance(FakeLive(), LiveRoomsSource)
    assert isinstance(FakeMedia(), MediaSource)
    assert isinstance(FakeDocuments(), DocumentsSource)


def test_without_sources_the_state_metrics_are_empty_but_present() -> None:
    _, r = new_metrics()
    assert value(r, "estrade_rooms_open") == 0
    assert value(r, "estrade_rooms_live") == 0
    assert value(r, "estrade_capacity_learners") == 50  # 2 cores x 0.8 / 0.032
    assert value(r, "estrade_documents_stored") is None  # no documents package: no figure


def test_collector_reads_the_sources_at_each_scrape() -> None:
    m, r = new_metrics()
    live, media, docs = a_class(cohort_id=7, learners=12)
    m.attach(live=live, media=media, documents=docs)
    assert value(r, "estrade_rooms_open") == 2
    assert value(r, "estrade_rooms_live") == 1
    assert value(r, "estrade_room_started", cohort_id="7") == 1
    assert value(r, "estrade_room_started", cohort_id="8") == 0
    p = "estrade_participants"
    assert value(r, p, cohort_id="7", role="learner", state="in_class") == 9
    assert value(r, p, cohort_id="7", role="learner", state="low_bandwidth") == 2
    assert value(r, p, cohort_id="7", role="learner", state="waiting") == 1
    assert value(r, p, cohort_id="7", role="trainer", state="in_class") == 1
    assert value(r, p, cohort_id="7", role="trainer", state="waiting") == 0  # all combos exported
    assert value(r, p, cohort_id="8", role="learner", state="waiting") == 3
    assert value(r, "estrade_media_tracks_published", cohort_id="7", kind="video") == 2
    assert value(r, "estrade_media_learners_subscribed", cohort_id="7") == 11
    assert value(r, "estrade_media_forwarded_bytes_total", cohort_id="7") == 5_000_000
    assert value(r, "estrade_media_forwarded_packets_total", cohort_id="7") == 4_000
    assert value(r, "estrade_media_connections", cohort_id="7", path="relayed") == 2
    assert value(r, "estrade_media_connections", cohort_id="7", path="direct") == 9
    assert value(r, "estrade_room_learner_rtt_seconds", cohort_id="7", stat="max") == 0.4
    assert value(r, "estrade_room_learner_loss_ratio", cohort_id="7", stat="mean") == (
        pytest.approx(0.4 / 11)
    )
    assert value(r, "estrade_documents_stored") == 4
    assert value(r, "estrade_documents_stored_bytes") == 3_000_000
    assert value(r, "estrade_metrics_source_up", source="live") == 1

    # Nothing is cached between scrapes: the next scrape sees the new state.
    live.rooms.pop()
    docs.count = 5
    assert value(r, "estrade_rooms_open") == 1
    assert value(r, "estrade_documents_stored") == 5
    assert value(r, "estrade_participants", cohort_id="8", role="learner", state="waiting") is None


def test_a_broken_source_does_not_break_the_scrape(caplog: pytest.LogCaptureFixture) -> None:
    m, r = new_metrics()
    live, media, _ = a_class()
    live.fail = True
    m.attach(live=live, media=media)
    text = generate_latest(r).decode()
    assert "estrade_capacity_learners" in text
    assert value(r, "estrade_metrics_source_up", source="live") == 0
    assert value(r, "estrade_metrics_source_up", source="media") == 1
    assert value(r, "estrade_media_learners_subscribed", cohort_id="7") == 11
    assert "live source broke" in caplog.text


def test_capacity_on_an_idle_machine() -> None:
    est = MODEL.estimate(CpuUsage(cores=4, host_busy_cores=0.0, process_busy_cores=0.0), [])
    assert est.budget_cores == pytest.approx(3.2)
    assert est.marginal_cores == pytest.approx(0.032)
    assert est.learners == 100


def test_capacity_subtracts_other_load_and_current_learners() -> None:
    cpu = CpuUsage(cores=4, host_busy_cores=1.5, process_busy_cores=0.5)
    # 30 learners on 2 video tracks: 30 x 0.032 = 0.96 cores modelled > 0.5 measured.
    est = MODEL.estimate(cpu, [(30, 2)])
    assert est.other_cores == pytest.approx(1.0)
    assert est.relay_model_cores == pytest.approx(0.96)
    assert est.used_cores == pytest.approx(0.96)
    assert est.learners == int((3.2 - 1.0 - 0.96) / 0.032)  # 38


def test_capacity_uses_measured_cpu_when_above_the_model() -> None:
    cpu = CpuUsage(cores=2, host_busy_cores=1.2, process_busy_cores=1.2)
    est = MODEL.estimate(cpu, [(5, 1)])  # model 5 x 0.017 = 0.085 < 1.2 measured
    assert est.used_cores == pytest.approx(1.2)
    assert est.learners == int((1.6 - 1.2) / 0.032)  # 12


def test_capacity_is_bounded_by_the_one_core_a_process_relays_on() -> None:
    one = CapacityModel(learner_cpu=0.002, video_track_cpu=0.015, planned_video_tracks=2,
                        cpu_target=0.8)  # fmt: skip
    est = one.estimate(CpuUsage(cores=4, host_busy_cores=0.0, process_busy_cores=0.0), [])
    assert est.budget_cores == pytest.approx(3.2)  # the machine could take 100
    assert est.learners == int(0.8 / 0.032)  # one event loop takes 25
    busy = one.estimate(CpuUsage(cores=4, host_busy_cores=0.5, process_busy_cores=0.5), [])
    assert busy.learners == int((0.8 - 0.5) / 0.032)  # 9
    single = one.estimate(CpuUsage(cores=1, host_busy_cores=0.0, process_busy_cores=0.0), [])
    assert single.learners == 25


def test_capacity_never_negative_and_room_without_video_counts_planned_tracks() -> None:
    full = MODEL.estimate(CpuUsage(2, 2.0, 0.1), [])
    assert full.learners == 0
    est = MODEL.estimate(CpuUsage(2, 0.0, 0.0), [(10, 0)])
    assert est.relay_model_cores == pytest.approx(10 * 0.032)


def test_capacity_gauge_follows_learners_joining() -> None:
    m, r = new_metrics(CpuUsage(cores=2, host_busy_cores=0.0, process_busy_cores=0.0))
    # 12 learners in a class on 2 video tracks, 3 waiting in a room without video yet (counted
    # with the 2 planned tracks).
    live, media, _ = a_class(cohort_id=7, learners=12)
    m.attach(live=live, media=media)
    assert value(r, "estrade_capacity_learners") == 50 - 15
    assert value(r, "estrade_relay_model_cores") == pytest.approx(15 * 0.032)


def test_capacity_model_comes_from_settings() -> None:
    s = load_settings(
        env={"ESTRADE_CAPACITY_VIDEO_TRACK_CPU": "0.02", "ESTRADE_CAPACITY_CPU_TARGET": "0.5"}
    )
    model = capacity_model(s)
    assert model.video_track_cpu == 0.02
    assert model.cpu_target == 0.5
    assert model.planned_video_tracks == 2


def test_cpu_sampler_measures_host_and_process(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3\n")
    sampler = CpuSampler(proc_stat=stat)
    sampler.sample()
    end = time.process_time() + 0.05
    while time.process_time() < end:  # burn a little CPU so this process shows up
        pass
    # Between the two reads the host was busy half the time: 100 busy ticks out of 200.
    stat.write_text("cpu  150 0 150 900 0 0 0 0 0 0\ncpu0 1 2 3\n")
    usage = sampler.usage()
    assert usage.cores == len(os.sched_getaffinity(0))
    assert usage.process_busy_cores > 0
    assert usage.host_busy_cores == pytest.approx(
        max(usage.process_busy_cores, 0.5 * (os.cpu_count() or 1))
    )


async def test_loop_monitor_records_lag_of_a_blocked_loop() -> None:
    m, r = new_metrics()
    from appliance.metrics.looplag import LoopMonitor

    ticks: list[int] = []
    monitor = LoopMonitor(m.loop_lag, interval=0.05, on_tick=lambda: ticks.append(1))
    monitor.start()
    await asyncio.sleep(0.01)
    time.sleep(0.3)  # noqa: ASYNC251 - block the loop on purpose: the wake-up is ~0.25 s late
    await asyncio.sleep(0.02)
    await monitor.stop()
    lag = value(r, "estrade_event_loop_lag_seconds")
    assert lag is not None and lag >= 0.2
    assert ticks


def test_operator_overview_shape() -> None:
    m, _ = new_metrics()
    live, media, docs = a_class(cohort_id=7, learners=12)
    m.attach(live=live, media=media, documents=docs)
    out = overview(m.snapshot())
    room = next(x for x in out.rooms if x.cohort_id == 7)
    assert room.started and room.learners == 12
    assert room.send_bitrate_bps == 13_200_000
    assert room.rtt_max_s == 0.4 and room.loss_max == 0.2
    assert room.relayed_connections == 2
    assert room.paths == {"direct": 9, "turn_udp": 1, "turn_tls": 1}
    waiting = next(x for x in out.rooms if x.cohort_id == 8)
    assert not waiting.started and waiting.rtt_mean_s is None
    assert out.capacity.learners == 50 - 15  # 12 + 3 waiting learners
    assert out.documents is not None and out.documents.count == 4


def test_cpu_sampler_counts_the_media_workers_cpu_as_the_process(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3\n")
    workers = {0: 10.0, 1: 5.0}
    sampler = CpuSampler(proc_stat=stat, workers_cpu=lambda: dict(workers))
    sampler.sample()
    time.sleep(0.1)
    workers[0] += 1.0  # a second of worker 0's CPU in ~0.1 s (a busy many-core host)
    workers[1] = 0.2  # worker 1 restarted: its new process counts from 0
    workers[2] = 3.0  # a worker not seen before counts from its first sample
    stat.write_text("cpu  150 0 150 900 0 0 0 0 0 0\ncpu0 1 2 3\n")
    usage = sampler.usage()
    assert 2.0 < usage.process_busy_cores < 11
    assert usage.host_busy_cores >= usage.process_busy_cores
    assert 2.0 < usage.worker_busy_cores[0] < 11
    assert usage.worker_busy_cores[1] == 0.0 and usage.worker_busy_cores[2] == 0.0


def test_capacity_counts_every_media_worker_s_headroom() -> None:
    one = CapacityModel(learner_cpu=0.002, video_track_cpu=0.015, planned_video_tracks=2,
                        cpu_target=0.8)  # fmt: skip
    idle = CpuUsage(cores=4, host_busy_cores=0.0, process_busy_cores=0.0)
    workers = [WorkerLoad(k, True, 0, 0.0) for k in range(3)]
    est = one.estimate(idle, [], workers)
    # Each worker's loop takes 25 (0.8 / 0.032): three take 75, within the machine's 100.
    assert est.per_worker == {0: 25, 1: 25, 2: 25} and est.learners == 75
    # Four workers on a 2-core host: the machine (1.6 cores) bounds it, not the workers.
    two = CpuUsage(cores=2, host_busy_cores=0.0, process_busy_cores=0.0)
    est = one.estimate(two, [], [WorkerLoad(k, True, 0, 0.0) for k in range(4)])
    assert sum(est.per_worker.values()) == 100 and est.learners == 50
    # Worker 0 is busy (measured), worker 1 carries a modelled class, worker 2 is down.
    cpu = CpuUsage(cores=4, host_busy_cores=0.5, process_busy_cores=0.5,
                   worker_busy_cores={0: 0.4, 1: 0.05})  # fmt: skip
    loads = [WorkerLoad(0, True, 0, 0.4), WorkerLoad(1, True, 10, 0.05), WorkerLoad(2, False, 0, 0)]
    est = one.estimate(cpu, [(10, 2)], loads)
    assert est.per_worker == {
        0: int((0.8 - 0.4) / 0.032),  # 12
        1: int((0.8 - 10 * 0.032) / 0.032),  # 15: 10 learners modelled at 0.32 > 0.05 measured
        2: 0,  # down: nothing fits there until it is back
    }
    assert est.learners == 12 + 15


def test_capacity_gauge_counts_each_media_worker(tmp_path: Path) -> None:
    cpu = CpuUsage(cores=8, host_busy_cores=0.2, process_busy_cores=0.2,
                   worker_busy_cores={0: 0.16, 1: 0.0})  # fmt: skip
    m, r = new_metrics(cpu)

    class Workers:
        def media_stats(self) -> list[RoomMedia]:
            return []

        def media_workers(self) -> list[MediaWorker]:
            return [MediaWorker(k, True, 0, 0, 1.0, 0.003, k) for k in range(2)]

    m.attach(media=Workers())
    assert value(r, "estrade_media_worker_capacity_learners", worker="0") == 20  # 0.64 / 0.032
    assert value(r, "estrade_media_worker_capacity_learners", worker="1") == 25
    assert value(r, "estrade_capacity_learners") == 45
    assert value(r, "estrade_media_worker_cpu_busy_cores", worker="0") == pytest.approx(0.16)
    assert value(r, "estrade_media_worker_loop_lag_seconds", worker="1") == pytest.approx(0.003)
    assert value(r, "estrade_media_worker_restarts_total", worker="1") == 1
    out = overview(m.snapshot(), loop_lag_s=0.002)
    assert [(w.worker, w.capacity_learners, w.cpu_busy_cores) for w in out.workers] == [
        (0, 20, pytest.approx(0.16)),
        (1, 25, 0.0),
    ]
    assert out.capacity.learners == 45 and out.loop_lag_s == 0.002


def test_capacity_model_relays_on_one_core_per_media_worker(tmp_path: Path) -> None:
    default = capacity_model(load_settings(env={}, data_dir=tmp_path))
    in_process = capacity_model(load_settings(env={}, data_dir=tmp_path, media_workers=0))
    three = capacity_model(load_settings(env={}, data_dir=tmp_path, media_workers=3))
    cores = float(len(os.sched_getaffinity(0)))
    assert (default.relay_cores, in_process.relay_cores, three.relay_cores) == (cores, 1.0, 3.0)
