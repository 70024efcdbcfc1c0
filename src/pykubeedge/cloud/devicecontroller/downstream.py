"""What DeviceController sends down (upstream ``controller/downstream.go``): the membership of a
node (``node/<node>/membership``, group ``twin``, no ACK), and the Device and DeviceModel
objects (``node/<node>/<ns>/device/<name>``, ``.../devicemodel/<name>``, group ``resource``,
with their resourceVersion: ACKed and recorded in ObjectSyncs like pods).

    membership_message("edge-1", added=[device])
    object_message("edge-1", "device", device, Operation.INSERT)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pykubeedge.core.constants import CloudModule, MessageGroup, Operation, ResourceType
from pykubeedge.core.device import DEVICE_API_VERSION, description_of
from pykubeedge.core.message import Message, new_id, new_message, now_ms
from pykubeedge.core.objects import name_of, namespace_of, resource_version_of, spec_of
from pykubeedge.core.resource import build_cloud, prefix_for_cloud

Obj = dict[str, Any]

KIND_OF = {ResourceType.DEVICE: "Device", ResourceType.DEVICE_MODEL: "DeviceModel"}


def member_entry(device: Obj) -> Obj:
    """A device in a membership update: ``id`` (``<ns>/<name>``), ``name`` and the label
    ``description`` if any, as upstream (no twins, no attributes)."""
    name = name_of(device)
    entry = {"id": f"{namespace_of(device)}/{name}", "name": name}
    description = description_of(device)
    if description:
        entry["description"] = description
    return entry


def membership_message(node: str, *, added: Iterable[Obj] = (), removed: Iterable[Obj] = (),
                       new_id: Callable[[], str] = new_id,
                       now_ms: Callable[[], int] = now_ms) -> Message:
    """``MembershipUpdate`` for ``node``; an empty list is JSON null, as Go's nil slice.

    >>> m = membership_message("e1", added=[{"metadata": {"name": "d", "namespace": "ns"}}])
    >>> (m.resource, m.group, m.content["added_devices"], m.content["removed_devices"])
    ('node/e1/membership', 'twin', [{'id': 'ns/d', 'name': 'd'}], None)
    """
    add = [member_entry(d) for d in added]
    remove = [member_entry(d) for d in removed]
    return new_message(source=CloudModule.DEVICECONTROLLER, group=MessageGroup.TWIN,
                       resource=prefix_for_cloud(node, ResourceType.MEMBERSHIP),
                       operation=Operation.UPDATE,
                       content={"event_id": new_id(), "timestamp": now_ms(),
                                "added_devices": add or None, "removed_devices": remove or None})


def with_kind(obj: Obj, rtype: str) -> Obj:
    if "kind" in obj and "apiVersion" in obj:
        return obj
    return {"apiVersion": DEVICE_API_VERSION, "kind": KIND_OF[rtype], **obj}


def object_message(node: str, rtype: str, obj: Obj, operation: str) -> Message:
    """A Device or DeviceModel for ``node`` (the full v1beta1 object, as upstream).

    >>> object_message("e1", "device", {"metadata": {"name": "d", "namespace": "ns"}},
    ...                Operation.INSERT).resource
    'node/e1/ns/device/d'
    """
    return new_message(source=CloudModule.DEVICECONTROLLER, group=MessageGroup.RESOURCE,
                       operation=operation,
                       resource=build_cloud(node, namespace_of(obj), rtype, name_of(obj)),
                       resourceversion=resource_version_of(obj), content=with_kind(obj, rtype))


def gone_object(rtype: str, namespace: str, name: str, uid: str) -> Obj:
    """What a delete carries when only a sync record is left of the object."""
    return {"apiVersion": DEVICE_API_VERSION, "kind": KIND_OF[rtype],
            "metadata": {"name": name, "namespace": namespace, "uid": uid}}


def model_key(device: Obj) -> str | None:
    """``<ns>/<model>`` of a Device's ``spec.deviceModelRef``, if it names one.

    >>> model_key({"metadata": {"namespace": "ns"}, "spec": {"deviceModelRef": {"name": "m"}}})
    'ns/m'
    """
    ref = spec_of(device).get("deviceModelRef")
    name = ref.get("name") if isinstance(ref, dict) else None
    return f"{namespace_of(device)}/{name}" if isinstance(name, str) and name else None

