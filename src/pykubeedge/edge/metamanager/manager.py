"""MetaManager: the beehive module (``metamanager``, group ``meta``) between Edged, EdgeHub and
the edge database (upstream ``edge/pkg/metamanager/process.go``; message shapes in
``docs/edge-messages.md``).

- Cloud ``insert``/``update``/``delete``: stored, passed to Edged, then ACKed to the cloud with
  ``response(msg, "OK")`` (a pod delete only when the stored pod has the message's UID).
- Edged's node insert and lease insert/update need the cloud: ``send_sync`` to EdgeHub, or
  an ``error`` ``"not connected"`` while offline.
- Edged's ``nodepatch``/``podpatch``: stored, sent to the cloud (EdgeHub keeps them while
  offline), answered at once.
- Queries: answered from SQLite, asking the cloud when the row is missing; configmaps,
  secrets, tokens and leases are asked of the cloud first while connected (fresh data), with
  the local row as the fallback. ``null/pod`` returns every stored pod (edge autonomy).

Messages are handled concurrently (bounded), but in arrival order per resource, so a cloud
insert and the delete after it can never swap. A bad message gets an ``error`` reply and
changes nothing; no message can stop the module::

    store = await MetaStore.open(db)     # db: the process's edge.dbm.Database
    hive.add_module(MetaManager(store, remote_query_timeout=60,
                                metaserver=MetaServer(store, port=10550)))
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from typing import Any, Final

from pykubeedge.beehive import (
    BeehiveContext,
    HiveClosedError,
    RestartPolicy,
    RestartType,
    UnknownModuleError,
)
from pykubeedge.core.constants import (
    CLOUD_ONLY_SOURCES,
    NULL_NAMESPACE,
    RESOURCE_SEP,
    CloudModule,
    Content,
    EdgeGroup,
    EdgeModule,
    MessageGroup,
    Operation,
    ResourceType,
)
from pykubeedge.core.content import (
    json_object,
    list_items,
    parse_object_reply,
    patch_content,
    reply_object,
)
from pykubeedge.core.errors import DecodeError, StoreError
from pykubeedge.core.message import Message, error_message, new_id, new_message, response
from pykubeedge.core.objects import name_of, resource_version_of, uid_of
from pykubeedge.core.resource import EdgeResource, build_edge, parse_edge, resource_type_of
from pykubeedge.edge.metamanager.dao import DeleteOutcome, MetaStore
from pykubeedge.edge.metamanager.metaserver import MetaServer

log = logging.getLogger(__name__)

DEFAULT_REMOTE_QUERY_TIMEOUT: Final = 60.0
"""Seconds to wait for the cloud (``modules.metaManager.remoteQueryTimeout``)."""
DEFAULT_MAX_IN_FLIGHT: Final = 256
"""Messages handled at once; the module stops reading its queue beyond that."""
DEFAULT_MAX_REMOTE: Final = 64
"""Requests waiting for the cloud at once; more are refused with an ``error`` at once."""

NOT_CONNECTED: Final = "not connected"

KNOWN_TYPES: Final = frozenset(
    value for key, value in vars(ResourceType).items()
    if key.isupper() and isinstance(value, str) and RESOURCE_SEP not in value
)
"""Resource types accepted in ``<ns>/<type>[/<name>]`` (every contract type but the ones
containing a slash, which cannot appear in that form)."""

REMOTE_FIRST: Final = frozenset({
    ResourceType.CONFIGMAP, ResourceType.SECRET, ResourceType.SERVICE_ACCOUNT_TOKEN,
    ResourceType.LEASE, ResourceType.PERSISTENT_VOLUME, ResourceType.PERSISTENT_VOLUME_CLAIM,
    ResourceType.VOLUME_ATTACHMENT, ResourceType.CERTIFICATE_SIGNING_REQUEST,
})
"""Named queries asked of the cloud first while connected (upstream ``requireRemoteQuery``
and contract 4.2), falling back to the local row."""

REMOTE_WHEN_MISSING: Final = frozenset({
    ResourceType.POD, ResourceType.NODE, ResourceType.SERVICE, ResourceType.ENDPOINTS,
}) | REMOTE_FIRST
"""Named queries asked of the cloud when there is no local row and the cloud is connected."""

EDGE_REMOTE_WRITES: Final = frozenset({ResourceType.NODE, ResourceType.LEASE, ResourceType.POD})
"""Edged's inserts (and lease/node updates) that only the cloud can answer."""


