"""The MQTT topic grammar of DeviceTwin and EventBus (upstream ``dtcommon`` and ``eventbus/mqtt``).

Devices are named ``<namespace>/<name>`` in topics, so a device topic has two identity tokens::

    classify("$hw/events/device/default/thermo/twin/update")
    # Topic(action=TWIN_UPDATE, identity="default/thermo")
    twin_update_result("default/thermo")   # "$hw/events/device/default/thermo/twin/update/result"

EventBus hands DeviceTwin the topic base64url-encoded (padded) as the message resource, as
upstream does, so a topic with slashes survives resource parsing: :func:`encode_resource`.
"""

from __future__ import annotations

import base64
import binascii
import enum
from dataclasses import dataclass
from typing import Final

from pykubeedge.core.errors import DecodeError

DEVICE_PREFIX: Final = "$hw/events/device/"
NODE_PREFIX: Final = "$hw/events/node/"
CONNECTED_PREFIX: Final = "$hw/events/connected/"
DISCONNECTED_PREFIX: Final = "$hw/events/disconnected/"
UPLOAD_FILTER: Final = "$hw/events/upload/#"
UPLOAD_RECORDS: Final = "SYS/dis/upload_records"
CLOUD_DEVICE_PREFIX: Final = "device/"
"""What a device report's resource starts with between edge and cloud (not a topic)."""

DEFAULT_SUBSCRIPTIONS: Final = (
    UPLOAD_FILTER,
    "$hw/events/device/+/+/state/update",
    "$hw/events/device/+/+/twin/+",
    "$hw/events/node/+/membership/get",
    UPLOAD_RECORDS,
    "+/user/#",
)
"""What EventBus subscribes to on every connection, in upstream's order (then ``sub_topics``)."""

# Suffixes after the identity.
MEMBERSHIP_UPDATED: Final = "/membership/updated"
MEMBERSHIP_GET: Final = "/membership/get"
MEMBERSHIP_GET_RESULT: Final = "/membership/get/result"
MEMBERSHIP_DETAIL_RESULT: Final = "/membership/detail/result"
TWIN_UPDATE: Final = "/twin/update"
TWIN_UPDATE_RESULT: Final = "/twin/update/result"
TWIN_UPDATE_DELTA: Final = "/twin/update/delta"
TWIN_UPDATE_DOCUMENT: Final = "/twin/update/document"
TWIN_GET: Final = "/twin/get"
TWIN_GET_RESULT: Final = "/twin/get/result"
TWIN_CLOUD_UPDATED: Final = "/twin/cloud_updated"
TWIN_EDGE_UPDATED: Final = "/twin/edge_updated"
STATE_UPDATE: Final = "/state/update"
STATE_UPDATE_RESULT: Final = "/state/update/result"
STATE_GET: Final = "/state/get"
DEVICE_UPDATED: Final = "/updated"


class Action(enum.StrEnum):
    """What DeviceTwin does with a topic (upstream ``dtcommon`` action names)."""

    MEM_DETAIL_RESULT = "MemDetailResult"
    MEM_UPDATED = "MemUpdated"
    MEM_GET = "MemGet"
    DEVICE_STATE_GET = "DeviceStateGet"
    DEVICE_UPDATED = "DeviceUpdated"
    DEVICE_STATE_UPDATE = "DeviceStateUpdate"
    TWIN_UPDATE = "TwinUpdate"
    TWIN_CLOUD_SYNC = "TwinCloudSync"
    TWIN_GET = "TwinGet"
    LIFECYCLE = "LifeCycle"


_NODE_ACTIONS: Final = {
    MEMBERSHIP_DETAIL_RESULT: Action.MEM_DETAIL_RESULT,
    MEMBERSHIP_UPDATED: Action.MEM_UPDATED,
    MEMBERSHIP_GET: Action.MEM_GET,
}
_DEVICE_ACTIONS: Final = {
    STATE_GET: Action.DEVICE_STATE_GET,
    DEVICE_UPDATED: Action.DEVICE_UPDATED,
    STATE_UPDATE: Action.DEVICE_STATE_UPDATE,
    TWIN_UPDATE: Action.TWIN_UPDATE,
    TWIN_CLOUD_UPDATED: Action.TWIN_CLOUD_SYNC,
    TWIN_GET: Action.TWIN_GET,
}


@dataclass(frozen=True, slots=True)
class Topic:
    """A classified DeviceTwin topic: the action and whom it is about (device id or node)."""

    action: Action
    identity: str


def classify(topic: str) -> Topic | None:
    """The DeviceTwin action of an MQTT topic, or None when DeviceTwin has none for it.

    >>> classify("$hw/events/device/default/thermo/twin/get")
    Topic(action=<Action.TWIN_GET: 'TwinGet'>, identity='default/thermo')
    >>> classify("$hw/events/node/edge-1/membership/get").identity
    'edge-1'
    >>> classify("$hw/events/device/default/thermo/twin/update/result") is None
    True
    """
    parts = topic.split("/")
    if len(parts) == 4 and (topic.startswith(CONNECTED_PREFIX)
                            or topic.startswith(DISCONNECTED_PREFIX)):
        return Topic(Action.LIFECYCLE, parts[3])
    if topic.startswith(NODE_PREFIX) and len(parts) > 3 and parts[3]:
        suffix = topic[len(NODE_PREFIX) + len(parts[3]):]
        action = _NODE_ACTIONS.get(suffix)
        return Topic(action, parts[3]) if action is not None else None
    if topic.startswith(DEVICE_PREFIX) and len(parts) > 4 and parts[3] and parts[4]:
        identity = f"{parts[3]}/{parts[4]}"
        suffix = topic[len(DEVICE_PREFIX) + len(identity):]
        action = _DEVICE_ACTIONS.get(suffix)
        return Topic(action, identity) if action is not None else None
    return None


