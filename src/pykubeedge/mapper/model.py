"""What a mapper knows of a device: the DMI ``Device`` (and its ``DeviceModel``) as plain
data. ``configData`` values (google.protobuf wrappers in ``Any``) become Python values.

    dev = device_from_pb(pb_device, models)
    dev.id, dev.protocol, [p.name for p in dev.properties]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf import any_pb2, wrappers_pb2

from pykubeedge.api.dmi.v1beta1 import api_pb2 as pb

DEFAULT_CYCLE_S = 1.0  # upstream DefaultCollectCycle / DefaultReportCycle

_WRAPPERS: dict[str, type[Any]] = {
    "google.protobuf.StringValue": wrappers_pb2.StringValue,
    "google.protobuf.Int32Value": wrappers_pb2.Int32Value,
    "google.protobuf.Int64Value": wrappers_pb2.Int64Value,
    "google.protobuf.UInt32Value": wrappers_pb2.UInt32Value,
    "google.protobuf.UInt64Value": wrappers_pb2.UInt64Value,
    "google.protobuf.FloatValue": wrappers_pb2.FloatValue,
    "google.protobuf.DoubleValue": wrappers_pb2.DoubleValue,
    "google.protobuf.BoolValue": wrappers_pb2.BoolValue,
}


def decode_any(value: any_pb2.Any) -> Any:
    """A wrapper in ``Any`` as its Python value (a JSON string as what it holds)."""
    kind = value.type_url.rsplit("/", 1)[-1]
    wrapper = _WRAPPERS.get(kind)
    if wrapper is None:
        raise ValueError(f"configData value of type {kind!r} is not supported")
    msg = wrapper()
    value.Unpack(msg)
    out = msg.value
    if kind == "google.protobuf.FloatValue":
        # JSON numbers travel as float32 (as upstream): 0.1 is 0.1 again, 2 is 2.
        out = float(f"{out:.7g}")
        return int(out) if out.is_integer() else out
    if isinstance(out, str) and out[:1] in "[{":
        try:
            return orjson.loads(out)
        except orjson.JSONDecodeError:
            return out
    return out


def config_data(value: pb.CustomizedValue) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.data.items():
        out[key] = decode_any(item)
    return out


@dataclass
class PushHTTP:
    hostname: str
    port: int
    path: str
    timeout_s: float


@dataclass
class PushMQTT:
    address: str
    topic: str
    qos: int
    retained: bool


@dataclass
class Property:
    name: str
    type: str = "string"  # the model's: int, float, double, boolean, string, bytes
    access_mode: str = "ReadWrite"
    minimum: str = ""
    maximum: str = ""
    unit: str = ""
    visitor: dict[str, Any] = field(default_factory=dict)
    visitor_protocol: str = ""
    desired: str | None = None
    collect_cycle_s: float = DEFAULT_CYCLE_S
    report_cycle_s: float = DEFAULT_CYCLE_S
    report_to_cloud: bool = True
    push_http: PushHTTP | None = None
    push_mqtt: PushMQTT | None = None
    error: str = ""  # why the property cannot be used (set while decoding)

    @property
    def writable(self) -> bool:
        return self.access_mode != "ReadOnly"


@dataclass
class Device:
    namespace: str
    name: str
    model: str
    protocol: str
    config: dict[str, Any]
    properties: list[Property]
    error: str = ""

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}"


def _cycle(ms: int) -> float:
    return ms / 1000 if ms > 0 else DEFAULT_CYCLE_S


def device_from_pb(dev: pb.Device, models: Mapping[str, pb.DeviceModel]) -> Device:
    ns = dev.namespace or "default"
    model = models.get(f"{ns}/{dev.spec.deviceModelReference}")
    model_props = {p.name: p for p in model.spec.properties} if model else {}
    error = ""
    try:
        config = config_data(dev.spec.protocol.configData)
    except ValueError as exc:
        config, error = {}, f"protocol configData: {exc}"
    props: list[Property] = []
    for p in dev.spec.properties:
        mp = model_props.get(p.name)
        prop = Property(
            name=p.name, type=(mp.type.lower() if mp and mp.type else "string"),
            access_mode=mp.accessMode if mp and mp.accessMode else "ReadWrite",
            minimum=mp.minimum if mp else "", maximum=mp.maximum if mp else "",
            unit=mp.unit if mp else "", visitor_protocol=p.visitors.protocolName,
            desired=p.desired.value if p.HasField("desired") and p.desired.value else None,
            collect_cycle_s=_cycle(p.collectCycle), report_cycle_s=_cycle(p.reportCycle),
            report_to_cloud=p.reportToCloud)
        try:
            prop.visitor = config_data(p.visitors.configData)
        except ValueError as exc:
            prop.error = f"visitors.configData: {exc}"
        if p.HasField("pushMethod"):
            if p.pushMethod.HasField("http"):
                h = p.pushMethod.http
                prop.push_http = PushHTTP(h.hostname, int(h.port), h.requestpath,
                                          (h.timeout or 5000) / 1000)
            if p.pushMethod.HasField("mqtt"):
                m = p.pushMethod.mqtt
                prop.push_mqtt = PushMQTT(m.address, m.topic, int(m.qos), m.retained)
        if model is not None and mp is None:
            prop.error = prop.error or (f"the model {model.name} has no property {p.name}")
        props.append(prop)
    return Device(ns, dev.name, dev.spec.deviceModelReference, dev.spec.protocol.protocolName,
                  config, props, error)