class RemoteError(Exception):
    """The cloud did not answer, or answered with an error (text = the reason)."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Request:
    msg: Message
    resource: EdgeResource
    from_edge: bool

    @property
    def key(self) -> str:
        return self.msg.resource


class MetaManager:
    """The ``metamanager`` beehive module.

    ``store``: the open :class:`MetaStore`. ``remote_query_timeout``: seconds a remote call
    may take. ``send_module``: EdgeHub's module name (``contextSendModule``).
    ``max_in_flight``: messages handled at once; ``max_remote``: of those, how many may wait
    for the cloud (a message waiting for the cloud does not count against ``max_in_flight``,
    so the module keeps reading its queue, and sees a disconnect, while the cloud is slow).
    ``metaserver``: served while the module runs, if given. ``connected``: the initial cloud
    state (EdgeHub's ``node/connection`` events keep it current).

    >>> hive.add_module(MetaManager(store))    # doctest: +SKIP
    """

    name = EdgeModule.METAMANAGER
    group = EdgeGroup.META
    restart_policy = RestartPolicy(RestartType.ON_FAILURE)

    def __init__(
        self,
        store: MetaStore,
        *,
        remote_query_timeout: float = DEFAULT_REMOTE_QUERY_TIMEOUT,
        send_module: str = EdgeModule.EDGEHUB,
        edged_module: str = EdgeModule.EDGED,
        twin_module: str = EdgeModule.DEVICETWIN,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_remote: int = DEFAULT_MAX_REMOTE,
        connected: bool = False,
        metaserver: MetaServer | None = None,
    ) -> None:
        if remote_query_timeout <= 0 or min(max_in_flight, max_remote) < 1:
            raise ValueError("remote_query_timeout must be positive, max_in_flight and "
                             "max_remote at least 1")
        self.store = store
        self.remote_query_timeout = remote_query_timeout
        self.send_module = send_module
        self.edged_module = edged_module
        self.twin_module = twin_module
        self.metaserver = metaserver
        self._max_in_flight = max_in_flight
        self._max_remote = max_remote
        self._remote_pending = 0
        self._connected = connected
        self._link_lost = asyncio.Event()
        if not connected:
            self._link_lost.set()
        self._ctx: BeehiveContext | None = None
        self._slots: asyncio.Semaphore | None = None
        self._tails: dict[str, asyncio.Task[None]] = {}

    @property
    def connected(self) -> bool:
        """Whether EdgeHub last reported the cloud connected."""
        return self._connected

    # -- the module --------------------------------------------------------------------------

    async def start(self, ctx: BeehiveContext) -> None:
        """Read the queue until cancelled; each message is handled in its own task."""
        self._ctx = ctx
        self._slots = asyncio.Semaphore(self._max_in_flight)
        self._tails.clear()
        async with asyncio.TaskGroup() as tasks:
            if self.metaserver is not None:
                self.metaserver.unhold = self._unhold
                tasks.create_task(self.metaserver.serve(), name="metaserver")
            while True:
                msg = await ctx.receive(self.name)
                if msg.operation == Operation.CONNECT and \
                        msg.resource == ResourceType.NODE_CONNECTION:
                    self._on_connection(msg)
                    continue
                await self._slots.acquire()
                key = _order_key(msg)
                task = tasks.create_task(self._run_in_order(msg, self._tails.get(key)),
                                         name=f"metamanager:{msg.operation}:{key}")
                self._tails[key] = task
                task.add_done_callback(functools.partial(self._forget, key))

    async def _unhold(self, namespace: str, name: str) -> None:
        """Tell Edged to release a held pod (upstream: source metamanager, operation
        ``unhold-upgrade`` on ``<ns>/pod/<name>``)."""
        msg = new_message(source=EdgeModule.METAMANAGER, group="",
                          operation=Operation.UNHOLD_UPGRADE,
                          resource=build_edge(namespace, ResourceType.POD, name))
        await self._send(self.edged_module, msg)

    def _forget(self, key: str, task: asyncio.Task[None]) -> None:
        if self._tails.get(key) is task:
            del self._tails[key]

    async def _run_in_order(self, msg: Message, previous: asyncio.Task[None] | None) -> None:
        assert self._slots is not None
        try:
            if previous is not None:
                await asyncio.wait([previous])
            await self._handle(msg)
        finally:
            self._slots.release()

    def _on_connection(self, msg: Message) -> None:
        if msg.content == Content.CLOUD_CONNECTED:
            if not self._connected:
                log.info("cloud connected")
            self._connected = True
            self._link_lost = asyncio.Event()
        elif msg.content == Content.CLOUD_DISCONNECTED:
            if self._connected:
                log.info("cloud disconnected; answering from the local store")
            self._connected = False
            self._link_lost.set()
        else:
            log.warning("unknown node connection event %r", msg.content)

    # -- dispatch ----------------------------------------------------------------------------

    async def _handle(self, msg: Message) -> None:
        """Process one message; never raises (except on cancellation)."""
        try:
            await self._process(msg)
        except HiveClosedError:
            log.debug("hive closed while handling %s", msg)
        except DecodeError as exc:
            log.warning("refused %s: %s", msg, exc)
            await self._reply_error(msg, str(exc))
        except StoreError as exc:
            log.error("store failed for %s: %s", msg, exc)
            await self._reply_error(msg, f"meta store: {exc}")
        except Exception as exc:
            log.exception("failed to handle %s", msg)
            await self._reply_error(msg, f"internal error: {exc!r}")

    async def _process(self, msg: Message) -> None:
        op = msg.operation
        if op in (Operation.RESPONSE, Operation.ERROR):
            await self._on_cloud_reply(msg)
            return
        from_edge = msg.source not in CLOUD_ONLY_SOURCES
        if op not in _HANDLERS:
            if not from_edge:
                await self._ack_unsupported(msg, f"operation {op!r}")
                return
            raise DecodeError(f"unsupported operation {op!r}")
        res = parse_edge(msg.resource, op)  # a malformed resource is bad input: an error
        if res.resource_type not in KNOWN_TYPES:
            if not from_edge:
                await self._ack_unsupported(msg, f"resource type {res.resource_type!r}")
                return
            raise DecodeError(f"unknown resource type {res.resource_type!r}")
        req = _Request(msg, res, from_edge)
        await _HANDLERS[op](self, req)

    async def _ack_unsupported(self, msg: Message, what: str) -> None:
        """A cloud message this edge does not handle: ACKed all the same, so the cloud's
        per-node queue moves on (upstream's cloudcore waits for each ACK before the next
        message), and logged once per message."""
        log.info("unsupported %s from %s (%s %s); ACKed", what, msg.source, msg.operation,
                 msg.resource)
        await self._send(self.send_module, response(msg, Content.ACK_OK))

    # -- insert / update ---------------------------------------------------------------------

    async def _insert(self, req: _Request) -> None:
        rtype = req.resource.resource_type
        if not req.from_edge:
            await self._cloud_upsert(req)
        elif rtype in EDGE_REMOTE_WRITES:
            await self._edge_remote_write(req)
        elif rtype == ResourceType.EVENT:
            await self._edge_forward(req)
        else:
            raise DecodeError(f"edged cannot insert {rtype!r}")

    async def _update(self, req: _Request) -> None:
        rtype = req.resource.resource_type
        if not req.from_edge:
            await self._cloud_upsert(req)
        elif rtype in (ResourceType.LEASE, ResourceType.NODE):
            await self._edge_remote_write(req)
        elif rtype == ResourceType.EVENT:
            await self._edge_forward(req)
        else:
            # Upstream: Edged's updates are saved, sent to the cloud and answered OK.
            obj = json_object(req.msg.content)
            await self.store.upsert(req.key, obj)
            await self._to_cloud(req.msg)
            await self._reply(req.msg, response_from_meta(req.msg, Content.ACK_OK))

    async def _cloud_upsert(self, req: _Request) -> None:
        msg = req.msg
        obj = json_object(msg.content)
        source, rtype = msg.source, req.resource.resource_type
        if msg.operation == Operation.INSERT or source != CloudModule.DEVICECONTROLLER:
            await self.store.upsert(req.key, obj)
        forwarded = dataclasses.replace(msg, content=obj)
        if source == CloudModule.DEVICECONTROLLER:
            await self._send(self.twin_module, forwarded)
        elif source == CloudModule.POLICYCONTROLLER:
            pass
        elif msg.operation == Operation.INSERT or rtype != ResourceType.NODE:
            await self._send(self.edged_module, forwarded)
        await self._send(self.send_module, response(msg, Content.ACK_OK))

    async def _edge_remote_write(self, req: _Request) -> None:
        json_object(req.msg.content)
        if not self._connected:
            await self._reply(req.msg, error_from_meta(req.msg, NOT_CONNECTED))
            return
        try:
            reply = await self._remote(req.msg)
        except RemoteError as exc:
            await self._reply(req.msg, error_from_meta(req.msg, str(exc)))
            return
        stored = reply_object(reply.content)
        if stored is not None:
            await self.store.upsert(req.key, stored)
        await self._reply(req.msg, response_from_meta(req.msg, reply.content))

    async def _edge_forward(self, req: _Request) -> None:
        await self._to_cloud(req.msg)
        await self._reply(req.msg, response_from_meta(req.msg, Content.ACK_OK))

    # -- patch -------------------------------------------------------------------------------

    async def _patch(self, req: _Request) -> None:
        rtype = req.resource.resource_type
        if not req.from_edge:
            raise DecodeError(f"the cloud cannot patch {rtype!r} on the edge")
        if rtype == ResourceType.POD_PATCH:
            await self._pod_patch(req)
        elif rtype == ResourceType.NODE_PATCH:
            await self._node_patch(req)
        elif rtype == ResourceType.EVENT:
            await self._edge_forward(req)
        else:
            raise DecodeError(f"edged cannot patch {rtype!r}")

    async def _pod_patch(self, req: _Request) -> None:
        text, patch = patch_content(req.msg.content)
        status = patch.get("status")
        if status is not None and not isinstance(status, dict):
            raise DecodeError("a pod status patch's status must be a JSON object")
        await self.store.save_pod_patch(req.key, text, uid=uid_of(patch), status=status)
        await self._to_cloud(req.msg, content=text)
        await self._reply(req.msg, response_from_meta(req.msg, Content.ACK_OK))

    async def _node_patch(self, req: _Request) -> None:
        text, _ = patch_content(req.msg.content)
        await self.store.upsert(req.key, text)
        if not self._connected:
            await self._to_cloud(req.msg, content=text)
            await self._reply(req.msg, response_from_meta(req.msg, Content.ACK_OK))
            return
        try:
            reply = await self._remote(req.msg, content=text)
        except RemoteError as exc:
            await self._reply(req.msg, error_from_meta(req.msg, str(exc)))
            return
        await self._store_node(req.resource.name, reply.content)
        await self._reply(req.msg, response_from_meta(req.msg, reply.content))

    async def _store_node(self, name: str, content: Any) -> None:
        node = reply_object(content)
        if node is not None and name_of(node) == name:
            await self.store.upsert(build_edge(NULL_NAMESPACE, ResourceType.NODE, name), node)

    # -- delete ------------------------------------------------------------------------------

    async def _delete(self, req: _Request) -> None:
        msg, res = req.msg, req.resource
        if req.from_edge:
            if res.resource_type != ResourceType.POD:
                raise DecodeError(f"edged cannot delete {res.resource_type!r}")
            await self._edge_forward(req)
            return
        obj = None if msg.content in (None, "") else json_object(msg.content)
        # A delete names one incarnation (UID) of an object: a same-name object created since
        # (a ConfigMap deleted and created again) must survive a late delete of the old one.
        uid = uid_of(obj)
        also: tuple[str, ...] = ()
        if res.resource_type == ResourceType.POD:
            also = (build_edge(res.namespace, ResourceType.POD_PATCH, res.name),)
        outcome = await self.store.delete(req.key, uid=uid or None, also=also)
        if outcome is DeleteOutcome.UID_MISMATCH:
            log.info("ignored delete of %s: the stored object is not uid %s", req.key, uid)
            await self._send(self.send_module, response(msg, Content.ACK_OK))
            return
        if msg.source == CloudModule.DEVICECONTROLLER:
            await self._send(self.twin_module, dataclasses.replace(msg, content=obj))
        elif msg.source != CloudModule.POLICYCONTROLLER:
            await self._send(self.edged_module, dataclasses.replace(msg, content=obj))
        await self._send(self.send_module, response(msg, Content.ACK_OK))

    # -- query -------------------------------------------------------------------------------

    async def _query(self, req: _Request) -> None:
        msg, res = req.msg, req.resource
        if res.is_list:
            items = await self.store.list_by_type(res.resource_type, res.namespace)
            await self._reply(msg, response_from_meta(msg, items))
            return
        remote_error = ""
        asked_cloud = False
        if res.resource_type in REMOTE_FIRST and self._connected:
            asked_cloud = True
            try:
                await self._reply(msg, await self._remote_query(req))
                return
            except RemoteError as exc:
                remote_error = str(exc)
                log.info("remote query of %s failed (%s); answering locally", req.key, exc)
        local = await self.store.get(req.key)
        if local is not None:
            await self._reply(msg, response_from_meta(msg, [local]))
            return
        if (not asked_cloud and res.resource_type in REMOTE_WHEN_MISSING
                and self._connected):
            try:
                await self._reply(msg, await self._remote_query(req))
                return
            except RemoteError as exc:
                remote_error = str(exc)
        reason = f"{req.key} not found" + (f" (cloud: {remote_error})" if remote_error else "")
        await self._reply(msg, error_from_meta(msg, reason))

    async def _remote_query(self, req: _Request) -> Message:
        reply = await self._remote(req.msg)
        items = list_items(reply.content)
        if len(items) == 1 and isinstance(items[0], dict):
            # A cloud update of this object may have been stored while the answer was on its
            # way (cloud messages do not wait behind Edged's queries): the newer one wins.
            local = await self.store.get(req.key)
            if isinstance(local, dict) and _older(items[0], local):
                return response_from_meta(req.msg, [local])
            await self.store.upsert(req.key, items[0])
        return response_from_meta(req.msg, items)

    # -- replies from the cloud that nobody waits for ------------------------------------------

    async def _on_cloud_reply(self, msg: Message) -> None:
        if msg.source in CLOUD_ONLY_SOURCES:
            await self._ack_reply(msg)  # a late answer: its waiter gave up, the cloud waits
        if msg.operation == Operation.ERROR:
            log.warning("the cloud reported an error for %s: %s", msg.resource,
                        str(msg.content)[:300])
            return
        try:
            res = parse_edge(msg.resource, msg.operation)
        except DecodeError:
            log.debug("ignored response %s", msg)
            return
        if res.namespace == NULL_NAMESPACE and res.name and res.resource_type in (
                ResourceType.NODE_PATCH, ResourceType.NODE):
            await self._store_node(res.name, msg.content)
        else:
            log.debug("ignored late response %s", msg)

    # -- sending -----------------------------------------------------------------------------

    async def _remote(self, msg: Message, *, content: Any = None) -> Message:
        """Ask the cloud through EdgeHub (``send_sync``); the reply, or :class:`RemoteError`."""
        ctx = self._require_ctx()
        request = dataclasses.replace(
            msg, msg_id=new_id(), parent_msg_id="", sync=False, group=MessageGroup.RESOURCE,
            content=msg.content if content is None else content)
        lost = self._link_lost
        if lost.is_set():
            raise RemoteError(NOT_CONNECTED)
        if self._remote_pending >= self._max_remote:
            raise RemoteError("too many requests are waiting for the cloud; retry later")
        self._remote_pending += 1
        if self._slots is not None:
            self._slots.release()  # waiting for the cloud is not work: let the queue move
        call = asyncio.ensure_future(
            ctx.send_sync(self.send_module, request, self.remote_query_timeout))
        watch = asyncio.ensure_future(lost.wait())
        try:
            done, _ = await asyncio.wait({call, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            if not call.done():
                call.cancel()
            self._remote_pending -= 1
            if self._slots is not None:
                await self._slots.acquire()
        if call not in done:
            await asyncio.wait([call])
            if not call.cancelled():
                call.exception()  # retrieved: the answer came too late to matter
            raise RemoteError("connection to the cloud lost")
        try:
            reply = call.result()
        except TimeoutError:
            raise RemoteError(
                f"no answer from the cloud within {self.remote_query_timeout:g}s") from None
        except UnknownModuleError:
            raise RemoteError(f"no module {self.send_module!r} to reach the cloud") from None
        await self._ack_reply(reply)
        if reply.operation == Operation.ERROR:
            raise RemoteError(str(reply.content))
        answer = parse_object_reply(reply.content)
        if answer.failed:  # an ObjectResp whose Err is set (a StatusError, or older text)
            raise RemoteError(answer.error)
        return reply

    async def _ack_reply(self, reply: Message) -> None:
        """ACK a cloud reply (upstream's MetaManager ACKs every answer it gets, and upstream's
        cloudcore waits for the ACK of its ConfigMap, Secret and volume answers before it
        sends the node anything else)."""
        if reply.operation == Operation.RESPONSE and reply.content != Content.ACK_OK:
            await self._send(self.send_module, response(reply, Content.ACK_OK))

    async def _to_cloud(self, msg: Message, *, content: Any = None) -> None:
        """Send a copy of ``msg`` to the cloud (a fresh id: the original may be a sync
        request whose waiter a cloud reply must not reach)."""
        copy = dataclasses.replace(
            msg, msg_id=new_id(), parent_msg_id="", sync=False, group=MessageGroup.RESOURCE,
            content=msg.content if content is None else content)
        await self._send(self.send_module, copy)

    async def _reply(self, request: Message, reply: Message) -> None:
        """Answer ``request``: to its ``send_sync`` waiter, else to Edged or the cloud."""
        ctx = self._require_ctx()
        if request.sync:
            if not ctx.respond(reply):
                log.info("reply to %s not delivered: nobody waits for it any more", request)
            return
        if request.source in CLOUD_ONLY_SOURCES:
            await self._send(self.send_module, reply)
        elif request.source == self.edged_module or not request.source:
            await self._send(self.edged_module, reply)
        else:
            await self._send(request.source, reply)

    async def _reply_error(self, request: Message, reason: str) -> None:
        if request.operation in (Operation.RESPONSE, Operation.ERROR):
            return  # never answer an answer
        try:
            await self._reply(request, error_from_meta(request, reason))
        except HiveClosedError:
            log.info("error reply to %s not sent (shutting down): %s", request, reason)

    async def _send(self, module: str, msg: Message) -> None:
        try:
            await self._require_ctx().send(module, msg)
        except UnknownModuleError:
            log.warning("no module %r; dropped %s", module, msg)

    def _require_ctx(self) -> BeehiveContext:
        if self._ctx is None:
            raise RuntimeError("MetaManager is not started")
        return self._ctx


def _order_key(msg: Message) -> str:
    """The key that orders messages: per resource, and per side. A cloud message never
    waits behind an Edged request of the same resource that waits for the cloud, since
    upstream's cloudcore may hold its answer back until that very message is ACKed (its
    queue for a node moves one ACK at a time): a deadlock until the remote timeout."""
    if msg.source in CLOUD_ONLY_SOURCES:
        return msg.resource
    if msg.operation == Operation.QUERY and \
            resource_type_of(msg.resource) == ResourceType.SERVICE_ACCOUNT_TOKEN:
        # Each asks for a new token bound to its own pod: nothing to keep in order, and every
        # pod of a namespace runs as "default" (20 pod starts waited in one line).
        return "edge:" + msg.resource + "#" + msg.msg_id
    return "edge:" + msg.resource


def _older(answer: Any, local: Any) -> bool:
    """Whether ``answer`` is an older version of the object than ``local`` (numeric
    resourceVersions; anything else is not ordered, and the answer wins)."""
    new, old = resource_version_of(answer), resource_version_of(local)
    return new.isdigit() and old.isdigit() and int(new) < int(old)


_HANDLERS: Final = {
    Operation.INSERT: MetaManager._insert,
    Operation.UPDATE: MetaManager._update,
    Operation.PATCH: MetaManager._patch,
    Operation.DELETE: MetaManager._delete,
    Operation.QUERY: MetaManager._query,
}


def response_from_meta(request: Message, content: Any) -> Message:
    """A ``response`` to ``request`` sent by MetaManager (upstream ``SetRoute(metamanager)``)."""
    return dataclasses.replace(response(request, content), source=EdgeModule.METAMANAGER)


def error_from_meta(request: Message, reason: str) -> Message:
    """An ``error`` reply to ``request`` sent by MetaManager."""
    return error_message(request, reason, source=EdgeModule.METAMANAGER)
