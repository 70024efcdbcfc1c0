"""Device payloads and rules, sans IO: membership, device state, and the cloud's DeviceStatus
twins (upstream ``dttype`` and ``cloud/pkg/devicecontroller``).

    update = parse_membership(content)             # from DeviceController (twin group)
    state_payload(event_id, now, "thermo", "online", "2025-05-01T10:00:00Z")
    merge_status_twins(status_twins, edge_twins, spec_names)   # cloud: DeviceStatus.status.twins
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from pykubeedge.core.errors import DecodeError
from pykubeedge.core.gojson import GoTypeError, as_int64, as_list, as_object, as_str, fields_ci
from pykubeedge.core.objects import metadata_of
from pykubeedge.core.twin import (
    BAD_REQUEST,
    MAX_PAYLOAD,
    MsgTwin,
    TwinError,
    load_json,
    msg_twin_from_json,
)

STATES: Final = frozenset({"online", "offline", "ok", "unknown", "unhealthy"})
"""Device states DeviceTwin accepts (lower-cased); upstream silently drops any other."""
ONLINE_STATES: Final = frozenset({"online", "ok"})
"""States that stamp ``lastOnlineTime``."""

DEVICE_API_VERSION: Final = "devices.kubeedge.io/v1beta1"


def description_of(device: Any) -> str:
    """A Device's ``description`` label, which membership carries (upstream reads it there),
    or "".

    >>> description_of({"metadata": {"labels": {"description": "thermometer"}}})
    'thermometer'
    """
    labels = metadata_of(device).get("labels")
    description = labels.get("description") if isinstance(labels, Mapping) else None
    return description if isinstance(description, str) else ""


@dataclass(slots=True)
class MemberDevice:
    """A device as membership messages carry it (``dttype.Device``; JSON fields omitempty).

    ``twin`` is kept raw (versions are stripped before it is published)."""

    id: str
    name: str = ""
    description: str = ""
    state: str = ""
    last_online: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    twin: dict[str, Any] | None = None

    def to_json(self, *, twin: bool = False) -> dict[str, Any]:
        """The JSON object; ``twin`` only where upstream publishes it (membership/updated).

        >>> MemberDevice("default/d", "d").to_json()
        {'id': 'default/d', 'name': 'd'}
        """
        out: dict[str, Any] = {}
        for key, value in (("id", self.id), ("name", self.name),
                           ("description", self.description), ("state", self.state),
                           ("last_online", self.last_online)):
            if value:
                out[key] = value
        if self.attributes:
            out["attributes"] = {k: self.attributes[k] for k in sorted(self.attributes)}
        if twin and self.twin:
            out["twin"] = {k: self.twin[k] for k in sorted(self.twin)}
        return out


@dataclass(slots=True)
class MembershipUpdate:
    event_id: str = ""
    timestamp: int = 0
    added: list[MemberDevice] = field(default_factory=list)
    removed: list[MemberDevice] = field(default_factory=list)


def _member(raw: Any) -> MemberDevice:
    f = fields_ci(as_object(raw), ("id", "name", "description", "state", "last_online",
                                 "attributes", "twin"))
    twins = f.get("twin")
    if twins is not None:
        twins = {k: None if v is None else msg_twin_from_json(v).to_json()
                 for k, v in as_object(twins).items()}
    return MemberDevice(id=as_str(f.get("id")), name=as_str(f.get("name")),
                        description=as_str(f.get("description")), state=as_str(f.get("state")),
                        last_online=as_str(f.get("last_online")),
                        attributes=dict(as_object(f.get("attributes") or {})), twin=twins)


def _members(raw: Any) -> list[MemberDevice]:
    return [_member(item) for item in as_list(raw)]


def json_content(content: Any) -> Any:
    """A message content that may be an object, or its JSON as text or bytes."""
    if isinstance(content, str | bytes | bytearray):
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"content is not JSON: {exc}") from None
    return content


def parse_membership(content: Any) -> MembershipUpdate:
    """A MembershipUpdate (cloud: ``membership``) or MembershipDetail (``devices``).

    >>> parse_membership({"added_devices": [{"id": "ns/d", "name": "d"}]}).added[0].name
    'd'
    """
    data = json_content(content)
    try:
        f = fields_ci(as_object(data), ("event_id", "timestamp", "added_devices",
                                      "removed_devices", "devices"))
        update = MembershipUpdate(as_str(f.get("event_id")), as_int64(f.get("timestamp")),
                                  _members(f.get("added_devices")) + _members(f.get("devices")),
                                  _members(f.get("removed_devices")))
    except GoTypeError:
        raise DecodeError("membership content has a field of the wrong JSON type") from None
    for dev in (*update.added, *update.removed):
        if dev.id.count("/") != 1 or dev.id.startswith("/") or dev.id.endswith("/"):
            raise DecodeError(f"membership device id {dev.id!r} is not <namespace>/<name>")
    return update


def membership_updated_payload(event_id: str, now: int, added: Sequence[MemberDevice] | None,
                               removed: Sequence[MemberDevice] | None) -> dict[str, Any]:
    """``$hw/events/node/<node>/membership/updated`` (an absent list is JSON null, as Go's nil
    slice)."""
    return {"event_id": event_id, "timestamp": now,
            "added_devices": None if added is None else [d.to_json(twin=True) for d in added],
            "removed_devices": None if removed is None else [d.to_json(twin=True)
                                                             for d in removed]}


def membership_get_payload(event_id: str, now: int,
                           devices: Iterable[MemberDevice]) -> dict[str, Any]:
    """``/membership/get/result``: the node's devices, without twins."""
    return {"event_id": event_id, "timestamp": now,
            "devices": [d.to_json() for d in devices]}


