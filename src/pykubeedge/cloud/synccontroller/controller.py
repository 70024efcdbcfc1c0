"""SyncController: what each edge node has ACKed, kept in ObjectSync / ClusterObjectSync
records (``reliablesyncs.kubeedge.io/v1alpha1``), named ``<node>.<objectUID>``.

The records are cached in memory (loaded once at start) and written back by a coalescing
writer: many ACKs of one object become one API write of the newest version. EdgeController
asks the cache whether a message is newer than what the node has (``should_send``) and which
records a node has (``records_of``) when it reconciles a node after a reconnect or a cloudcore
restart; DeviceController asks the same of its own kinds. Nothing here rescans every record
every 5 s, as upstream does.

    sync = SyncController(kube)
    hive.add_module(sync)
    hub = CloudHub(..., ack_listener=sync.on_ack)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from typing import Any

from pykubeedge.beehive import BeehiveContext, RestartPolicy, RestartType
from pykubeedge.beehive.clock import REAL_CLOCK
from pykubeedge.cloud.common.objectsync import KIND_OF_TYPE, Record
from pykubeedge.core.clock import Clock
from pykubeedge.core.constants import CloudGroup, CloudModule, Operation
from pykubeedge.core.errors import Conflict, DecodeError, KubeError, NotFound
from pykubeedge.core.hubproto import object_uid, rv_newer
from pykubeedge.core.message import Message
from pykubeedge.core.resource import parse_edge, trim_for_edge
from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.resources import CLUSTEROBJECTSYNCS, OBJECTSYNCS

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class _Delete:
    record: Record


class SyncController:
    """The ``synccontroller`` module; it implements :class:`~..common.objectsync.SyncRecords`
    for the other controllers."""

    name = CloudModule.SYNCCONTROLLER
    group = CloudGroup.SYNCCONTROLLER
    restart_policy = RestartPolicy(RestartType.ON_FAILURE, retries=0)

    def __init__(self, kube: KubeClient, *, writers: int = 4, max_pending: int = 100_000,
                 clock: Clock = REAL_CLOCK, retry_interval: float = 1.0) -> None:
        self.kube = kube
        self.clock = clock
        self.retry_interval = retry_interval
        self.records: dict[tuple[str, str], Record] = {}
        self._by_node: dict[str, set[str]] = defaultdict(set)
        self._dirty: OrderedDict[tuple[str, str], Record | _Delete] = OrderedDict()
        self._dirty_event = asyncio.Event()
        self._busy: set[tuple[str, str]] = set()
        self._deleted_nodes: dict[str, None] = {}  # recently deleted (bounded, ordered)
        self._writers = writers
        self._max_pending = max_pending
        self.loaded = asyncio.Event()
        self.writes = 0

    # -- cache ---------------------------------------------------------------------------

    def nodes(self, kinds: frozenset[str] | None = None) -> set[str]:
        """The nodes that have records (of ``kinds`` only, if given)."""
        if kinds is None:
            return set(self._by_node)
        return {node for node in self._by_node if self.records_of(node, kinds)}

    def records_of(self, node: str, kinds: frozenset[str] | None = None) -> list[Record]:
        """The node's records, of ``kinds`` only if given (each controller reconciles its own)."""
        records = [self.records[(node, uid)] for uid in self._by_node.get(node, ())]
        return records if kinds is None else [r for r in records if r.kind in kinds]

    def should_send(self, node: str, msg: Message) -> bool:
        """False when ``node`` already ACKed this version (or a newer one) of the object."""
        uid = object_uid(msg)
        if uid is None or msg.operation == Operation.DELETE:
            return True
        rec = self.records.get((node, uid))
        return rec is None or rv_newer(msg.resourceversion, rec.rv)

    async def ensure_record(self, node: str, msg: Message) -> None:
        """Before an ACK message first goes to ``node``, its record exists in the API server
        (RV "0" until ACKed). So even if cloudcore crashes right after sending, an object
        deleted later is still deleted on the edge: the record says the edge may have it."""
        rec = self._record_for(node, msg)
        if rec is None or (node, rec.uid) in self.records:
            return
        rec.rv = "0"
        self.records[(node, rec.uid)] = rec
        self._by_node[node].add(rec.uid)
        try:
            await self._create(rec)
        except KubeError as exc:
            log.warning("creating sync record %s failed (%s); retrying in the background",
                        rec.resource_name, exc)
            self._mark((node, rec.uid), rec)

    def on_ack(self, node: str, msg: Message) -> None:
        """CloudHub's ACK callback: the node now has ``msg``'s version (or has deleted it)."""
        rec = self._record_for(node, msg)
        if rec is None or node in self._deleted_nodes:
            return  # (an ACK still in flight when its node was deleted)
        if msg.operation == Operation.DELETE:
            self.forget(node, rec.uid)
            return
        known = self.records.get((node, rec.uid))
        if known is not None and not rv_newer(msg.resourceversion, known.rv):
            return
        rec.rv = msg.resourceversion or "0"
        self._put(rec)

    def forget(self, node: str, uid: str) -> None:
        rec = self.records.pop((node, uid), None)
        if rec is None:
            return
        self._by_node[node].discard(uid)
        if not self._by_node[node]:
            del self._by_node[node]
        self._mark((node, uid), _Delete(rec))

    def node_exists(self, node: str) -> None:
        """The node is (again) an edge node: ACKs from it count."""
        self._deleted_nodes.pop(node, None)

    def forget_node(self, node: str) -> int:
        """The node is gone: drop all its records."""
        self._deleted_nodes[node] = None
        while len(self._deleted_nodes) > 10_000:
            del self._deleted_nodes[next(iter(self._deleted_nodes))]
        uids = list(self._by_node.get(node, ()))
        for uid in uids:
            self.forget(node, uid)
        return len(uids)

    def _put(self, rec: Record) -> None:
        self.records[(rec.node, rec.uid)] = rec
        self._by_node[rec.node].add(rec.uid)
        self._mark((rec.node, rec.uid), rec)

    def _mark(self, key: tuple[str, str], value: Record | _Delete) -> None:
        if len(self._dirty) >= self._max_pending and key not in self._dirty:
            log.error("sync record writer is %d behind; dropping the write for %s (the next "
                      "reconcile repairs it)", len(self._dirty), key)
            return
        self._dirty[key] = value
        self._dirty_event.set()

    @staticmethod
    def _record_for(node: str, msg: Message) -> Record | None:
        uid = object_uid(msg)
        if uid is None:
            return None
        try:  # the cloud form (as EdgeController sent it) or the edge form (as it went down)
            res = parse_edge(trim_for_edge(msg.resource))
        except DecodeError:
            return None
        kind = KIND_OF_TYPE.get(res.resource_type)
        if kind is None or res.is_list:
            return None
        return Record(node, uid, None if res.cluster_scoped else res.namespace, kind, res.name,
                      msg.resourceversion or "0")

    # -- module ------------------------------------------------------------------------------

    async def start(self, ctx: BeehiveContext) -> None:
        await self._load()
        async with asyncio.TaskGroup() as tg:
            for i in range(self._writers):
                tg.create_task(self._write_loop(), name=f"objectsync-writer-{i}")

    async def _load(self) -> None:
        for res in (OBJECTSYNCS, CLUSTEROBJECTSYNCS):
            items = (await self.kube.list(res))["items"]
            for item in items:
                meta, spec = item["metadata"], item.get("spec") or {}
                # Node names may hold dots, UIDs never do.
                node, _, uid = meta["name"].rpartition(".")
                if not uid:
                    continue
                rec = Record(node, uid, meta.get("namespace"), spec.get("objectKind", ""),
                             spec.get("objectName", ""),
                             str((item.get("status") or {}).get("objectResourceVersion") or "0"))
                self.records[(node, uid)] = rec
                self._by_node[node].add(uid)
        log.info("loaded %d sync records", len(self.records))
        self.loaded.set()

    async def _write_loop(self) -> None:
        while True:
            key = next((k for k in self._dirty if k not in self._busy), None)
            if key is None:
                self._dirty_event.clear()
                await self._dirty_event.wait()
                continue
            value = self._dirty.pop(key)
            self._busy.add(key)  # one write per record at a time keeps them in order
            try:
                await self._write(value)
                self.writes += 1
            except KubeError as exc:
                if 400 <= exc.status < 500 and exc.status not in (409, 429):
                    log.error("sync record %s cannot be written (%s); dropped", key, exc)
                    continue
                log.warning("writing sync record %s failed: %s; retrying later", key, exc)
                self._dirty.setdefault(key, value)
                await self.clock.sleep(self.retry_interval)
            finally:
                self._busy.discard(key)
                if self._dirty:
                    self._dirty_event.set()

    async def _write(self, value: Record | _Delete) -> None:
        if isinstance(value, _Delete):
            rec = value.record
            res = CLUSTEROBJECTSYNCS if rec.namespace is None else OBJECTSYNCS
            with contextlib.suppress(NotFound):
                await self.kube.delete(res, rec.resource_name, namespace=rec.namespace)
            return
        rec = value
        res = CLUSTEROBJECTSYNCS if rec.namespace is None else OBJECTSYNCS
        status = {"status": {"objectResourceVersion": rec.rv}}
        try:
            await self.kube.patch_status(res, rec.resource_name, status,
                                         namespace=rec.namespace, patch_type="merge")
            return
        except NotFound:
            pass
        if await self._create(rec):
            await self.kube.patch_status(res, rec.resource_name, status,
                                         namespace=rec.namespace, patch_type="merge")

    async def _create(self, rec: Record) -> bool:
        """Create the record; False if its namespace is gone (and so is the object)."""
        res = CLUSTEROBJECTSYNCS if rec.namespace is None else OBJECTSYNCS
        body: dict[str, Any] = {"metadata": {"name": rec.resource_name},
                                "spec": {"objectAPIVersion": rec.api_version,
                                         "objectKind": rec.kind,
                                         "objectName": rec.name}}
        if rec.namespace is not None:
            body["metadata"]["namespace"] = rec.namespace
        try:
            await self.kube.create(res, body)
        except Conflict:
            pass
        except NotFound:
            return False
        return True
