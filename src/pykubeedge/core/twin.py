"""Device twin rules, sans IO (upstream ``edge/pkg/devicetwin/dttype`` and ``dtmanager/twin.go``).

A twin property has an *expected* value (what the cloud or an app wants) and an *actual* one
(what the device reports), each with its own version ``{"cloud": n, "edge": n}``. This module
parses update requests with upstream's limits and exact error reasons, applies them with
upstream's version rules, and builds the payloads DeviceTwin publishes::

    req = parse_twin_update(b'{"event_id":"e1","timestamp":0,"twin":{"temp":'
                            b'{"actual":{"value":"25"},"metadata":{"type":"int"}}}}')
    change = apply_twin_update(device_twins, req.twin, Deal.REST, now=1714550000123)
    result_payload(req.event_id, now, change.result)   # for .../twin/update/result

Nothing here mutates its inputs: a change carries the new twins, and the caller swaps them in
once they are stored (so a failed write changes nothing, as upstream's reload from SQLite does).

Where we differ from upstream (see docs/devices.md): an update is validated completely before
anything changes; an expected value is validated against the twin's type even when the twin had
none before; a delete of an unknown key is skipped instead of stopping the request; payloads
above :data:`MAX_PAYLOAD` bytes are refused.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from pykubeedge.core.errors import PyKubeEdgeError
from pykubeedge.core.gojson import (
    GoTypeError,
    as_bool,
    as_int64,
    as_object,
    as_str,
    fields_ci,
)

BAD_REQUEST: Final = 400
NOT_FOUND: Final = 404
CONFLICT: Final = 409
INTERNAL_ERROR: Final = 500

MAX_PAYLOAD: Final = 64 * 1024
"""Bytes of one MQTT request DeviceTwin accepts (PROJECT: upstream has no limit)."""

TYPE_STRING: Final = "string"
TYPE_DELETED: Final = "deleted"

_KEY = re.compile(r"[a-zA-Z0-9\-_.,:/@#]{1,128}")
_VALUE = re.compile(r"[a-zA-Z0-9\-_.,:/@#]{1,512}")
_INT = re.compile(r"[+-]?[0-9]+")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

REASON_UNMARSHAL: Final = "Unmarshal update request body failed, please check the request"
REASON_NO_TWIN: Final = "Update twin error, key:twin does not exist"
REASON_KEY: Final = (
    "The key of twin must only include upper or lowercase letters, number, english, and special "
    "letter - _ . , : / @ # and the length of key should be less than 128 bytes")
REASON_VALUE: Final = (
    "The value of twin must only include upper or lowercase letters, number, english, and "
    "special letter - _ . , : / @ # and the length of value should be less than 512 bytes")
REASON_NO_DEVICE: Final = "update rejected due to the device is not existed"


class TwinError(PyKubeEdgeError):
    """A twin request that is answered with an error result ``{code, reason}``."""

    def __init__(self, code: int, reason: str, event_id: str = "") -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.event_id = event_id


class Deal(enum.IntEnum):
    """Where a twin change comes from (upstream's deal types)."""

    REST = 0
    """An app or mapper over MQTT (or DMI): the edge version counts up."""
    SYNC = 1
    """A ``twin/cloud_updated`` sync: versions are required and copied."""
    DETAIL = 2
    SYNC_DELETE = 3


# -- the data -------------------------------------------------------------------------------


@dataclass(slots=True)
class TwinVersion:
    cloud: int = 0
    edge: int = 0

    def to_json(self) -> dict[str, int]:
        return {"cloud": self.cloud, "edge": self.edge}


@dataclass(slots=True)
class TwinValue:
    """A value and its metadata; ``timestamp`` None means no metadata object at all.

    ``error`` is ``metadata.error`` (PROJECT): why a mapper could not read or write the
    property, carried to the DeviceStatus's ``reported.metadata``. Upstream's Go decoders
    ignore the key.
    """

    value: str | None = None
    timestamp: int | None = None
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.value is not None:
            out["value"] = self.value
        if self.timestamp is not None or self.error:
            meta: dict[str, Any] = {"timestamp": self.timestamp} if self.timestamp else {}
            if self.error:
                meta["error"] = self.error
            out["metadata"] = meta
        return out


@dataclass(slots=True)
class MsgTwin:
    """One twin property as upstream's ``MsgTwin`` (JSON fields in Go's order).

    ``type`` is ``metadata.type``: None means no metadata object, "" an empty one. In a stored
    twin ``optional`` and ``type`` are always set. ``meta_column`` is the ``metadata`` column
    of ``device_twin`` (never on the wire).
    """

    expected: TwinValue | None = None
    actual: TwinValue | None = None
    optional: bool | None = None
    type: str | None = None
    expected_version: TwinVersion | None = None
    actual_version: TwinVersion | None = None
    meta_column: str = field(default="", compare=False)

    def to_json(self, versions: bool = True) -> dict[str, Any]:
        """The JSON object; ``versions=False`` drops both versions (what apps get).

        >>> MsgTwin(actual=TwinValue("25", 1), optional=True, type="int").to_json()
        {'actual': {'value': '25', 'metadata': {'timestamp': 1}}, 'optional': True, \
'metadata': {'type': 'int'}}
        """
        out: dict[str, Any] = {}
        if self.expected is not None:
            out["expected"] = self.expected.to_json()
        if self.actual is not None:
            out["actual"] = self.actual.to_json()
        if self.optional is not None:
            out["optional"] = self.optional
        if self.type is not None:
            out["metadata"] = {"type": self.type} if self.type else {}
        if versions:
            if self.expected_version is not None:
                out["expected_version"] = self.expected_version.to_json()
            if self.actual_version is not None:
                out["actual_version"] = self.actual_version.to_json()
        return out

    def copy(self) -> MsgTwin:
        """A deep copy (values and versions are small mutable dataclasses)."""
        return MsgTwin(
            expected=dataclasses.replace(self.expected) if self.expected else None,
            actual=dataclasses.replace(self.actual) if self.actual else None,
            optional=self.optional, type=self.type,
            expected_version=(dataclasses.replace(self.expected_version)
                              if self.expected_version else None),
            actual_version=(dataclasses.replace(self.actual_version)
                            if self.actual_version else None),
            meta_column=self.meta_column)

    @property
    def deleted(self) -> bool:
        return self.type == TYPE_DELETED


@dataclass(frozen=True, slots=True)
class BaseMessage:
    event_id: str = ""
    timestamp: int = 0


@dataclass(frozen=True, slots=True)
class TwinUpdate:
    """A parsed ``twin/update`` (or ``twin/cloud_updated``) request; None = delete the key."""

    event_id: str
    timestamp: int
    twin: dict[str, MsgTwin | None]


# -- decoding -----------------------------------------------------------------------------


def _twin_value(value: Any) -> TwinValue | None:
    if value is None:
        return None
    f = fields_ci(as_object(value), ("value", "metadata"))
    ts: int | None = None
    error = ""
    if "metadata" in f:
        meta = fields_ci(as_object(f["metadata"]), ("timestamp", "error"))
        ts = as_int64(meta.get("timestamp"))
        error = as_str(meta.get("error")) or ""
    raw = f.get("value")
    return TwinValue(None if raw is None else as_str(raw), ts, error)


def _version(value: Any) -> TwinVersion | None:
    if value is None:
        return None
    f = fields_ci(as_object(value), ("cloud", "edge"))
    return TwinVersion(as_int64(f.get("cloud")), as_int64(f.get("edge")))


def msg_twin_from_json(value: Any) -> MsgTwin:
    """Decode one ``MsgTwin``; GoTypeError on a field of the wrong JSON type.

    >>> msg_twin_from_json({"Actual": {"value": "1"}}).actual
    TwinValue(value='1', timestamp=None)
    """
    f = fields_ci(as_object(value), ("expected", "actual", "optional", "metadata",
                                   "expected_version", "actual_version"))
    twin_type: str | None = None
    if "metadata" in f:
        twin_type = as_str(fields_ci(as_object(f["metadata"]), ("type",)).get("type"))
    return MsgTwin(expected=_twin_value(f.get("expected")), actual=_twin_value(f.get("actual")),
                   optional=as_bool(f.get("optional")), type=twin_type,
                   expected_version=_version(f.get("expected_version")),
                   actual_version=_version(f.get("actual_version")))


def load_json(payload: bytes | str, max_size: int) -> Any:
    """Parse a request payload; TwinError 400 when it is too large or not JSON."""
    size = len(payload.encode() if isinstance(payload, str) else payload)
    if size > max_size:
        raise TwinError(BAD_REQUEST, f"the request is {size} bytes; at most {max_size} are "
                                     "accepted")
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise TwinError(BAD_REQUEST, REASON_UNMARSHAL) from None


def parse_base(payload: bytes | str, max_size: int = MAX_PAYLOAD) -> BaseMessage:
    """A request that only needs ``{event_id, timestamp}`` (twin/get, membership/get).

    >>> parse_base(b'{"event_id": "g1"}').event_id
    'g1'
    """
    data = load_json(payload, max_size)
    if data is None:
        return BaseMessage()
    try:
        f = fields_ci(as_object(data), ("event_id", "timestamp"))
        return BaseMessage(as_str(f.get("event_id")), as_int64(f.get("timestamp")))
    except GoTypeError:
        raise TwinError(BAD_REQUEST, "the request must be a JSON object with a string "
                                     "event_id and an integer timestamp") from None


def parse_twin_update(payload: bytes | str, max_size: int = MAX_PAYLOAD) -> TwinUpdate:
    """Parse and validate a twin update with upstream's rules and reasons.

    >>> parse_twin_update(b'{"twin": {"bad key": {}}}')
    Traceback (most recent call last):
    ...
    pykubeedge.core.twin.TwinError: The key of twin must only include ...
    """
    data = load_json(payload, max_size)
    if data is None:
        raise TwinError(BAD_REQUEST, REASON_NO_TWIN)
    event_id = ""
    try:
        f = fields_ci(as_object(data), ("event_id", "timestamp", "twin"))
        event_id = as_str(f.get("event_id"))
        timestamp = as_int64(f.get("timestamp"))
        raw = f.get("twin")
        twins = None if raw is None else {
            key: None if v is None else msg_twin_from_json(v) for key, v in as_object(raw).items()}
    except GoTypeError:
        raise TwinError(BAD_REQUEST, REASON_UNMARSHAL, event_id) from None
    if twins is None:
        raise TwinError(BAD_REQUEST, REASON_NO_TWIN, event_id)
    for key, twin in twins.items():
        if not _KEY.fullmatch(key):
            raise TwinError(BAD_REQUEST, REASON_KEY, event_id)
        if twin is None:
            continue
        for value in (twin.expected, twin.actual):
            if value is not None and value.value and not _VALUE.fullmatch(value.value):
                raise TwinError(BAD_REQUEST, REASON_VALUE, event_id)
    return TwinUpdate(event_id, timestamp, twins)


def validate_value(value_type: str, value: str) -> str | None:
    """Upstream's ``ValidateValue``: None if ``value`` fits ``value_type``, else the reason.

    >>> validate_value("int", "42"), validate_value("int", "4.2")
    (None, 'the value is not int or integer')
    """
    if value_type in ("", TYPE_STRING, TYPE_DELETED):
        return None
    if value_type in ("int", "integer"):
        ok = bool(_INT.fullmatch(value)) and _INT64_MIN <= int(value) <= _INT64_MAX
        return None if ok else "the value is not int or integer"
    if value_type == "float":
        return None if _go_float(value) else "the value is not float"
    if value_type == "boolean":
        return None if value in ("true", "false") else "the bool value must be true or false"
    return "the value type is not allowed"


def _go_float(text: str) -> bool:
    """Whether Go's ``strconv.ParseFloat(text, 64)`` accepts ``text``."""
    body = text.lstrip("+-")
    if body.lower() in ("inf", "infinity", "nan"):
        return len(text) - len(body) <= 1
    if "_" in text or not body or body != body.strip():
        return False
    try:
        number = float.fromhex(text) if body[:2].lower() == "0x" else float(text)
    except ValueError:
        return False
    return not math.isinf(number)  # Go reports a range error


# -- applying a change ----------------------------------------------------------------------


@dataclass
class TwinChange:
    """What one update does to a device's twins.

    ``twins``: the new state of every changed key (to swap in and to write). ``added``: those
    that are new rows. ``result``: the ``/twin/update/result`` entries. ``document``: (last,
    current) per changed key. ``sync``: what goes to the cloud (with versions); ``conflicts``:
    keys whose sync was refused for their versions (PROJECT: answered with 409).
    """

    twins: dict[str, MsgTwin] = field(default_factory=dict)
    added: set[str] = field(default_factory=set)
    result: dict[str, MsgTwin | None] = field(default_factory=dict)
    document: dict[str, tuple[MsgTwin | None, MsgTwin | None]] = field(default_factory=dict)
    sync: dict[str, MsgTwin | None] = field(default_factory=dict)
    conflicts: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.twins)


