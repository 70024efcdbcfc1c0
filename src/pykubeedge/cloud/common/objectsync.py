"""ObjectSync records as the controllers see them: what each edge node has ACKed, per object
(``reliablesyncs.kubeedge.io/v1alpha1`` ObjectSync / ClusterObjectSync, named
``<node>.<objectUID>``).

SyncController keeps the records; EdgeController and DeviceController use them only through
:class:`SyncRecords`, so no controller imports another. Each kind of object that has records
belongs to one controller (:data:`RECORD_KINDS`): that controller sends it and reconciles its
records, and leaves the others' alone::

    if records.should_send(node, msg):
        await records.ensure_record(node, msg)   # before an ACK message first goes down
        await ctx.send("cloudhub", msg)
    for rec in records.records_of(node, DEVICECONTROLLER_KINDS): ...   # a reconcile
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final, Protocol

from pykubeedge.core.constants import CloudModule, ResourceType
from pykubeedge.core.device import DEVICE_API_VERSION
from pykubeedge.core.message import Message


@dataclass(frozen=True, slots=True)
class RecordKind:
    """A kind of object that has records: its resource type in messages, its Kubernetes kind
    and apiVersion (the record's ``objectKind`` and ``objectAPIVersion``), and the controller
    that sends it down and reconciles its records."""

    resource_type: str
    kind: str
    api_version: str
    controller: str


RECORD_KINDS: Final = (
    RecordKind(ResourceType.POD, "Pod", "v1", CloudModule.EDGECONTROLLER),
    RecordKind(ResourceType.CONFIGMAP, "ConfigMap", "v1", CloudModule.EDGECONTROLLER),
    RecordKind(ResourceType.SECRET, "Secret", "v1", CloudModule.EDGECONTROLLER),
    RecordKind(ResourceType.NODE, "Node", "v1", CloudModule.EDGECONTROLLER),
    RecordKind(ResourceType.DEVICE, "Device", DEVICE_API_VERSION, CloudModule.DEVICECONTROLLER),
    RecordKind(ResourceType.DEVICE_MODEL, "DeviceModel", DEVICE_API_VERSION,
               CloudModule.DEVICECONTROLLER),
)
"""Every kind that has records (upstream: EdgeController's and DeviceController's objects)."""

KIND_OF_TYPE: Final = {k.resource_type: k.kind for k in RECORD_KINDS}
"""The kinds that have records, by resource type."""
_API_VERSION_OF_KIND: Final = {k.kind: k.api_version for k in RECORD_KINDS}


def kinds_of(controller: str) -> frozenset[str]:
    """The kinds whose records ``controller`` reconciles.

    >>> sorted(kinds_of("devicecontroller"))
    ['Device', 'DeviceModel']
    """
    return frozenset(k.kind for k in RECORD_KINDS if k.controller == controller)


EDGECONTROLLER_KINDS: Final = kinds_of(CloudModule.EDGECONTROLLER)
DEVICECONTROLLER_KINDS: Final = kinds_of(CloudModule.DEVICECONTROLLER)


@dataclass
class Record:
    """One object on one node and the resourceVersion the node ACKed ("0" until then)."""

    node: str
    uid: str
    namespace: str | None  # None: cluster-scoped (ClusterObjectSync)
    kind: str
    name: str
    rv: str

    @property
    def resource_name(self) -> str:
        """``<node>.<uid>``, the record's own name."""
        return f"{self.node}.{self.uid}"

    @property
    def resource_type(self) -> str:
        return self.kind.lower()

    @property
    def api_version(self) -> str:
        """The object's apiVersion (the record's ``objectAPIVersion``)."""
        return _API_VERSION_OF_KIND.get(self.kind, "v1")


class SyncRecords(Protocol):
    """What a controller asks of the records (SyncController implements it)."""

    @property
    def loaded(self) -> asyncio.Event:
        """Set once the records are read from the API server."""
        ...

    def nodes(self, kinds: frozenset[str] | None = None) -> set[str]:
        """The nodes that have records (of ``kinds`` only, if given)."""
        ...

    def records_of(self, node: str, kinds: frozenset[str] | None = None) -> list[Record]:
        """Every record of ``node`` (of ``kinds`` only, if given): what it may have, for a
        reconcile. A controller asks for its own kinds (``EDGECONTROLLER_KINDS``, ...)."""
        ...

    def should_send(self, node: str, msg: Message) -> bool:
        """False when ``node`` already ACKed this version (or a newer one) of the object."""
        ...

    async def ensure_record(self, node: str, msg: Message) -> None:
        """The record exists (RV "0") before an ACK message first goes to ``node``."""
        ...

    def node_exists(self, node: str) -> None:
        """The node is (again) an edge node: its ACKs count."""
        ...

    def forget_node(self, node: str) -> int:
        """The node is gone: drop its records; returns how many."""
        ...
