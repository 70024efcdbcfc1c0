"""The twin rules of core/twin.py: parsing with upstream's limits and reasons, the version
rules, and the exact payloads an app sees."""

from __future__ import annotations

import orjson
import pytest

from pykubeedge.core.device import merge_status_twins
from pykubeedge.core.twin import (
    MAX_PAYLOAD,
    REASON_KEY,
    REASON_NO_TWIN,
    REASON_UNMARSHAL,
    REASON_VALUE,
    Deal,
    Desired,
    MsgTwin,
    TwinError,
    TwinValue,
    TwinVersion,
    apply_desired,
    apply_twin_update,
    delta_payload,
    document_payload,
    get_payload,
    merge_sync,
    msg_twin_from_json,
    parse_twin_update,
    result_payload,
    sync_payload,
    validate_value,
)
from pykubeedge.edge.devicetwin.dao import twin_from_row, twin_row

NOW = 1714550000123


def update(twin: object, event_id: str = "e1") -> bytes:
    return orjson.dumps({"event_id": event_id, "timestamp": 0, "twin": twin})


def reported(value: str, kind: str | None = "int") -> dict:
    t: dict = {"actual": {"value": value}}
    if kind is not None:
        t["metadata"] = {"type": kind}
    return t


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{not json", REASON_UNMARSHAL),
    (b'{"twin": []}', REASON_UNMARSHAL),
    (b'{"twin": {"t": {"actual": {"value": 25}}}}', REASON_UNMARSHAL),
    (b'{"event_id": 5, "twin": {}}', REASON_UNMARSHAL),
    (b'{"timestamp": 1.5, "twin": {}}', REASON_UNMARSHAL),
    (b'{"twin": {"t": {"optional": "yes"}}}', REASON_UNMARSHAL),
    (b'{"twin": {"t": {"actual_version": {"edge": "1"}}}}', REASON_UNMARSHAL),
    (b'{"twin": {"t": 5}}', REASON_UNMARSHAL),
    (b'[]', REASON_UNMARSHAL),
    (b'null', REASON_NO_TWIN),
    (b'{"event_id": "e"}', REASON_NO_TWIN),
    (b'{"twin": null}', REASON_NO_TWIN),
    (b'{"twin": {"bad key": {}}}', REASON_KEY),
    (b'{"twin": {"": {}}}', REASON_KEY),
    (orjson.dumps({"twin": {"k" * 129: {}}}), REASON_KEY),
    (b'{"twin": {"t": {"actual": {"value": "25 C"}}}}', REASON_VALUE),
    (b'{"twin": {"t": {"expected": {"value": "\\u00e9"}}}}', REASON_VALUE),
    (orjson.dumps({"twin": {"t": {"actual": {"value": "v" * 513}}}}), REASON_VALUE),
])
def test_bad_requests_are_400_with_upstream_reasons(payload: bytes, reason: str) -> None:
    with pytest.raises(TwinError) as err:
        parse_twin_update(payload)
    assert (err.value.code, err.value.reason) == (400, reason)


def test_limits_accept_their_maximum_and_go_keys_match_case_insensitively() -> None:
    req = parse_twin_update(orjson.dumps({"EVENT_ID": "x", "Twin": {
        "k" * 128: {"Actual": {"Value": "v" * 512}}, "a-_.,:/@#Z9": {"expected": {"value": ""}}}}))
    assert req.event_id == "x" and len(req.twin) == 2


def test_oversized_payload_is_refused_before_parsing() -> None:
    with pytest.raises(TwinError) as err:
        parse_twin_update(b" " * (MAX_PAYLOAD + 1))
    assert err.value.code == 400 and "at most 65536" in err.value.reason


def test_the_event_id_survives_a_validation_error() -> None:
    with pytest.raises(TwinError) as err:
        parse_twin_update(b'{"event_id": "e9", "twin": {"bad key": {}}}')
    assert err.value.event_id == "e9"


