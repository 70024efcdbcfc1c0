"""Server-side printing: ``meta.k8s.io/v1`` Tables, the format ``kubectl get`` asks for first.

The columns are those the Kubernetes API server prints for the same resources, so that
``kubectl --server http://127.0.0.1:10550 get pods -A`` looks as it does against a cluster::

    table = to_table(BY_PLURAL["pods"], pods, revision=42, include_object="Metadata")
    table["rows"][0]["cells"]     # ['nginx', '1/1', 'Running', 0, '5m', ...]
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from pykubeedge.edge.metamanager.resources import V2Resource

Cells = list[Any]
Printer = Callable[[Mapping[str, Any], dt.datetime], Cells]

TABLE_API_VERSION: Final = "meta.k8s.io/v1"
INCLUDE_OBJECT: Final = ("None", "Metadata", "Object")
NONE: Final = "<none>"


def column(name: str, type_: str = "string", description: str = "", *, priority: int = 0,
           format_: str = "") -> dict[str, Any]:
    """A ``TableColumnDefinition``."""
    return {"name": name, "type": type_, "format": format_, "description": description,
            "priority": priority}


NAME_COLUMN: Final = column("Name", format_="name", description="Name of the object.")
AGE_COLUMN: Final = column("Age", description="Time since the object was created.")


def to_table(resource: V2Resource, objects: Iterable[Mapping[str, Any]], *, revision: int,
             include_object: str = "Metadata", with_columns: bool = True,
             now: dt.datetime | None = None) -> dict[str, Any]:
    """A Table of ``objects``; rows carry the object as ``include_object`` says.

    >>> to_table(BY_PLURAL["configmaps"], [cm], revision=3)["columnDefinitions"][1]["name"]
    'Data'
    """
    now = now or dt.datetime.now(dt.UTC)
    columns, printer = _PRINTERS.get(resource.plural, ([NAME_COLUMN, AGE_COLUMN], _generic))
    table: dict[str, Any] = {
        "kind": "Table",
        "apiVersion": TABLE_API_VERSION,
        "metadata": {"resourceVersion": str(revision)},
        "columnDefinitions": columns if with_columns else [],
        "rows": [_row(obj, printer, include_object, now) for obj in objects],
    }
    return table


def _row(obj: Mapping[str, Any], printer: Printer, include_object: str,
         now: dt.datetime) -> dict[str, Any]:
    row: dict[str, Any] = {"cells": printer(obj, now)}
    if include_object == "Object":
        row["object"] = obj
    elif include_object == "Metadata":
        row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": TABLE_API_VERSION,
                         "metadata": _metadata(obj)}
    return row


# -- printers ------------------------------------------------------------------------------


def _generic(obj: Mapping[str, Any], now: dt.datetime) -> Cells:
    return [_name(obj), _age(obj, now)]


POD_COLUMNS: Final = [
    NAME_COLUMN,
    column("Ready", description="The aggregate readiness state of this pod."),
    column("Status", description="The aggregate status of the containers in this pod."),
    column("Restarts", description="The number of times the containers have restarted."),
    AGE_COLUMN,
    column("IP", description="IP address allocated to the pod.", priority=1),
    column("Node", description="Name of the node the pod is bound to.", priority=1),
    column("Nominated Node", description="Nominated node name.", priority=1),
    column("Readiness Gates", description="Pod readiness gates.", priority=1),
]


def _pod(obj: Mapping[str, Any], now: dt.datetime) -> Cells:
    spec, status = _dict(obj.get("spec")), _dict(obj.get("status"))
    containers = _list(spec.get("containers"))
    statuses = [_dict(s) for s in _list(status.get("containerStatuses"))]
    reason = str(status.get("reason") or status.get("phase") or "Pending")
    restarts = 0
    last_restart: str | None = None
    for init in (_dict(s) for s in _list(status.get("initContainerStatuses"))):
        restarts += _int(init.get("restartCount"))
    ready = 0
    running = False
    for cs in reversed(statuses):
        restarts += _int(cs.get("restartCount"))
        state = _dict(cs.get("state"))
        waiting, terminated = _dict(state.get("waiting")), _dict(state.get("terminated"))
        finished = _dict(_dict(cs.get("lastState")).get("terminated")).get("finishedAt")
        if isinstance(finished, str) and (last_restart is None or finished > last_restart):
            last_restart = finished
        if waiting.get("reason"):
            reason = str(waiting["reason"])
        elif terminated.get("reason"):
            reason = str(terminated["reason"])
        elif terminated:
            signal = _int(terminated.get("signal"))
            reason = (f"Signal:{signal}" if signal
                      else f"ExitCode:{_int(terminated.get('exitCode'))}")
        elif cs.get("ready") and "running" in state:
            running = True
            ready += 1
    if reason == "Completed" and running:
        reason = "Running"
    metadata = _dict(obj.get("metadata"))
    if metadata.get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    restart_cell: Any = restarts
    if restarts and last_restart:
        restart_cell = f"{restarts} ({_since(last_restart, now)} ago)"
    gates = _list(spec.get("readinessGates"))
    return [
        _name(obj), f"{ready}/{len(containers)}", reason, restart_cell, _age(obj, now),
        status.get("podIP") or NONE, spec.get("nodeName") or NONE,
        status.get("nominatedNodeName") or NONE,
        f"0/{len(gates)}" if gates else NONE,
    ]


CONFIGMAP_COLUMNS: Final = [
    NAME_COLUMN,
    column("Data", "integer", "Number of data entries."),
    AGE_COLUMN,
]


def _configmap(obj: Mapping[str, Any], now: dt.datetime) -> Cells:
    count = len(_dict(obj.get("data"))) + len(_dict(obj.get("binaryData")))
    return [_name(obj), count, _age(obj, now)]


SECRET_COLUMNS: Final = [
    NAME_COLUMN,
    column("Type", description="The type of the secret."),
    column("Data", "integer", "Number of data entries."),
    AGE_COLUMN,
]


def _secret(obj: Mapping[str, Any], now: dt.datetime) -> Cells:
    return [_name(obj), obj.get("type") or "Opaque", len(_dict(obj.get("data"))),
            _age(obj, now)]


SERVICE_COLUMNS: Final = [
    NAME_COLUMN,
    column("Type", description="The type of the service."),
    column("Cluster-IP", description="The cluster IP of the service."),
    column("External-IP", description="The external IPs of the service."),
    column("Port(s)", description="The ports of the service."),
    AGE_COLUMN,
    column("Selector", description="The pod selector of the service.", priority=1),
]


def _service(obj: Mapping[str, Any], now: dt.datetime) -> Cells:
    spec = _dict(obj.get("spec"))
    kind = str(spec.get("type") or "ClusterIP")
    external: list[str] = [str(ip) for ip in _list(spec.get("externalIPs"))]
    if kind == "LoadBalancer":
        for ingress in _list(_dict(_dict(obj.get("status")).get("loadBalancer")).get("ingress")):
            ingress = _dict(ingress)
            external.append(str(ingress.get("ip") or ingress.get("hostname") or ""))
        external_cell = ",".join(e for e in external if e) or "<pending>"
    elif kind == "ExternalName":
        external_cell = str(spec.get("externalName") or NONE)
    else:
        external_cell = ",".join(external) or NONE
    ports = []
    for port in (_dict(p) for p in _list(spec.get("ports"))):
        text = str(port.get("port", ""))
        if port.get("nodePort"):
            text += f":{port['nodePort']}"
        ports.append(f"{text}/{port.get('protocol') or 'TCP'}")
    selector = ",".join(f"{k}={v}" for k, v in sorted(_dict(spec.get("selector")).items()))
    return [_name(obj), kind, spec.get("clusterIP") or NONE, external_cell,
            ",".join(ports) or NONE, _age(obj, now), selector or NONE]


ENDPOINTS_COLUMNS: Final = [
    NAME_COLUMN,
    column("Endpoints", description="The endpoints of the service."),
    AGE_COLUMN,
]


def _endpoints(obj: Mapping[str, Any], now: dt.datetime) -> Cells:
    pairs: list[str] = []
    for subset in (_dict(s) for s in _list(obj.get("subsets"))):
        ports = [_dict(p).get("port") for p in _list(subset.get("ports"))] or [None]
        for address in (_dict(a) for a in _list(subset.get("addresses"))):
            for port in ports:
                ip = str(address.get("ip", ""))
                pairs.append(f"{ip}:{port}" if port is not None else ip)
    shown = ",".join(pairs[:3])
    if len(pairs) > 3:
        shown += f" + {len(pairs) - 3} more..."
    return [_name(obj), shown or NONE, _age(obj, now)]


NODE_COLUMNS: Final = [
    NAME_COLUMN,
    column("Status", description="The status of the node."),
    column("Roles", description="The roles of the node."),
    AGE_COLUMN,
    column("Version", description="Kubelet version reported by the node."),
    column("Internal-IP", description="The node's internal IP.", priority=1),
    column("External-IP", description="The node's external IP.", priority=1),
    column("OS-Image", description="OS image reported by the node.", priority=1),
    column("Kernel-Version", description="Kernel version reported by the node.", priority=1),
    column("Container-Runtime", description="Container runtime of the node.", priority=1),
]

ROLE_PREFIX: Final = "node-role.kubernetes.io/"


def _node(obj: Mapping[str, Any], now: dt.datetime) -> Cells:
    spec, status = _dict(obj.get("spec")), _dict(obj.get("status"))
    state = "Unknown"
    for condition in (_dict(c) for c in _list(status.get("conditions"))):
        if condition.get("type") == "Ready":
            state = {"True": "Ready", "False": "NotReady"}.get(str(condition.get("status")),
                                                               "Unknown")
    if spec.get("unschedulable"):
        state += ",SchedulingDisabled"
    labels = _dict(_dict(obj.get("metadata")).get("labels"))
    roles = sorted({k[len(ROLE_PREFIX):] for k in labels if k.startswith(ROLE_PREFIX)} - {""})
    if labels.get("kubernetes.io/role"):
        roles = sorted({*roles, str(labels["kubernetes.io/role"])})
    addresses = [_dict(a) for a in _list(status.get("addresses"))]
    info = _dict(status.get("nodeInfo"))

    def address(kind: str) -> str:
        return next((str(a.get("address")) for a in addresses if a.get("type") == kind), NONE)

    return [_name(obj), state, ",".join(roles) or NONE, _age(obj, now),
            info.get("kubeletVersion") or "", address("InternalIP"), address("ExternalIP"),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


_PRINTERS: Final[dict[str, tuple[list[dict[str, Any]], Printer]]] = {
    "pods": (POD_COLUMNS, _pod),
    "configmaps": (CONFIGMAP_COLUMNS, _configmap),
    "secrets": (SECRET_COLUMNS, _secret),
    "services": (SERVICE_COLUMNS, _service),
    "endpoints": (ENDPOINTS_COLUMNS, _endpoints),
    "nodes": (NODE_COLUMNS, _node),
}


# -- helpers -------------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """A duration the way kubectl shows ages (``duration.HumanDuration``).

    >>> [human_duration(s) for s in (5, 150, 3 * 3600 + 60, 3 * 86400)]
    ['5s', '2m30s', '3h1m', '3d']
    """
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    if days < 365 * 8:
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{days // 365}y"


def _since(timestamp: str, now: dt.datetime) -> str:
    try:
        then = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    if then.tzinfo is None:
        then = then.replace(tzinfo=dt.UTC)
    return human_duration((now - then).total_seconds())


def _age(obj: Mapping[str, Any], now: dt.datetime) -> str:
    created = _dict(obj.get("metadata")).get("creationTimestamp")
    return _since(created, now) if isinstance(created, str) else "<unknown>"


def _name(obj: Mapping[str, Any]) -> str:
    return str(_dict(obj.get("metadata")).get("name", ""))


def _metadata(obj: Mapping[str, Any]) -> dict[str, Any]:
    return dict(_dict(obj.get("metadata")))


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
