"""ObjectSync records as the controllers see them: what each edge node has ACKed, per object
(``reliablesyncs.kubeedge.io/v1alpha1`` ObjectSync / ClusterObjectSync, named
``<node>.<objectUID>``).

SyncController keeps the records; EdgeController (and DeviceController next) use them only
through :class:`SyncRecords`, so no controller imports another::

    if records.should_send(node, msg):
        await records.ensure_record(node, msg)   # before an ACK message first goes down
        await ctx.send("cloudhub", msg)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final, Protocol

from pykubeedge.core.constants import ResourceType
from pykubeedge.core.message import Message

KIND_OF_TYPE: Final = {ResourceType.POD: "Pod", ResourceType.CONFIGMAP: "ConfigMap",
                       ResourceType.SECRET: "Secret", ResourceType.NODE: "Node",
                       ResourceType.DEVICE: "Device", ResourceType.DEVICE_MODEL: "DeviceModel"}
"""The kinds that have records, by resource type."""
API_VERSION_OF_KIND: Final = {"Device": "devices.kubeedge.io/v1beta1",
                              "DeviceModel": "devices.kubeedge.io/v1beta1"}
"""A record's ``objectAPIVersion`` when it is not "v1"."""


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


class SyncRecords(Protocol):
    """What a controller asks of the records (SyncController implements it)."""

    @property
    def loaded(self) -> asyncio.Event:
        """Set once the records are read from the API server."""
        ...

    def nodes(self) -> set[str]:
        """The nodes that have records."""
        ...

    def records_of(self, node: str, kinds: frozenset[str] | None = None) -> list[Record]:
        """Every record of ``node`` (of ``kinds`` only, if given): what it may have (for a
        reconcile)."""
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