def deal_version(local: TwinVersion, req: TwinVersion | None, deal: Deal) -> str | None:
    """Upstream's ``dealVersion``: updates ``local`` in place; the refusal reason, or None.

    >>> v = TwinVersion(0, 1); deal_version(v, None, Deal.REST), v
    (None, TwinVersion(cloud=0, edge=2))
    >>> deal_version(TwinVersion(2, 0), TwinVersion(1, 0), Deal.SYNC)
    'version not allowed'
    """
    if deal is Deal.REST:
        local.edge += 1
        return None
    if req is None:
        return None if deal is Deal.SYNC_DELETE else "version not allowed be nil while syncing"
    if local.cloud > req.cloud:
        return "version not allowed"
    if local.edge > req.edge:
        return "not allowed to sync due to version conflict"
    local.cloud, local.edge = req.cloud, req.edge
    return None


def apply_twin_update(current: Mapping[str, MsgTwin], request: Mapping[str, MsgTwin | None],
                      deal: Deal, now: int) -> TwinChange:
    """Apply ``request`` to a device's ``current`` twins (not modified).

    Raises TwinError 400 for a REST request with a value of the wrong type; nothing is then
    changed (upstream may have half-applied it in memory before reloading).
    """
    change = TwinChange()
    for key, req in request.items():
        old = current.get(key)
        if old is None:
            if req is not None:
                _add(change, key, req, deal, now)
        elif req is None or (deal is not Deal.REST and req.deleted):
            _delete(change, key, old, req, deal)
        else:
            _compare(change, key, old, req, deal, now)
    return change


