"""The languages (pure): Accept-Language negotiation, the catalogues' completeness, names, and
the CAP series' message types."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hub.i18n import load_names, negotiate
from hub.i18n.catalog import catalogue
from hub.i18n.names import NamesError
from hub.store.cap_alerts import Revision, current, next_msg_type

HAN = re.compile(r"[\u4e00-\u9fff]")


@pytest.mark.parametrize(
    ("header", "language"),
    [
        (None, "en-US"),
        ("zh-CN", "zh-CN"),
        ("zh", "zh-CN"),
        ("en;q=0.5, zh-Hans;q=0.8", "zh-CN"),
        ("zh-TW", "en-US"),  # no traditional Chinese catalogue: the default
        ("fr, zh-CN;q=0.1", "zh-CN"),
        ("zh-CN;q=0, en", "en-US"),
        ("zh-CN;q=abc", "en-US"),
        ("*", "en-US"),
    ],
)
def test_negotiate(header: str | None, language: str) -> None:
    assert negotiate(header) == language


def test_catalogues_translate_every_message() -> None:
    en, zh = catalogue("en-US"), catalogue("zh-CN")
    assert set(en) == set(zh) and len(en) > 30
    for message_id, text in zh.items():
        fields = set(re.findall(r"{(\w+)}", en[message_id]))
        assert set(re.findall(r"{(\w+)}", text)) == fields, message_id
        if message_id.startswith(("status.", "cap.headline", "feed.")):
            assert HAN.search(text), message_id


def test_names_shipped_and_extended(tmp_path: Path) -> None:
    names = load_names()
    for code in ("flood", "fire", "gas_leak", "water_level", "medical"):
        assert HAN.search(names.name("event_types", code, "zh-CN")), code
    for code in ("Geo", "Met", "Safety", "Fire", "Health", "Other"):
        assert HAN.search(names.name("categories", code, "zh-CN")), code
    assert names.name("communities", "Glen Park", "zh-CN") == "Glen Park"
    assert names.name("event_types", "sinkhole", "en-US") == "Sinkhole"
    extra = tmp_path / "names.toml"
    extra.write_text('[event_types.sinkhole]\nen = "Sinkhole"\nzh-CN = "地面塌陷"\n')
    assert load_names(extra).name("event_types", "sinkhole", "zh-CN") == "地面塌陷"
    extra.write_text('[event_types.sinkhole]\nenglish = "Sinkhole"\n')
    with pytest.raises(NamesError, match="english"):
        load_names.__wrapped__(extra)


def _rev(n: int, msg_type: str, digest: str) -> Revision:
    return Revision(None, n, msg_type, datetime(2036, 1, 1, tzinfo=UTC), digest)  # type: ignore[arg-type]


def test_series_message_types() -> None:
    assert next_msg_type([], "a", cancel=False) == "Alert"
    assert next_msg_type([], "a", cancel=True) == "Alert"  # a refuted rumour told once
    one = [_rev(1, "Alert", "a")]
    assert next_msg_type(one, "a", cancel=False) is None  # unchanged: the same message
    assert next_msg_type(one, "b", cancel=False) == "Update"
    assert next_msg_type(one, "b", cancel=True) == "Cancel"
    done = [*one, _rev(2, "Cancel", "b")]
    assert next_msg_type(done, "c", cancel=True) == "Cancel"
    assert next_msg_type(done, "c", cancel=False) == "Alert"  # warns anew: a new run
    again = [*done, _rev(3, "Alert", "c"), _rev(4, "Update", "d")]
    latest, earlier = current(again)
    assert latest.revision == 4 and [r.revision for r in earlier] == [3]
