"""docs/protocol.md documents every message type the code knows."""

from pathlib import Path

from appliance.live import protocol as p
from appliance.live.dispatch import Dispatcher
from appliance.live.handlers import register_all

DOC = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text(encoding="utf-8")


def test_every_message_type_is_documented() -> None:
    d = Dispatcher()
    register_all(d)
    types = {p.tag_of(c) for c in (*p.CLIENT_MESSAGES, *p.SERVER_MESSAGES)}
    types |= set(d.message_types())
    missing = sorted(t for t in types if f"### `{t}`" not in DOC)
    assert not missing, f"not in docs/protocol.md: {missing}"
    assert set(d.message_types()) == {p.tag_of(c) for c in p.CLIENT_MESSAGES}


def test_media_names_are_free() -> None:
    d = Dispatcher()
    register_all(d)
    assert not [t for t in d.message_types() if t.startswith("media_")]


def test_js_client_has_a_helper_for_every_client_message() -> None:
    js = (Path(__file__).parent.parent / "appliance/web/static/js/protocol.js").read_text()
    missing = [p.tag_of(c) for c in p.CLIENT_MESSAGES if f'this.send("{p.tag_of(c)}"' not in js]
    assert not missing, f"no helper in protocol.js for {missing}"