def _reject(deal: Deal, reason: str) -> None:
    if deal is Deal.REST:
        raise TwinError(BAD_REQUEST, reason)


def _value_or_fail(value: TwinValue, deal: Deal) -> str:
    if value.value is None:
        # Upstream dereferences the missing value (a panic); we refuse the request.
        _reject(deal, "a twin value object must have a value")
        return ""
    return value.value


def _value_reason(value_type: str, text: str, value: TwinValue) -> str | None:
    """Why ``text`` is no valid ``value_type`` (None: it is). No value yet with the mapper's
    reason for it (``metadata.error``) has nothing to type-check."""
    return None if not text and value.error else validate_value(value_type, text)


def _add(change: TwinChange, key: str, req: MsgTwin, deal: Deal, now: int) -> None:
    value_type = req.type if req.type is not None else TYPE_STRING
    twin = MsgTwin(optional=True if req.optional is None else req.optional, type=value_type,
                   meta_column="{}" if req.type is not None else "")
    if deal is not Deal.REST and req.deleted:
        twin.expected_version = req.expected_version and dataclasses.replace(req.expected_version)
        twin.actual_version = req.actual_version and dataclasses.replace(req.actual_version)
    for which in ("expected", "actual"):
        value: TwinValue | None = getattr(req, which)
        if value is None:
            continue
        version = TwinVersion()
        refused = deal_version(version, getattr(req, f"{which}_version"), deal)
        if refused is not None:
            _reject(deal, refused)
            return
        text = _value_or_fail(value, deal)
        reason = _value_reason(value_type, text, value)
        if reason is not None:
            _reject(deal, reason)
            return
        if text or value.error:  # upstream stores "" as no value at all
            setattr(twin, which, TwinValue(text, now, value.error))
        setattr(twin, f"{which}_version", version)
    change.twins[key] = twin
    change.added.add(key)
    change.document[key] = (None, None if twin.deleted else twin.copy())
    if deal is Deal.REST:
        change.result[key] = twin.copy()
        change.sync[key] = twin.copy()