def membership_detail_request(event_id: str, now: int, node: str) -> str:
    """What DeviceTwin sends the cloud after a reconnect (``GetDetailNode``, as a string)."""
    return orjson.dumps({"event_type": "group_membership_event", "event_id": event_id,
                         "group_id": node, "operation": "detail", "timestamp": now}).decode()


def parse_state_update(payload: bytes | str, max_size: int = MAX_PAYLOAD) -> tuple[str, str]:
    """A ``/state/update`` request: (event_id, state as given). The key matches
    case-insensitively (the DMI server sends ``"State"``).

    PROJECT: upstream ignores a bad request silently; here it is a TwinError 400.

    >>> parse_state_update(b'{"event_id":"s1","State":"Online"}')
    ('s1', 'Online')
    """
    data = load_json(payload, max_size)
    event_id = ""
    try:
        f = fields_ci(as_object(data), ("event_id", "timestamp", "state"))
        event_id = as_str(f.get("event_id"))
        as_int64(f.get("timestamp"))
        state = as_str(f.get("state"))
    except GoTypeError:
        raise TwinError(BAD_REQUEST, "Unmarshal device state failed, please check the request",
                        event_id) from None
    if state.lower() not in STATES:
        raise TwinError(BAD_REQUEST, f"the device state {state[:64]!r} is not one of "
                        f"{', '.join(sorted(STATES))}", event_id)
    return event_id, state


def last_online_for(state: str, now_s: float) -> str:
    """``lastOnlineTime`` for a new state: RFC 3339 UTC when online or ok, else "".

    >>> last_online_for("OK", 0)
    '1970-01-01T00:00:00Z'
    """
    if state.lower() not in ONLINE_STATES:
        return ""
    return datetime.fromtimestamp(int(now_s), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def state_payload(event_id: str, now: int, name: str, state: str,
                  last_online: str) -> dict[str, Any]:
    """``/state/update/result`` and the cloud's ``state/update`` content (``DeviceMsg``)."""
    device: dict[str, Any] = {"name": name, "state": state}
    if last_online:
        device["lastOnlineTime"] = last_online
    return {"event_id": event_id, "timestamp": now, "device": device}


# -- the cloud side ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EdgeStateReport:
    state: str
    last_online: str


def parse_edge_twins(content: Any) -> dict[str, MsgTwin | None]:
    """The ``twin`` of an ``edge_updated`` (``DeviceTwinUpdate``) from an edge node."""
    data = json_content(content)
    try:
        raw = fields_ci(as_object(data), ("twin",)).get("twin")
        return {k: None if v is None else msg_twin_from_json(v)
                for k, v in as_object(raw or {}).items()}
    except GoTypeError:
        raise DecodeError("edge_updated content has a field of the wrong JSON type") from None


def parse_edge_state(content: Any) -> EdgeStateReport:
    """The ``device`` of a ``state/update`` (``DeviceStateUpdate``, content often a string)."""
    data = json_content(content)
    try:
        device = as_object(fields_ci(as_object(data), ("device",)).get("device"))
        f = fields_ci(device, ("state", "lastOnlineTime"))
        return EdgeStateReport(as_str(f.get("state")), as_str(f.get("lastOnlineTime")))
    except GoTypeError:
        raise DecodeError("state/update content must hold a device object with string "
                          "state and lastOnlineTime") from None


def _twin_property(value: str, timestamp: int | None, twin_type: str | None,
                   error: str = "") -> dict[str, Any]:
    meta: dict[str, str] = {}
    if timestamp is not None:
        meta["timestamp"] = str(timestamp)
    if twin_type is not None:
        meta["type"] = twin_type
    if error:
        meta["error"] = error
    out: dict[str, Any] = {"value": value}
    if meta:
        out["metadata"] = meta
    return out


def merge_status_twins(current: Sequence[Mapping[str, Any]],
                       updates: Mapping[str, MsgTwin | None],
                       spec_names: Iterable[str]) -> list[dict[str, Any]]:
    """DeviceStatus ``status.twins`` after an edge twin report (upstream DeviceController):
    ``actual`` becomes ``reported``, ``expected`` becomes ``observedDesired``; properties not in
    the Device's spec are ignored, twins of properties gone from the spec dropped. Unlike
    upstream, the first report of a property keeps its value (upstream writes "").

    >>> from pykubeedge.core.twin import TwinValue
    >>> merge_status_twins([], {"t": MsgTwin(actual=TwinValue("25", 7), type="int")}, ["t"])
    [{'propertyName': 't', 'reported': {'value': '25', 'metadata': {'timestamp': '7', \
'type': 'int'}}, 'observedDesired': {'value': ''}}]
    """
    names = set(spec_names)
    twins: dict[str, dict[str, Any]] = {}
    for entry in current:
        name = entry.get("propertyName")
        if isinstance(name, str) and name in names:
            twins[name] = dict(entry)
    for name, twin in updates.items():
        if twin is None or name not in names:
            continue
        entry = twins.setdefault(name, {"propertyName": name, "reported": {"value": ""},
                                        "observedDesired": {"value": ""}})
        if twin.actual is not None and twin.actual.value is not None:
            entry["reported"] = _twin_property(twin.actual.value, twin.actual.timestamp,
                                               twin.type, twin.actual.error)
        if twin.expected is not None and twin.expected.value is not None:
            entry["observedDesired"] = _twin_property(twin.expected.value,
                                                      twin.expected.timestamp, twin.type)
    return list(twins.values())
