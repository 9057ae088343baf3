"""ICE networking: port range, interface, announced address, STUN/TURN settings."""

from __future__ import annotations

import re

import pytest

from appliance.media import MediaError, MediaServer, turn_credentials
from appliance.media.network import announce_address, rtc_configuration
from appliance.settings import SettingsError, load_settings

from .peers import Learner, Trainer, wait_for


def _candidates(sdp: str) -> list[tuple[str, int, str]]:
    found = re.findall(r"^a=candidate:\S+ \d+ \S+ \d+ (\S+) (\d+) typ (\S+)", sdp, re.M)
    return [(host, int(port), kind) for host, port, kind in found]


async def test_media_sockets_stay_in_the_port_range_on_the_interface(make_server) -> None:
    server: MediaServer = make_server(media_port_min=41000, media_port_max=41009)
    room = server.room(1)
    trainer = Trainer()
    learners = [Learner(decode=False) for _ in range(3)]
    try:
        answer = await room.publish(await trainer.offer())
        await trainer.answer(answer)
        offers = []
        for i, learner in enumerate(learners):
            offer = await room.subscribe(i)
            offers.append(offer.sdp)
            await room.accept_answer(i, await learner.answer(offer.sdp))
        candidates = [c for sdp in [answer, *offers] for c in _candidates(sdp)]
        assert candidates, "no candidate in the relay's SDP"
        assert {host for host, _, _ in candidates} == {"127.0.0.1"}
        assert all(41000 <= port <= 41009 for _, port, _ in candidates), candidates
        assert len({port for _, port, _ in candidates}) == 4  # one port per connection
        await wait_for(lambda: all(lr.frames["video"] >= 3 for lr in learners))
    finally:
        for peer in (trainer, *learners):
            await peer.close()
        await server.close()


async def test_a_full_port_range_fails_the_connection_not_the_server(make_server) -> None:
    server: MediaServer = make_server(media_port_min=41010, media_port_max=41010)
    room = server.room(1)
    try:
        first = await room.subscribe(1)
        assert {p for _, p, _ in _candidates(first.sdp)} == {41010}
        with pytest.raises(MediaError) as err:
            await room.subscribe(2)  # no port left: a clear refusal, the others unaffected
        assert err.value.code == "no_media_port"
        assert "41010-41010" in err.value.message
        assert room.learner_ids == (1,)
    finally:
        await server.close()


async def test_announced_public_address_replaces_host_candidates(make_server) -> None:
    server: MediaServer = make_server(media_public_address="203.0.113.7")
    try:
        offer = await server.room(1).subscribe(1)
        assert {h for h, _, _ in _candidates(offer.sdp)} == {"203.0.113.7"}
        assert "c=IN IP4 203.0.113.7" in offer.sdp
    finally:
        await server.close()


def test_announce_address_keeps_other_candidates() -> None:
    sdp = (
        "c=IN IP4 10.0.0.2\r\n"
        "a=candidate:1 1 udp 2130706431 10.0.0.2 40000 typ host\r\n"
        "a=candidate:2 1 udp 1694498815 198.51.100.1 40000 typ srflx raddr 10.0.0.2 rport 40000\r\n"
    )
    out = announce_address(sdp, "203.0.113.7")
    assert "203.0.113.7 40000 typ host" in out
    assert "198.51.100.1 40000 typ srflx raddr 10.0.0.2" in out
    assert announce_address(sdp, "") == sdp


def test_turn_credentials_follow_coturn_use_auth_secret() -> None:
    # Expected values computed with openssl:
    #   echo -n "1700000000:alice" | openssl dgst -sha1 -hmac s3cret -binary | base64
    assert turn_credentials("s3cret", 0, "alice", now=1700000000) == (
        "1700000000:alice",
        "TtElzSjT0GdnTQ9xdcRNxx96yQs=",
    )
    assert turn_credentials("s3cret", 3600, now=1700000000) == (
        "1700003600",
        "hkHv/K58ZdACCJ9F4MWT46M317I=",
    )


def test_ice_servers_come_only_from_settings(tmp_path) -> None:
    bare = MediaServer(load_settings(env={}, data_dir=str(tmp_path)))
    assert bare.ice_servers() == []
    # aiortc's default would be a public Google STUN server: always explicit, even empty.
    assert bare.new_peer_connection
    assert rtc_configuration("", "", "", 60).iceServers == []
    configured = MediaServer(
        load_settings(
            env={},
            data_dir=str(tmp_path),
            stun_url="stun:box.example.org:3478",
            turn_url="turns:box.example.org:443?transport=tcp",
            turn_secret="s3cret",
            turn_ttl_s=600,
        )
    )
    stun, turn = configured.ice_servers("learner-7")
    assert stun == {"urls": "stun:box.example.org:3478"}
    assert turn["urls"] == "turns:box.example.org:443?transport=tcp"
    assert turn["username"].endswith(":learner-7")
    config = rtc_configuration("stun:s:3478", "turn:t:3478", "s3cret", 600)
    assert [s.urls for s in config.iceServers] == ["stun:s:3478", "turn:t:3478"]


def test_turn_udp_then_turn_over_tls_on_443_with_the_same_credentials(tmp_path) -> None:
    """What the roles write: TURN over UDP first, then TURN over TLS on the HTTPS port."""
    udp = "turn:classroom.example.org:3478?transport=udp"
    tls = "turns:turn.classroom.example.org:443?transport=tcp"
    server = MediaServer(
        load_settings(
            env={}, data_dir=str(tmp_path), turn_url=f"{udp}, {tls}", turn_secret="s3cret"
        )
    )
    first, second = server.ice_servers("learner-7")
    assert (first["urls"], second["urls"]) == (udp, tls)
    assert first["username"] == second["username"] and first["username"].endswith(":learner-7")
    assert first["credential"] == second["credential"]
    expiry = int(first["username"].split(":")[0])
    assert turn_credentials("s3cret", 0, "learner-7", now=expiry)[1] == first["credential"]
    # aiortc (the relay's own side) takes the first TURN server it supports: UDP.
    from aiortc.rtcicetransport import connection_kwargs

    kwargs = connection_kwargs(rtc_configuration("", f"{udp},{tls}", "s3cret", 60).iceServers)
    assert kwargs["turn_server"] == ("classroom.example.org", 3478)
    assert kwargs["turn_ssl"] is False


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"media_interface": "eth0"}, "'media_interface': 'eth0'"),
        ({"media_public_address": "box.example.org"}, "'media_public_address'"),
        ({"media_port_min": 40000}, "'media_port_min'"),
        ({"media_port_min": 500, "media_port_max": 600}, "'media_port_min'"),
        ({"media_port_min": 41000, "media_port_max": 40000}, "'media_port_min'"),
        ({"stun_url": "stun.example.org"}, "'stun_url'"),
        ({"turn_url": "turn:t:3478"}, "'turn_secret'"),
        ({"turn_url": "turn:t:3478,turnz:t:443", "turn_secret": "x"}, "'turnz:t:443'"),
        ({"media_max_learners_per_room": 0}, "'media_max_learners_per_room'"),
        ({"media_max_rooms": 0}, "'media_max_rooms'"),
    ],
)
def test_bad_media_settings_are_named(overrides: dict, named: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(env={}, **overrides)
    assert named in str(err.value)