def _delete(change: TwinChange, key: str, old: MsgTwin, req: MsgTwin | None,
            deal: Deal) -> None:
    if old.deleted or (deal is Deal.REST and not old.optional):
        return
    twin = old.copy()
    sync_deal = Deal.REST if deal is Deal.REST else Deal.SYNC_DELETE
    changed = False
    for which in ("expected", "actual"):
        version: TwinVersion | None = getattr(twin, f"{which}_version")
        if version is None:
            continue
        refused = deal_version(version, getattr(req, f"{which}_version", None)
                               if req is not None else None, sync_deal)
        if refused is not None:
            change.sync[key] = old.copy()
            change.conflicts[key] = refused
            return
        setattr(twin, which, TwinValue())
        twin.type = TYPE_DELETED
        changed = True
    if not changed:
        return
    change.twins[key] = twin
    change.document[key] = (old.copy(), None)
    if deal is Deal.REST:
        change.result[key] = None
        change.sync[key] = twin.copy()


def _compare(change: TwinChange, key: str, old: MsgTwin, req: MsgTwin, deal: Deal,
             now: int) -> None:
    twin = old.copy()
    stored_type = old.type or ""
    value_type = (req.type if req.type is not None else TYPE_STRING) if old.deleted \
        else stored_type
    rest = deal is Deal.REST
    sync = MsgTwin()
    changed = refused = False
    for which in ("expected", "actual"):
        value: TwinValue | None = getattr(req, which)
        if value is None:
            continue
        text = _value_or_fail(value, deal)
        reason = _value_reason(value_type, text, value)
        if reason is not None:
            _reject(deal, reason)
            continue
        version = getattr(twin, f"{which}_version") or TwinVersion()
        refusal = deal_version(version, getattr(req, f"{which}_version"), deal)
        if refusal is not None:
            # A refused sync: the cloud learns the edge's current state of this part, and an
            # expected refusal skips the actual part, as upstream.
            setattr(sync, which, dataclasses.replace(getattr(old, which) or TwinValue()))
            setattr(sync, f"{which}_version", dataclasses.replace(
                getattr(old, f"{which}_version") or TwinVersion()))
            sync.optional, sync.type = old.optional, old.type
            change.conflicts[key] = refusal
            refused = True
            break
        new_value = TwinValue(text, now, value.error)
        setattr(twin, which, new_value)
        setattr(twin, f"{which}_version", version)
        if rest:
            setattr(sync, which, dataclasses.replace(new_value))
            setattr(sync, f"{which}_version", dataclasses.replace(version))
            sync.optional, sync.type = twin.optional, twin.type
        changed = True
    if not refused:
        if req.optional is not None and req.optional != old.optional and old.optional:
            twin.optional = sync.optional = req.optional
            changed = True
        if req.type is not None:
            if req.type != stored_type:
                twin.meta_column = "{}"
                if old.deleted:
                    twin.type = sync.type = req.type
                changed = True
        elif old.deleted:
            twin.type = sync.type = TYPE_STRING
            changed = True
    if refused or (changed and rest):
        change.sync[key] = sync
    if not changed:
        return
    change.twins[key] = twin
    change.document[key] = (None if old.deleted else old.copy(), twin.copy())
    if rest:
        change.result[key] = MsgTwin(expected=sync.expected, actual=sync.actual,
                                     optional=sync.optional, type=sync.type)