def is_devicetwin_topic(topic: str) -> bool:
    """Whether EventBus hands a received topic to DeviceTwin (else it goes up to the cloud).

    >>> is_devicetwin_topic("$hw/events/node/edge-1/membership/get")
    True
    >>> is_devicetwin_topic("$hw/events/upload/temperature")
    False
    """
    return topic.startswith(DEVICE_PREFIX) or topic.startswith(NODE_PREFIX)


def device_topic(device_id: str, suffix: str) -> str:
    """``$hw/events/device/<ns>/<name><suffix>``.

    >>> device_topic("default/thermo", TWIN_UPDATE_DELTA)
    '$hw/events/device/default/thermo/twin/update/delta'
    """
    return f"{DEVICE_PREFIX}{device_id}{suffix}"


def node_topic(node: str, suffix: str) -> str:
    """``$hw/events/node/<node><suffix>``.

    >>> node_topic("edge-1", MEMBERSHIP_UPDATED)
    '$hw/events/node/edge-1/membership/updated'
    """
    return f"{NODE_PREFIX}{node}{suffix}"


def twin_update_result(device_id: str) -> str:
    """The topic a twin update (and its errors) is answered on."""
    return device_topic(device_id, TWIN_UPDATE_RESULT)


def lifecycle_topic(node: str, connected: bool) -> str:
    """``$hw/events/connected/<node>`` or ``$hw/events/disconnected/<node>``.

    >>> lifecycle_topic("edge-1", True)
    '$hw/events/connected/edge-1'
    """
    return f"{CONNECTED_PREFIX if connected else DISCONNECTED_PREFIX}{node}"


def auth_info_result(node: str) -> str:
    """Where EventBus publishes a cloud ``get_result`` of ``auth_info``."""
    return f"{NODE_PREFIX}{node}/authInfo/get/result"


def cloud_twin_resource(device_id: str) -> str:
    """The resource of a twin sync to the cloud: ``device/<ns>/<name>/twin/edge_updated``.

    >>> cloud_twin_resource("default/thermo")
    'device/default/thermo/twin/edge_updated'
    """
    return f"{CLOUD_DEVICE_PREFIX}{device_id}{TWIN_EDGE_UPDATED}"


def cloud_state_resource(device_id: str) -> str:
    """The resource of a device state report to the cloud."""
    return f"{CLOUD_DEVICE_PREFIX}{device_id}{STATE_UPDATE}"


def parse_cloud_device_resource(resource: str) -> tuple[str, str]:
    """The device id and the report (``/twin/edge_updated``, ``/state/update``) of a report's
    resource as the cloud reads it after the node prefix; DecodeError if it is not
    ``device/<ns>/<name>/...``.

    >>> parse_cloud_device_resource(cloud_twin_resource("default/thermo"))
    ('default/thermo', '/twin/edge_updated')
    """
    parts = resource.split("/", 3)
    if len(parts) != 4 or f"{parts[0]}/" != CLOUD_DEVICE_PREFIX or not parts[1] or not parts[2]:
        raise DecodeError(f"resource {resource!r} is not device/<namespace>/<name>/...")
    return f"{parts[1]}/{parts[2]}", f"/{parts[3]}"


def encode_resource(topic: str) -> str:
    """A topic as a message resource: base64, URL alphabet, padded (Go ``URLEncoding``).

    >>> encode_resource("$hw/events/node/n/membership/get")
    'JGh3L2V2ZW50cy9ub2RlL24vbWVtYmVyc2hpcC9nZXQ='
    """
    return base64.urlsafe_b64encode(topic.encode()).decode("ascii")


def decode_resource(resource: str) -> str:
    """The topic a resource from EventBus encodes; DecodeError if it is not valid base64url.

    >>> decode_resource(encode_resource("a/b"))
    'a/b'
    """
    try:
        raw = base64.urlsafe_b64decode(resource.encode("ascii"))
        return raw.decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise DecodeError(f"resource {resource[:80]!r} is not a base64url topic: {exc}") from None


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching (``+`` one level, ``#`` the rest); ``$`` topics never match a
    leading wildcard, as brokers do.

    >>> topic_matches("$hw/events/device/+/+/twin/+", "$hw/events/device/ns/d/twin/get")
    True
    >>> topic_matches("#", "$hw/events/node/n/membership/get")
    False
    """
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    want = topic_filter.split("/")
    have = topic.split("/")
    for i, token in enumerate(want):
        if token == "#":
            return i == len(want) - 1
        if i >= len(have) or (token != "+" and token != have[i]):
            return False
    return len(want) == len(have)