@pytest.mark.parametrize(("kind", "value", "ok"), [
    ("int", "-42", True), ("integer", "+7", True), ("int", "4.2", False), ("int", "1_0", False),
    ("int", "9223372036854775808", False), ("float", "1e3", True), ("float", "NaN", True),
    ("float", "1e400", False), ("float", "1_0", False), ("float", "abc", False),
    ("boolean", "true", True), ("boolean", "True", False), ("string", "x", True),
    ("", "x", True), ("deleted", "x", True), ("double", "1.0", False), ("bytes", "x", False),
])
def test_value_types(kind: str, value: str, ok: bool) -> None:
    assert (validate_value(kind, value) is None) is ok


def test_first_report_exact_result_and_sync() -> None:
    req = parse_twin_update(update({"temp": reported("25")}))
    change = apply_twin_update({}, req.twin, Deal.REST, NOW)
    assert orjson.loads(orjson.dumps(result_payload("e1", NOW, change.result))) == {
        "event_id": "e1", "timestamp": NOW, "twin": {"temp": {
            "actual": {"value": "25", "metadata": {"timestamp": NOW}}, "optional": True,
            "metadata": {"type": "int"}}}}
    assert sync_payload("s", NOW, change.sync)["twin"]["temp"]["actual_version"] == {
        "cloud": 0, "edge": 1}
    assert document_payload("e1", NOW, change.document)["twin"] == {"temp": {
        "last": None, "current": change.twins["temp"].to_json(False)}}
    assert change.added == {"temp"}


def test_second_report_counts_the_edge_version_and_shows_only_what_changed() -> None:
    first = apply_twin_update({}, parse_twin_update(update({"temp": reported("25")})).twin,
                              Deal.REST, NOW).twins
    change = apply_twin_update(first, {"temp": MsgTwin(actual=TwinValue("26"))}, Deal.REST,
                               NOW + 1)
    assert change.result["temp"].to_json() == {  # type: ignore[union-attr]
        "actual": {"value": "26", "metadata": {"timestamp": NOW + 1}}, "optional": True,
        "metadata": {"type": "int"}}
    assert change.twins["temp"].actual_version == TwinVersion(0, 2)
    assert first["temp"].actual.value == "25"  # type: ignore[union-attr]  # input untouched
    last, current = change.document["temp"]
    assert last.actual.value == "25" and current.actual.value == "26"  # type: ignore[union-attr]


def test_a_value_of_the_wrong_type_changes_nothing() -> None:
    twins = apply_twin_update({}, {"temp": MsgTwin(actual=TwinValue("1"), type="int")},
                              Deal.REST, NOW).twins
    with pytest.raises(TwinError) as err:
        apply_twin_update(twins, {"other": MsgTwin(actual=TwinValue("x")),
                                  "temp": MsgTwin(actual=TwinValue("abc"))}, Deal.REST, NOW)
    assert (err.value.code, err.value.reason) == (400, "the value is not int or integer")


def test_delete_of_an_optional_twin_and_get_hides_it() -> None:
    twins = apply_twin_update({}, {"t": MsgTwin(actual=TwinValue("1"))}, Deal.REST, NOW).twins
    change = apply_twin_update(twins, {"t": None}, Deal.REST, NOW)
    assert change.result == {"t": None}
    assert change.twins["t"].type == "deleted"
    assert change.document["t"][1] is None
    assert get_payload("g", NOW, change.twins) == {"event_id": "g", "timestamp": NOW, "twin": {}}


def test_delete_of_a_mandatory_twin_is_a_no_op_and_of_an_unknown_key_skipped() -> None:
    twins = apply_twin_update({}, {"t": MsgTwin(actual=TwinValue("1"), optional=False)},
                              Deal.REST, NOW).twins
    change = apply_twin_update(twins, {"t": None, "nope": None}, Deal.REST, NOW)
    assert not change.changed