@dataclass(frozen=True, slots=True)
class Desired:
    """A desired value from a Device's ``spec.properties[].desired``."""

    value: str
    type: str = TYPE_STRING


def apply_desired(current: Mapping[str, MsgTwin], desired: Mapping[str, Desired],
                  now: int) -> TwinChange:
    """PROJECT: a Device's desired values become the twins' expected values, as a change from
    the cloud (the cloud version counts up). Upstream only hands them to the mapper, so no
    ``/twin/update/delta`` follows a ``kubectl patch``; here it does. Unchanged values and
    values that are not valid twin values are left alone.

    >>> ch = apply_desired({}, {"temp": Desired("30")}, now=5)
    >>> ch.twins["temp"].to_json()
    {'expected': {'value': '30', 'metadata': {'timestamp': 5}}, 'optional': True, \
'metadata': {'type': 'string'}, 'expected_version': {'cloud': 1, 'edge': 0}}
    """
    change = TwinChange()
    for key, want in desired.items():
        if not _KEY.fullmatch(key) or not want.value or not _VALUE.fullmatch(want.value):
            continue
        old = current.get(key)
        if old is None:
            twin = MsgTwin(optional=True, type=want.type if validate_value(
                want.type, want.value) is None else TYPE_STRING)
            change.added.add(key)
        elif old.expected is not None and old.expected.value == want.value and not old.deleted:
            continue
        else:
            twin = old.copy()
            if twin.deleted:
                twin.type = want.type
            if validate_value(twin.type or "", want.value) is not None:
                continue
        version = twin.expected_version or TwinVersion()
        version.cloud += 1
        twin.expected = TwinValue(want.value, now)
        twin.expected_version = version
        change.twins[key] = twin
        change.document[key] = (None if old is None or old.deleted else old.copy(), twin.copy())
    return change


# -- payloads -------------------------------------------------------------------------------


def _twin_map(twins: Mapping[str, MsgTwin | None], versions: bool) -> dict[str, Any]:
    # Go marshals maps with sorted keys; struct fields keep their declared order.
    out: dict[str, Any] = {}
    for key in sorted(twins):
        twin = twins[key]
        out[key] = None if twin is None else twin.to_json(versions)
    return out


