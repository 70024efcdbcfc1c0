"""EdgeController: sends nodes, pods, ConfigMaps and Secrets down to the edge nodes that need
them, and serves what the edges ask of the API server (``upstream.py``).

Downstream is event-driven: informers on edge Nodes, scheduled Pods, ConfigMaps and Secrets
turn each change into an insert/update/delete for exactly the nodes concerned (a ConfigMap goes
only to nodes whose pods use it). Messages a node has already ACKed (per SyncController's
records) are not sent again, so a cloudcore restart does not resend the world. A node is
*reconciled* (everything newer than its records sent, deletes for what is gone) when cloudcore
starts and whenever the node connects.

    ec = EdgeController(kube, sync)      # sync: the ObjectSync records (SyncController)
    hive.add_module(ec)
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from typing import Any

from pykubeedge.beehive import BeehiveContext, RestartPolicy, RestartType
from pykubeedge.beehive.clock import REAL_CLOCK
from pykubeedge.cloud.common.objectsync import EDGECONTROLLER_KINDS, SyncRecords
from pykubeedge.cloud.edgecontroller.location import LocationCache, Ref
from pykubeedge.cloud.edgecontroller.upstream import Upstream, error_to
from pykubeedge.core.clock import Clock
from pykubeedge.core.constants import (
    NULL_NAMESPACE,
    CloudGroup,
    CloudModule,
    MessageGroup,
    Operation,
    ResourceType,
)
from pykubeedge.core.content import parse_object_reply
from pykubeedge.core.errors import DecodeError
from pykubeedge.core.hubproto import needs_ack
from pykubeedge.core.message import Message, new_message
from pykubeedge.core.objects import name_of, namespace_of, node_name_of, resource_version_of, uid_of
from pykubeedge.core.resource import build_cloud, node_of, parse_cloud, resource_type_of
from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.informer import ADDED, DELETED, Informer, InformerEvent
from pykubeedge.kube.resources import CONFIGMAPS, NODES, PODS, SECRETS, Resource

log = logging.getLogger(__name__)

EDGE_NODE_LABEL = "node-role.kubernetes.io/edge"
UPSTREAM_WORKERS = 16
UPSTREAM_QUEUE = 1024
CONCURRENT_QUERIES = 16  # read-only queries served beside a node's ordered requests
CONCURRENT_QUERY_TYPES = frozenset({
    ResourceType.SERVICE_ACCOUNT_TOKEN, ResourceType.CONFIGMAP, ResourceType.SECRET})


def _with_kind(obj: dict[str, Any], res: Resource) -> dict[str, Any]:
    if "kind" not in obj:
        obj = {"apiVersion": res.api_version, "kind": res.kind, **obj}
    return obj


def _spec_view(node: dict[str, Any]) -> Any:
    """What the edge cares about in its Node: everything but status and bookkeeping."""
    meta = {k: v for k, v in (node.get("metadata") or {}).items()
            if k not in ("resourceVersion", "managedFields", "generation")}
    return meta, node.get("spec")


class EdgeController:
    name = CloudModule.EDGECONTROLLER
    group = CloudGroup.EDGECONTROLLER
    restart_policy = RestartPolicy(RestartType.ON_FAILURE, retries=0)

    def __init__(self, kube: KubeClient, sync: SyncRecords, *,
                 cloudcore_address: str = "127.0.0.1", clock: Clock = REAL_CLOCK) -> None:
        self.kube = kube
        self.sync = sync
        self.clock = clock
        self.location = LocationCache()
        self.upstream = Upstream(kube, self.location, cloudcore_address=cloudcore_address)
        self._ctx: BeehiveContext | None = None
        sleep = clock.sleep
        self.nodes = Informer(kube, NODES, self._on_node, label_selector=EDGE_NODE_LABEL,
                              sleep=sleep)
        self.configmaps = Informer(kube, CONFIGMAPS, self._on_configmap, sleep=sleep)
        self.secrets = Informer(kube, SECRETS, self._on_secret, sleep=sleep)
        self.pods = Informer(kube, PODS, self._on_pod, field_selector="spec.nodeName!=",
                             sleep=sleep)
        self.synced = asyncio.Event()
        self._queues = [asyncio.Queue[Message](UPSTREAM_QUEUE) for _ in range(UPSTREAM_WORKERS)]
        self._query_slots = asyncio.Semaphore(CONCURRENT_QUERIES)
        self.sent = 0
        self.skipped = 0
        self._reconciling: dict[str, asyncio.Task[None]] = {}
        self._tasks: asyncio.TaskGroup | None = None
        self._reconcile_again: set[str] = set()
        self._reconcile_full: set[str] = set()
        # Nodes given their full re-send on the current connection: a node registering again
        # with nothing changed (upstream's edge does every few seconds while it is unsure of
        # its registration) gets one per connection, not one per registration.
        self._full_sent: set[str] = set()

    async def start(self, ctx: BeehiveContext) -> None:
        self._ctx = ctx
        self._reconciling.clear()
        async with asyncio.TaskGroup() as tg:
            self._tasks = tg
            for i, q in enumerate(self._queues):
                tg.create_task(self._upstream_worker(q), name=f"edgecontroller-upstream-{i}")
            tg.create_task(self._receive(ctx), name="edgecontroller-receive")
            await self.sync.loaded.wait()
            # Order matters: nodes, then what pods reference, then pods.
            for informer in (self.nodes, self.configmaps, self.secrets, self.pods):
                tg.create_task(informer.run(), name=f"informer-{informer.resource.plural}")
                await informer.synced.wait()
            for node in self.sync.nodes() - self.location.edge_nodes:
                dropped = self.sync.forget_node(node)
                log.info("node %s no longer exists; dropped its %d sync records", node, dropped)
            for node in sorted(self.location.edge_nodes):
                await self.reconcile(node)
            self.synced.set()
            log.info("EdgeController synced: %d edge nodes, %d pods on them",
                     len(self.location.edge_nodes),
                     sum(len(self.location.pods_on(n)) for n in self.location.edge_nodes))

    # -- downstream ----------------------------------------------------------------------------

    async def _send(self, node: str, rtype: str, obj: dict[str, Any], operation: str, *,
                    force: bool = False) -> None:
        resource = build_cloud(node, namespace_of(obj, default=NULL_NAMESPACE), rtype,
                               name_of(obj))
        msg = new_message(source=CloudModule.EDGECONTROLLER, group=MessageGroup.RESOURCE,
                          operation=operation, resource=resource,
                          resourceversion=resource_version_of(obj), content=obj)
        if not force and not self.sync.should_send(node, msg):
            self.skipped += 1
            return
        if needs_ack(msg):
            await self.sync.ensure_record(node, msg)
        assert self._ctx is not None
        await self._ctx.send(CloudModule.CLOUDHUB, msg)
        self.sent += 1

    async def _on_node(self, ev: InformerEvent) -> None:
        name = name_of(ev.obj)
        if ev.type == DELETED:
            self.location.edge_nodes.discard(name)
            await self._send(name, "node", _with_kind(ev.obj, NODES), Operation.DELETE)
            dropped = self.sync.forget_node(name)
            log.info("edge node %s deleted; dropped %d sync records", name, dropped)
            return
        self.location.edge_nodes.add(name)
        self.sync.node_exists(name)
        if ev.old is not None and _spec_view(ev.old) == _spec_view(ev.obj):
            return  # a status-only change: the edge wrote it itself
        await self._send(name, "node", _with_kind(ev.obj, NODES), Operation.UPDATE)

    async def _on_pod(self, ev: InformerEvent) -> None:
        pod = _with_kind(ev.obj, PODS)
        node = node_name_of(pod)
        if ev.type == DELETED:
            lost = self.location.delete_pod(pod)
            if self.location.is_edge_node(node):
                await self._send(node, "pod", pod, Operation.DELETE)
                await self._send_refs(node, lost, Operation.DELETE)
            return
        gained, lost = self.location.update_pod(pod)
        if not self.location.is_edge_node(node):
            return
        # What the pod needs goes first, so the edge can start it at once.
        await self._send_refs(node, gained, Operation.UPDATE)
        await self._send(node, "pod", pod, Operation.INSERT
                         if ev.type == ADDED and not _scheduled(pod) else Operation.UPDATE)
        await self._send_refs(node, lost, Operation.DELETE)

    async def _send_refs(self, node: str, refs: set[Ref], op: str) -> None:
        """Send (or, once no pod of the node uses them, delete) ConfigMaps and Secrets."""
        for kind, ns, name in sorted(refs):
            informer = {"configmap": self.configmaps, "secret": self.secrets}.get(kind)
            obj = informer.get(f"{ns}/{name}") if informer else None
            if informer is not None and obj is not None:
                await self._send(node, kind, _with_kind(obj, informer.resource), op)

    async def _on_configmap(self, ev: InformerEvent) -> None:
        op = {ADDED: Operation.INSERT, DELETED: Operation.DELETE}.get(ev.type, Operation.UPDATE)
        await self._fan_out("configmap", _with_kind(ev.obj, CONFIGMAPS), op)

    async def _on_secret(self, ev: InformerEvent) -> None:
        op = Operation.DELETE if ev.type == DELETED else Operation.UPDATE  # as upstream
        await self._fan_out("secret", _with_kind(ev.obj, SECRETS), op)

    async def _fan_out(self, kind: str, obj: dict[str, Any], op: str) -> None:
        nodes = self.location.nodes_for(kind, namespace_of(obj, default=""), name_of(obj))
        for node in sorted(nodes):
            if self.location.is_edge_node(node):
                await self._send(node, kind, obj, op)

    def _current(self, rtype: str, obj: dict[str, Any]) -> dict[str, Any] | None:
        informer = {"pod": self.pods, "configmap": self.configmaps, "secret": self.secrets,
                    "node": self.nodes}[rtype]
        namespace = namespace_of(obj, default="")
        return informer.get(f"{namespace}/{name_of(obj)}" if namespace else name_of(obj))

    async def reconcile(self, node: str, *, full: bool = False) -> tuple[int, int]:
        """Bring ``node`` to the API server's state: send what is newer than its records,
        delete what it has that is gone (or was replaced by a new UID). Returns (sent, deleted).

        ``full`` sends everything the node should have, whatever its records say: after the
        node registers (an edgecore start), its database may be new or wiped."""
        desired: dict[str, tuple[str, dict[str, Any], Resource]] = {}
        node_obj = self.nodes.get(node)
        if node_obj is not None:
            desired[uid_of(node_obj)] = ("node", node_obj, NODES)
        for kind, ns, name in self.location.refs_of(node):
            informer = {"configmap": self.configmaps, "secret": self.secrets}.get(kind)
            obj = informer.get(f"{ns}/{name}") if informer else None
            if informer is not None and obj is not None:
                desired[uid_of(obj)] = (kind, obj, informer.resource)
        for key in self.location.pods_on(node):
            pod = self.pods.get(key)
            if pod is not None:
                desired[uid_of(pod)] = ("pod", pod, PODS)
        # Deletes first: an object deleted and created again under the same name must not
        # have its new incarnation removed by the old one's delete.
        deleted = 0
        for rec in self.sync.records_of(node, EDGECONTROLLER_KINDS):
            if rec.uid in desired:
                continue
            gone = {"apiVersion": "v1", "kind": rec.kind,
                    "metadata": {"name": rec.name, "uid": rec.uid,
                                 **({"namespace": rec.namespace} if rec.namespace else {})}}
            await self._send(node, rec.resource_type, gone, Operation.DELETE)
            deleted += 1
        sent_before = self.sent
        for uid, (rtype, obj, res) in desired.items():
            # Re-read: the snapshot is old after the awaits above, and a delete sent (and
            # ACKed) since must not be followed by a stale update bringing the object back.
            current = self._current(rtype, obj)
            if current is None or uid_of(current) != uid:
                continue
            await self._send(node, rtype, _with_kind(current, res), Operation.UPDATE,
                             force=full)
        sent = self.sent - sent_before
        if sent or deleted:
            log.info("reconciled node %s: %d sent, %d deleted", node, sent, deleted)
        return sent, deleted

    # -- upstream ---------------------------------------------------------------------------------

    async def _receive(self, ctx: BeehiveContext) -> None:
        while True:
            msg = await ctx.receive(self.name)
            if msg.operation in (Operation.CONNECTED, Operation.DISCONNECTED):
                await self._on_connection(msg)
                continue
            node, key = _order_key(msg.resource)
            # One worker per object (by hash): requests about one object stay in order, and
            # a node starting 20 pods has their status patches served side by side.
            q = self._queues[zlib.crc32(key.encode()) % len(self._queues)]
            try:
                q.put_nowait(msg)
            except asyncio.QueueFull:
                # Never let a slow API server back up into CloudHub's readers (and from there
                # into keepalives): refuse now, the edge retries.
                log.warning("upstream queue full; refusing %s from node %s", msg.operation, node)
                await ctx.send(CloudModule.CLOUDHUB, error_to(msg, "cloudcore is busy, retry"))

    async def _on_connection(self, msg: Message) -> None:
        try:
            node = node_of(msg.resource)
        except DecodeError:
            log.warning("connection event for no node: %s", msg)
            return
        log.info("node %s %s", node, msg.operation)
        self._full_sent.discard(node)
        if msg.operation == Operation.CONNECTED and self.synced.is_set():
            self._reconcile_soon(node)

    def _reconcile_soon(self, node: str, *, full: bool = False) -> None:
        """Reconcile ``node`` in the module's task group, once at a time per node (bounded
        by nodes)."""
        if self._tasks is None:
            return
        if full:
            self._reconcile_full.add(node)
        running = self._reconciling.get(node)
        if running is not None and not running.done():
            self._reconcile_again.add(node)
            return

        async def run() -> None:
            while True:
                self._reconcile_again.discard(node)
                full_now = node in self._reconcile_full
                self._reconcile_full.discard(node)
                try:
                    await self.reconcile(node, full=full_now)
                except Exception:
                    log.exception("reconciling node %s failed", node)
                if node not in self._reconcile_again:
                    break
            self._reconciling.pop(node, None)

        self._reconciling[node] = self._tasks.create_task(run(), name=f"reconcile-{node}")

    async def _upstream_worker(self, q: asyncio.Queue[Message]) -> None:
        while True:
            msg = await q.get()
            if msg.operation == Operation.QUERY and \
                    resource_type_of(msg.resource) in CONCURRENT_QUERY_TYPES:
                # Reads only: answered by parent id, nothing to keep in order behind them. A
                # node starting 20 pods asks for 20 tokens; one at a time they held up its
                # status patches.
                await self._query_slots.acquire()
                assert self._tasks is not None
                task = self._tasks.create_task(self._serve(msg), name="edgecontroller-query")
                task.add_done_callback(lambda _t: self._query_slots.release())
                continue
            await self._serve(msg)

    async def _serve(self, msg: Message) -> None:
        assert self._ctx is not None
        try:
            reply = await self.upstream.handle(msg)
        except Exception as exc:  # a bug must not take the worker down, nor hang the edge
            log.exception("failed to handle %s", msg)
            reply = error_to(msg, f"cloudcore failed to handle the request: {exc}")
        try:
            await self._ctx.send(CloudModule.CLOUDHUB, reply)
        except Exception as exc:  # (the hive is closing) never silently
            log.warning("reply %s to node %s not sent: %r", reply.operation, msg.resource,
                        exc)
        if self.synced.is_set() and _registered(msg, reply):
            # The node registered: edgecore started, maybe on a new or wiped database.
            node = node_of(msg.resource)
            if node in self._full_sent:
                log.debug("node %s registered again on this connection; no re-send", node)
            else:
                self._full_sent.add(node)
                self._reconcile_soon(node, full=True)


def _order_key(resource: str) -> tuple[str, str]:
    """``(node, key)``: requests with one key are served in order, the others side by side.
    The key is the object (node, namespace and name; not the type, so that a pod's status
    patch and its delete stay in order).

    >>> _order_key("node/edge-1/default/podpatch/web-0")
    ('edge-1', 'edge-1/default/web-0')
    >>> _order_key("node/edge-1/default/pod/web-0")[1] == _order_key(
    ...     "node/edge-1/default/podpatch/web-0")[1]
    True
    """
    try:
        res = parse_cloud(resource)
    except DecodeError:
        try:
            node = node_of(resource)
        except DecodeError:
            return "", ""
        return node, node
    return res.node_id, f"{res.node_id}/{res.namespace}/{res.name}"


def _scheduled(pod: dict[str, Any]) -> bool:
    """Whether the scheduler bound the pod (it has ``PodScheduled``). Upstream watches every
    pod, so it sees such a pod unbound first and sends it as ``update`` once bound (what the
    edge's hold-upgrade keys on); this informer only sees bound pods (``ADDED``)."""
    status = pod.get("status")
    conditions = status.get("conditions") if isinstance(status, dict) else None
    return any(isinstance(c, dict) and c.get("type") == "PodScheduled"
               for c in conditions or [])


def _registered(request: Message, reply: Message) -> bool:
    """Whether ``reply`` tells that the node registered itself (its ``null/node/<node>``
    insert succeeded)."""
    if request.operation != Operation.INSERT or reply.operation != Operation.RESPONSE:
        return False
    try:
        res = parse_cloud(request.resource)
    except DecodeError:
        return False
    return (res.resource_type == ResourceType.NODE and res.namespace == NULL_NAMESPACE
            and res.name == res.node_id and not parse_object_reply(reply.content).failed)

