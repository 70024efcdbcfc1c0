from __future__ import annotations

import pytest

from pykubeedge.core.errors import DecodeError
from pykubeedge.core.topics import (
    Action,
    Topic,
    classify,
    decode_resource,
    encode_resource,
    topic_matches,
)


@pytest.mark.parametrize(("topic", "expected"), [
    ("$hw/events/device/ns/d/twin/update", Topic(Action.TWIN_UPDATE, "ns/d")),
    ("$hw/events/device/ns/d/twin/get", Topic(Action.TWIN_GET, "ns/d")),
    ("$hw/events/device/ns/d/twin/cloud_updated", Topic(Action.TWIN_CLOUD_SYNC, "ns/d")),
    ("$hw/events/device/ns/d/state/update", Topic(Action.DEVICE_STATE_UPDATE, "ns/d")),
    ("$hw/events/device/ns/d/updated", Topic(Action.DEVICE_UPDATED, "ns/d")),
    ("$hw/events/node/n1/membership/get", Topic(Action.MEM_GET, "n1")),
    ("$hw/events/node/n1/membership/detail/result", Topic(Action.MEM_DETAIL_RESULT, "n1")),
    ("$hw/events/connected/n1", Topic(Action.LIFECYCLE, "n1")),
    ("$hw/events/device/ns/d/twin/update/result", None),
    ("$hw/events/device/ns/d/twin/edge_updated", None),
    ("$hw/events/device/ns//twin/update", None),
    ("$hw/events/device/d/twin/update", None),
    ("$hw/events/upload/x", None),
])
def test_classify(topic: str, expected: Topic | None) -> None:
    assert classify(topic) == expected


def test_resource_round_trip_and_bad_base64() -> None:
    topic = "$hw/events/device/ns/d/twin/update"
    assert decode_resource(encode_resource(topic)) == topic
    with pytest.raises(DecodeError):
        decode_resource("not base64!")


@pytest.mark.parametrize(("flt", "topic", "ok"), [
    ("$hw/events/device/+/+/twin/+", "$hw/events/device/a/b/twin/update", True),
    ("$hw/events/device/+/+/twin/+", "$hw/events/device/a/b/twin/update/result", False),
    ("+/user/#", "app/user/x/y", True), ("+/user/#", "app/user", True),
    ("#", "$SYS/x", False), ("a/b", "a/b", True), ("a/b", "a/b/c", False),
])
def test_topic_matches(flt: str, topic: str, ok: bool) -> None:
    assert topic_matches(flt, topic) is ok
