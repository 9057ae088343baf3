"""docs/protocol.md documents every message type the code knows."""

from pathlib import Path

from appliance.live import live_plugin
from appliance.live import protocol as p
from appliance.live.dispatch import Dispatcher
from appliance.live.handlers import register_all
from appliance.live.media import MediaBridge
from appliance.live.recording import LiveRecordings
from appliance.settings import load_settings

DOC = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text(encoding="utf-8")


CLIENT = (*p.CLIENT_MESSAGES, *p.MEDIA_CLIENT_MESSAGES, *p.RECORDING_CLIENT_MESSAGES)
SERVER = (*p.SERVER_MESSAGES, *p.MEDIA_SERVER_MESSAGES, *p.RECORDING_SERVER_MESSAGES)


def app_dispatcher(tmp_path: Path) -> Dispatcher:
    """The dispatcher as the app builds it: every family plus the media bridge."""
    _, registry = live_plugin(load_settings(env={}, data_dir=str(tmp_path)))
    LiveRecordings(registry, MediaBridge(registry))
    return registry.dispatcher


def test_every_message_type_is_documented(tmp_path: Path) -> None:
    d = app_dispatcher(tmp_path)
    types = {p.tag_of(c) for c in (*CLIENT, *SERVER)}
    types |= set(d.message_types())
    missing = sorted(t for t in types if f"### `{t}`" not in DOC)
    assert not missing, f"not in docs/protocol.md: {missing}"
    assert set(d.message_types()) == {p.tag_of(c) for c in CLIENT}


def test_media_messages_are_only_the_bridge_s() -> None:
    d = Dispatcher()
    register_all(d)
    assert not [t for t in d.message_types() if t.startswith("media_")]
    assert all(p.tag_of(c).startswith("media_") for c in p.MEDIA_CLIENT_MESSAGES)


def test_js_client_has_a_helper_for_every_client_message() -> None:
    js = (Path(__file__).parent.parent / "appliance/web/static/js/protocol.js").read_text()
    missing = [
        p.tag_of(c)
        for c in CLIENT
        if f'this.request("{p.tag_of(c)}"' not in js and f'this.send("{p.tag_of(c)}"' not in js
    ]
    assert not missing, f"no helper in protocol.js for {missing}"


def test_js_client_types_every_server_message() -> None:
    """protocol.js's ServerMessages typedef (what tsc checks the pages against) names them all."""
    js = (Path(__file__).parent.parent / "appliance/web/static/js/protocol.js").read_text()
    typedef = js[js.index("@typedef {{\n *   welcome") : js.index("}} ServerMessages")]
    missing = [p.tag_of(c) for c in SERVER if f" *   {p.tag_of(c)}: " not in typedef]
    assert not missing, f"not typed in protocol.js's ServerMessages: {missing}"
