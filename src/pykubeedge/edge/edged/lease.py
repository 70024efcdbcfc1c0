"""Edged's node lease (kubelet's ``nodelease`` controller): the ``kube-node-lease`` Lease of
this node, created once and renewed every ``renew_interval`` (a quarter of its duration).
Renewing again after failures makes the node status manager report at once::

    lease = NodeLease(state, node_status, duration_seconds=40, renew_interval=10)
    task_group.create_task(lease.run())
"""

from __future__ import annotations

import logging
from typing import Any

from pykubeedge.core.constants import Operation, ResourceType
from pykubeedge.core.resource import build_edge
from pykubeedge.edge.edged.metaclient import MetaRequestError, list_items, object_resp
from pykubeedge.edge.edged.node import NODE_LEASE_NAMESPACE, lease_object
from pykubeedge.edge.edged.nodestatus import NodeStatus
from pykubeedge.edge.edged.state import EdgedState

log = logging.getLogger(__name__)


class NodeLease:
    def __init__(self, state: EdgedState, node: NodeStatus, *, duration_seconds: int,
                 renew_interval: float) -> None:
        self.s = state
        self.node = node
        self.duration_seconds = duration_seconds
        self.renew_interval = renew_interval
        self._lease: dict[str, Any] | None = None
        self._created = False
        self._failing = False

    async def run(self) -> None:
        """Renew every ``renew_interval`` once the node is registered."""
        await self.node.registered.wait()
        while True:
            await self.renew()
            await self.s.sleep(self.renew_interval)

    async def renew(self) -> bool:
        """Create (first) or update the node Lease; True on success."""
        resource = build_edge(NODE_LEASE_NAMESPACE, ResourceType.LEASE, self.s.node_name)
        for _ in range(2):  # "already exists" or a conflict: re-read, then update at once
            operation = Operation.UPDATE if self._created else Operation.INSERT
            lease = lease_object(
                self.s.node_name,
                duration_seconds=self.duration_seconds,
                renew_time=self.s.clock(),
                node_uid=self.node.node_uid,
                base=self._lease,
            )
            try:
                content = await self.s.meta.request(operation, resource, lease)
                obj, err = object_resp(content)
                if err:
                    raise MetaRequestError(err)
            except MetaRequestError as exc:
                text = str(exc).lower()
                if "already exists" in text or _is_conflict(text):
                    # The Lease exists (edgecore restarted) or moved on: an update needs its
                    # current resourceVersion, or the API server refuses it.
                    self._created = True
                    self._lease = await self._read(resource)
                    continue
                if operation == Operation.UPDATE and "not found" in text:
                    self._created, self._lease = False, None
                if not self._failing:
                    log.warning("edged: lease not renewed: %s", exc)
                self._failing = True
                return False
            self._created = True
            if obj is not None:
                self._lease = obj
            if self._failing:
                # Back in touch: the node may have been marked NotReady meanwhile.
                log.info("edged: lease renewed again; refreshing node status")
                self._failing = False
                self.node.force_update()
            return True
        return False

    async def _read(self, resource: str) -> dict[str, Any] | None:
        """The node's Lease as the API server has it now (through MetaManager), or None."""
        try:
            content = await self.s.meta.request(Operation.QUERY, resource)
        except MetaRequestError as exc:
            log.info("edged: lease not re-read: %s", exc)
            return None
        obj, err = object_resp(content)
        if obj is None and not err:
            items = list_items(content)
            obj = items[0] if len(items) == 1 else None
        return obj if obj is not None and not err else None


def _is_conflict(text: str) -> bool:
    """Whether an error text is the API server's optimistic-concurrency refusal."""
    return ("the object has been modified" in text or "conflict" in text
            or "resourceversion" in text)