def test_sync_version_rules() -> None:
    twins = {"t": MsgTwin(actual=TwinValue("1", 1), optional=True, type="string",
                          actual_version=TwinVersion(2, 3))}
    older = apply_twin_update(twins, {"t": MsgTwin(actual=TwinValue("0"),
                                                   actual_version=TwinVersion(1, 3))},
                              Deal.SYNC, NOW)
    assert older.conflicts == {"t": "version not allowed"} and not older.changed
    assert older.sync["t"].actual.value == "1"  # type: ignore[union-attr]
    conflict = apply_twin_update(twins, {"t": MsgTwin(actual=TwinValue("0"),
                                                      actual_version=TwinVersion(2, 2))},
                                 Deal.SYNC, NOW)
    assert conflict.conflicts == {"t": "not allowed to sync due to version conflict"}
    ok = apply_twin_update(twins, {"t": MsgTwin(actual=TwinValue("9"),
                                                actual_version=TwinVersion(3, 3))},
                           Deal.SYNC, NOW)
    assert ok.twins["t"].actual_version == TwinVersion(3, 3) and ok.result == {}
    nil = apply_twin_update(twins, {"t": MsgTwin(actual=TwinValue("9"))}, Deal.SYNC, NOW)
    assert nil.conflicts == {"t": "version not allowed be nil while syncing"}


def test_delta_and_desired() -> None:
    change = apply_desired({}, {"temp": Desired("30")}, NOW)
    twins = change.twins
    assert twins["temp"].expected_version == TwinVersion(1, 0)
    assert delta_payload("d", NOW, twins) == {
        "event_id": "d", "timestamp": NOW, "delta": {"temp": "30"},
        "twin": {"temp": {"expected": {"value": "30", "metadata": {"timestamp": NOW}},
                          "optional": True, "metadata": {"type": "string"}}}}
    same = apply_desired(twins, {"temp": Desired("30")}, NOW)
    assert not same.changed
    reported_now = apply_twin_update(twins, {"temp": MsgTwin(actual=TwinValue("30"))},
                                     Deal.REST, NOW).twins
    assert delta_payload("d", NOW, {**twins, **reported_now}) is None
    again = apply_desired({**twins, **reported_now}, {"temp": Desired("31")}, NOW)
    assert again.twins["temp"].expected_version == TwinVersion(2, 0)


def test_merge_sync_keeps_the_newest_of_each_part() -> None:
    a = MsgTwin(actual=TwinValue("1", 1), actual_version=TwinVersion(0, 1), optional=True)
    b = MsgTwin(actual=TwinValue("2", 2), actual_version=TwinVersion(0, 2))
    merged = merge_sync(a, b)
    assert merged is not None
    assert (merged.actual.value, merged.actual_version, merged.optional) == (  # type: ignore
        "2", TwinVersion(0, 2), True)
    assert merge_sync(a, None) is None and merge_sync(None, b) is b


def test_a_mappers_error_travels_in_the_actual_metadata_and_through_the_store() -> None:
    why = "read failed: modbus exception 2 (illegal data address)"
    first = apply_twin_update({}, {"t": MsgTwin(actual=TwinValue("1"), type="int")},
                              Deal.REST, NOW).twins
    # No value to give, only the reason: accepted although "" is no int.
    req = parse_twin_update(orjson.dumps({"event_id": "e", "timestamp": NOW, "twin": {
        "t": {"actual": {"value": "", "metadata": {"error": why}}}}}))
    change = apply_twin_update(first, req.twin, Deal.REST, NOW + 1)
    sent = change.sync["t"].to_json()
    assert sent["actual"] == {"value": "", "metadata": {"timestamp": NOW + 1, "error": why}}
    stored = twin_from_row(twin_row(change.twins["t"]))
    assert stored.actual == TwinValue("", NOW + 1, why)
    # The cloud writes it into the DeviceStatus, beside the type and time.
    twins = merge_status_twins([], {"t": msg_twin_from_json(sent)}, ["t"])
    assert twins[0]["reported"]["metadata"] == {"timestamp": str(NOW + 1), "type": "int",
                                                "error": why}
    # The next good value clears it.
    again = apply_twin_update(change.twins, {"t": MsgTwin(actual=TwinValue("2"))}, Deal.REST,
                              NOW + 2)
    assert "error" not in again.sync["t"].to_json()["actual"]["metadata"]
