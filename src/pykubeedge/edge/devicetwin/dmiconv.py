"""Device and DeviceModel objects (devices.kubeedge.io/v1beta1 JSON, as MetaManager stores them)
as DMI messages (upstream ``dtcommon.ConvertDevice`` / ``ConvertDeviceModel``).

``configData`` values become google.protobuf wrappers packed in ``Any``, as upstream: strings
``StringValue``, booleans ``BoolValue``, integers ``Int32Value`` (``Int64Value`` beyond 32
bits), other numbers ``FloatValue``. PROJECT: a nested object or list (upstream refuses the
whole device) travels as a ``StringValue`` holding its JSON, so a mapper can say what is wrong.

    pb_device = device_to_pb(obj)
    pb_model = model_to_pb(obj)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from google.protobuf import any_pb2, wrappers_pb2

from pykubeedge.api.dmi.v1beta1 import api_pb2 as pb

_INT32 = range(-(2**31), 2**31)


def to_any(value: Any) -> any_pb2.Any:
    out = any_pb2.Any()
    if isinstance(value, bool):
        out.Pack(wrappers_pb2.BoolValue(value=value))
    elif isinstance(value, int):
        out.Pack(wrappers_pb2.Int32Value(value=value) if value in _INT32
                 else wrappers_pb2.Int64Value(value=value))
    elif isinstance(value, float):
        out.Pack(wrappers_pb2.FloatValue(value=value))
    elif isinstance(value, str):
        out.Pack(wrappers_pb2.StringValue(value=value))
    else:
        out.Pack(wrappers_pb2.StringValue(value=orjson.dumps(value).decode()))
    return out


def _customized(data: Any) -> pb.CustomizedValue:
    out = pb.CustomizedValue()
    if isinstance(data, Mapping):
        for key, value in data.items():
            if value is not None:
                out.data[str(key)].CopyFrom(to_any(value))
    return out


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _twin_property(value: Any) -> pb.TwinProperty:
    v = _obj(value)
    meta = {str(k): _str(x) for k, x in _obj(v.get("metadata")).items()}
    return pb.TwinProperty(value=_str(v.get("value")), metadata=meta)


def _push_method(value: Any) -> pb.PushMethod | None:
    v = _obj(value)
    if not v:
        return None
    out = pb.PushMethod()
    http = _obj(v.get("http"))
    if http:
        out.http.CopyFrom(pb.PushMethodHTTP(
            hostname=_str(http.get("hostName") or http.get("hostname")),
            port=_int(http.get("port")), requestpath=_str(http.get("requestPath")
                                                          or http.get("requestpath")),
            timeout=_int(http.get("timeout"))))
    mqtt = _obj(v.get("mqtt"))
    if mqtt:
        out.mqtt.CopyFrom(pb.PushMethodMQTT(address=_str(mqtt.get("address")),
                                            topic=_str(mqtt.get("topic")),
                                            qos=_int(mqtt.get("qos")),
                                            retained=bool(mqtt.get("retained"))))
    return out


def device_to_pb(obj: Mapping[str, Any]) -> pb.Device:
    meta, spec = _obj(obj.get("metadata")), _obj(obj.get("spec"))
    protocol = _obj(spec.get("protocol"))
    dev = pb.Device(name=_str(meta.get("name")), namespace=_str(meta.get("namespace")))
    dev.spec.deviceModelReference = _str(_obj(spec.get("deviceModelRef")).get("name"))
    dev.spec.protocol.protocolName = _str(protocol.get("protocolName"))
    dev.spec.protocol.configData.CopyFrom(_customized(protocol.get("configData")))
    props = spec.get("properties")
    for prop in props if isinstance(props, list) else ():
        p = _obj(prop)
        visitors = _obj(p.get("visitors"))
        item = dev.spec.properties.add(
            name=_str(p.get("name")), reportCycle=_int(p.get("reportCycle")),
            collectCycle=_int(p.get("collectCycle")), reportToCloud=bool(p.get("reportToCloud")))
        if p.get("desired") is not None:
            item.desired.CopyFrom(_twin_property(p.get("desired")))
        item.visitors.protocolName = _str(visitors.get("protocolName"))
        item.visitors.configData.CopyFrom(_customized(visitors.get("configData")))
        push = _push_method(p.get("pushMethod"))
        if push is not None:
            item.pushMethod.CopyFrom(push)
    methods = spec.get("methods")
    for method in methods if isinstance(methods, list) else ():
        m = _obj(method)
        names = m.get("propertyNames")
        dev.spec.methods.add(name=_str(m.get("name")), description=_str(m.get("description")),
                             propertyNames=[_str(n) for n in names]
                             if isinstance(names, list) else [])
    state = _obj(spec.get("stateReport") or spec.get("state"))
    if state:
        dev.status.reportCycle = _int(state.get("reportCycle"))
        dev.status.reportToCloud = bool(state.get("reportToCloud"))
    return dev


def model_to_pb(obj: Mapping[str, Any]) -> pb.DeviceModel:
    meta, spec = _obj(obj.get("metadata")), _obj(obj.get("spec"))
    model = pb.DeviceModel(name=_str(meta.get("name")), namespace=_str(meta.get("namespace")))
    props = spec.get("properties")
    for prop in props if isinstance(props, list) else ():
        p = _obj(prop)
        model.spec.properties.add(
            name=_str(p.get("name")), description=_str(p.get("description")),
            type=_str(p.get("type")), accessMode=_str(p.get("accessMode")),
            minimum=_str(p.get("minimum")), maximum=_str(p.get("maximum")),
            unit=_str(p.get("unit")))
    return model


def protocol_of(obj: Mapping[str, Any]) -> str:
    """The Device's ``spec.protocol.protocolName`` (DeviceModels: ``spec.protocol``)."""
    spec = _obj(obj.get("spec"))
    protocol = spec.get("protocol")
    if isinstance(protocol, Mapping):
        return _str(protocol.get("protocolName"))
    return _str(protocol)