def result_payload(event_id: str, now: int, twins: Mapping[str, MsgTwin | None]) -> dict[str, Any]:
    """``/twin/update/result``: the changed keys, without versions.

    >>> result_payload("e1", 9, {"temp": None})
    {'event_id': 'e1', 'timestamp': 9, 'twin': {'temp': None}}
    """
    return {"event_id": event_id, "timestamp": now, "twin": _twin_map(twins, False)}


def sync_payload(event_id: str, now: int, twins: Mapping[str, MsgTwin | None]) -> dict[str, Any]:
    """``device/<id>/twin/edge_updated`` to the cloud: the changed keys, with versions."""
    return {"event_id": event_id, "timestamp": now, "twin": _twin_map(twins, True)}


def get_payload(event_id: str, now: int, twins: Mapping[str, MsgTwin]) -> dict[str, Any]:
    """``/twin/get/result``: every twin but deleted ones, without versions."""
    live = {k: v for k, v in twins.items() if not v.deleted}
    return {"event_id": event_id, "timestamp": now, "twin": _twin_map(live, False)}


def document_payload(event_id: str, now: int,
                     document: Mapping[str, tuple[MsgTwin | None, MsgTwin | None]]
                     ) -> dict[str, Any]:
    """``/twin/update/document``: ``{"last": ..., "current": ...}`` per changed key."""
    twin = {}
    for key in sorted(document):
        last, current = document[key]
        twin[key] = {"last": last.to_json(False) if last else None,
                     "current": current.to_json(False) if current else None}
    return {"event_id": event_id, "timestamp": now, "twin": twin}


def delta(twins: Mapping[str, MsgTwin]) -> dict[str, str]:
    """Expected values that differ from the actual ones (deleted twins and twins without an
    expected value are skipped; a missing actual counts as "").

    >>> delta({"t": MsgTwin(expected=TwinValue("30"), actual=TwinValue("25"))})
    {'t': '30'}
    """
    out = {}
    for key in sorted(twins):
        twin = twins[key]
        expected = twin.expected.value if twin.expected else None
        if twin.deleted or not expected:
            continue
        actual = (twin.actual.value if twin.actual else None) or ""
        if expected != actual:
            out[key] = expected
    return out


def delta_payload(event_id: str, now: int, twins: Mapping[str, MsgTwin]) -> dict[str, Any] | None:
    """``/twin/update/delta``, or None when nothing differs. ``twin`` holds every live twin
    with an expected value, differing or not, as upstream."""
    diff = delta(twins)
    if not diff:
        return None
    shown = {k: v for k, v in twins.items()
             if not v.deleted and v.expected is not None and v.expected.value}
    return {"event_id": event_id, "timestamp": now, "twin": _twin_map(shown, False),
            "delta": diff}


def error_payload(event_id: str, now: int, code: int, reason: str) -> dict[str, Any]:
    """An error ``Result``: ``{"event_id","timestamp","code","reason"}``.

    >>> error_payload("", 1, 404, "x")
    {'event_id': '', 'timestamp': 1, 'code': 404, 'reason': 'x'}
    """
    out: dict[str, Any] = {"event_id": event_id, "timestamp": now}
    if code:
        out["code"] = code
    if reason:
        out["reason"] = reason
    return out


def merge_sync(older: MsgTwin | None, newer: MsgTwin | None) -> MsgTwin | None:
    """Two unsent sync entries of one key as one: the newer part of each field wins (a value
    and its version travel together), so nothing newer is lost and nothing older survives.

    >>> a = MsgTwin(expected=TwinValue("1"), expected_version=TwinVersion(0, 1))
    >>> b = MsgTwin(actual=TwinValue("2"), actual_version=TwinVersion(0, 1))
    >>> sorted(merge_sync(a, b).to_json())
    ['actual', 'actual_version', 'expected', 'expected_version']
    """
    if older is None or newer is None:
        return newer
    merged = older.copy()
    for name in ("expected", "actual"):
        if getattr(newer, name) is not None:
            setattr(merged, name, dataclasses.replace(getattr(newer, name)))
            version = getattr(newer, f"{name}_version")
            setattr(merged, f"{name}_version",
                    dataclasses.replace(version) if version is not None else None)
    if newer.optional is not None:
        merged.optional = newer.optional
    if newer.type is not None:
        merged.type = newer.type
    return merged
