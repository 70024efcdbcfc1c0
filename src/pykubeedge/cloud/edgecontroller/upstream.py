"""What edge nodes ask of the API server, and the check that each asks only for its own.

Upstream KubeEdge trusts the node prefix and lets any node patch any node or read any secret;
here every request is checked against the node's identity (the CloudHub has already bound the
prefix to the TLS certificate): a node may register and patch only itself, patch only the pods
bound to it, and read only the ConfigMaps and Secrets its pods reference.

    up = Upstream(kube, location, cloudcore_address="10.0.0.1")
    reply = await up.handle(msg)        # a "response" or an "error" message for the edge
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from cryptography import x509

from pykubeedge.cloud.edgecontroller.location import LocationCache
from pykubeedge.core.constants import CloudModule, MessageGroup, Operation
from pykubeedge.core.content import error_reply, json_object, object_reply, status_of
from pykubeedge.core.errors import Conflict, DecodeError, KubeError, NotAllowed, NotFound
from pykubeedge.core.message import Message, error_message
from pykubeedge.core.objects import (
    metadata_of,
    name_of,
    node_name_of,
    resource_version_of,
    spec_of,
    uid_of,
)
from pykubeedge.core.resource import CloudResource, parse_cloud
from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.resources import (
    CONFIGMAPS,
    EVENTS,
    LEASES,
    NODES,
    PODS,
    SECRETS,
    SERVICEACCOUNTS,
    Resource,
)

log = logging.getLogger(__name__)

Handler = Callable[[str, CloudResource, Message], Awaitable[Any]]
OBJECT_RESP: Final = frozenset({
    ("node", Operation.INSERT), ("nodepatch", Operation.PATCH), ("podpatch", Operation.PATCH),
    ("lease", Operation.INSERT), ("lease", Operation.UPDATE), ("lease", Operation.QUERY),
    ("pod", Operation.INSERT), ("certificatesigningrequest", Operation.INSERT),
})
"""Requests upstream answers with an ``ObjectResp`` (``core.content.object_reply``)."""
PERSISTENTVOLUMES: Final = Resource("", "v1", "persistentvolumes", "PersistentVolume",
                                    namespaced=False)
PERSISTENTVOLUMECLAIMS: Final = Resource("", "v1", "persistentvolumeclaims",
                                         "PersistentVolumeClaim")
VOLUMEATTACHMENTS: Final = Resource("storage.k8s.io", "v1", "volumeattachments",
                                    "VolumeAttachment", namespaced=False)
CSRS: Final = Resource("certificates.k8s.io", "v1", "certificatesigningrequests",
                       "CertificateSigningRequest", namespaced=False)
_PLURALS: Final = {"node": NODES.plural, "nodepatch": NODES.plural, "podpatch": PODS.plural,
                   "lease": LEASES.plural, "pod": PODS.plural,
                   "certificatesigningrequest": CSRS.plural}
_KIND_OF: Final = {r.plural: r for r in (NODES, PODS, LEASES, CSRS)}
_CSR_SIGNERS: Final = frozenset({"kubernetes.io/kubelet-serving",
                                 "kubernetes.io/kube-apiserver-client-kubelet"})
CONFIG_MIRROR: Final = "kubernetes.io/config.mirror"
RESTRICTED_LABEL_DOMAINS = ("kubernetes.io", "k8s.io")
# Labels a node may never set on itself: they steer workloads (NodeRestriction's rule).
FORBIDDEN_LABEL_PREFIX = "node-restriction.kubernetes.io/"


def reply_to(req: Message, content: Any) -> Message:
    """The edgecontroller's response: group ``resource`` so EdgeHub hands it to the waiter."""
    return Message(parent_msg_id=req.msg_id, source=CloudModule.EDGECONTROLLER,
                   group=MessageGroup.RESOURCE, operation=Operation.RESPONSE,
                   resource=req.resource, content=content)


def error_to(req: Message, err: Exception | str) -> Message:
    return error_message(req, err, source=CloudModule.EDGECONTROLLER, group=MessageGroup.RESOURCE)


def _json_content(msg: Message) -> dict[str, Any]:
    return json_object(msg.content, f"content of {msg.operation} {msg.resource}")


def _status_only(patch: dict[str, Any]) -> dict[str, Any]:
    """What an edge may change through a status patch: the status, checked against the UID.
    Anything else (labels, annotations) would be written with cloudcore's credentials."""
    out: dict[str, Any] = {"status": patch.get("status") or {}}
    uid = uid_of(patch)
    if uid:
        out["metadata"] = {"uid": uid}
    return out


def typed(obj: Any, res: Resource) -> Any:
    """``obj`` with its ``kind`` and ``apiVersion`` (the API server leaves them out of some
    answers, and upstream's Go edge refuses an object without them: ``Object 'Kind' is
    missing``)."""
    if isinstance(obj, dict):
        obj.setdefault("kind", res.kind)
        obj.setdefault("apiVersion", res.api_version)
    return obj


def _restricted(label: str) -> bool:
    domain = label.split("/", 1)[0] if "/" in label else ""
    return any(domain == d or domain.endswith("." + d) for d in RESTRICTED_LABEL_DOMAINS)


class Upstream:
    def __init__(self, kube: KubeClient, location: LocationCache, *,
                 cloudcore_address: str = "127.0.0.1") -> None:
        self.kube = kube
        self.location = location
        self.cloudcore_address = cloudcore_address
        self._handlers: dict[tuple[str, str], Handler] = {
            ("node", Operation.INSERT): self._register_node,
            ("node", Operation.QUERY): self._get_node,
            ("node", Operation.UPDATE): self._update_node,
            ("podstatus", Operation.UPDATE): self._update_pod_statuses,
            ("persistentvolume", Operation.QUERY): self._get_persistent_volume,
            ("persistentvolumeclaim", Operation.QUERY): self._get_persistent_volume_claim,
            ("volumeattachment", Operation.QUERY): self._get_volume_attachment,
            ("certificatesigningrequest", Operation.INSERT): self._create_csr,
            ("certificatesigningrequest", Operation.QUERY): self._get_csr,
            ("nodepatch", Operation.PATCH): self._patch_node_status,
            ("nodestatus", Operation.UPDATE): self._update_node_status,
            ("podpatch", Operation.PATCH): self._patch_pod_status,
            ("pod", Operation.DELETE): self._delete_pod,
            ("lease", Operation.INSERT): self._put_lease,
            ("lease", Operation.UPDATE): self._put_lease,
            ("lease", Operation.QUERY): self._get_lease,
            ("configmap", Operation.QUERY): self._get_referenced,
            ("secret", Operation.QUERY): self._get_referenced,
            ("event", Operation.INSERT): self._create_event,
            ("event", Operation.UPDATE): self._create_event,
            ("event", Operation.PATCH): self._patch_event,
            ("pod", Operation.INSERT): self._create_mirror_pod,
            ("serviceaccounttoken", Operation.QUERY): self._service_account_token,
        }

    async def handle(self, msg: Message) -> Message:
        """Serve one request from an edge; always returns the reply to send back.

        Where upstream answers with an ``ObjectResp`` (node registration and status, pod
        status, leases), so does this, in upstream's encoding: the object with ``Err`` null,
        or the API server's refusal as a StatusError. Our own refusals (another node's
        object, bad input) are ``error`` messages, as for every other request."""
        try:
            res = parse_cloud(msg.resource)
        except DecodeError as exc:
            log.warning("bad resource from the edge: %s", exc)
            return error_to(msg, exc)
        handler = self._handlers.get((res.resource_type, msg.operation))
        if handler is None:
            log.warning("node %s: unsupported %s on %s", res.node_id, msg.operation,
                        res.resource_type)
            return error_to(msg, f"unsupported operation {msg.operation!r} on resource type "
                                 f"{res.resource_type!r}")
        object_resp = (res.resource_type, msg.operation) in OBJECT_RESP
        try:
            result = await handler(res.node_id, res, msg)
        except NotAllowed as exc:
            log.warning("refused node %s: %s", res.node_id, exc)
            return error_to(msg, exc)
        except DecodeError as exc:
            log.warning("node %s sent bad content: %s", res.node_id, exc)
            return error_to(msg, exc)
        except KubeError as exc:
            log.info("node %s: %s %s failed: %s", res.node_id, msg.operation, msg.resource, exc)
            if object_resp:
                failure = status_of(exc, name=res.name, kind=_PLURALS.get(res.resource_type, ""))
                return reply_to(msg, error_reply(failure))
            return error_to(msg, exc)
        reply = reply_to(msg, object_reply(result) if object_resp else result)
        rv = resource_version_of(result)
        if rv:  # upstream sets the answered object's version on the reply's header
            reply = dataclasses.replace(reply, resourceversion=rv)
        return reply

    # -- nodes -------------------------------------------------------------------------------

    @staticmethod
    def _own_node(node: str, res: CloudResource) -> None:
        if res.name != node:
            raise NotAllowed(f"node {node} may not act on node {res.name!r}")

    async def _register_node(self, node: str, res: CloudResource, msg: Message) -> Any:
        self._own_node(node, res)
        obj = _json_content(msg)
        meta = obj.setdefault("metadata", {})
        if meta.get("name") != node:
            raise NotAllowed(f"node {node} may not register a node named {meta.get('name')!r}")
        labels = {k: v for k, v in (meta.get("labels") or {}).items()
                  if not k.startswith(FORBIDDEN_LABEL_PREFIX)}
        # Labels under kubernetes.io / k8s.io are patched on after create (NodeRestriction).
        meta["labels"] = {k: v for k, v in labels.items() if not _restricted(k)}
        meta.setdefault("annotations", {})["cloudcore"] = self.cloudcore_address
        for key in ("resourceVersion", "uid", "creationTimestamp"):
            meta.pop(key, None)
        try:
            await self.kube.create(NODES, obj)
        except Conflict:
            log.info("node %s registered again; updating its labels and status", node)
            status = {k: v for k, v in (obj.get("status") or {}).items()
                      if k != "daemonEndpoints"}  # CloudStream's, as in status patches
            if status:
                await self.kube.patch_status(NODES, node, {"status": status})
        patched = await self.kube.patch(NODES, node, {"metadata": {
            "labels": labels, "annotations": {"cloudcore": self.cloudcore_address}}})
        log.info("node %s registered", node)
        return typed(patched, NODES)

    async def _get_node(self, node: str, res: CloudResource, msg: Message) -> Any:
        self._own_node(node, res)
        return typed(await self.kube.get(NODES, node), NODES)

    async def _update_node(self, node: str, res: CloudResource, msg: Message) -> Any:
        """Edged's ``null/node/<name>`` update (upstream ``updateNode``): the node's labels,
        annotations and taints as the edge sees them; its status goes by ``nodepatch``.
        Answered "OK", as upstream does."""
        self._own_node(node, res)
        obj = _json_content(msg)
        meta = metadata_of(obj)
        if meta.get("name") not in (None, node):
            raise NotAllowed(f"node {node} may not update a node named {meta.get('name')!r}")
        labels = {k: v for k, v in (meta.get("labels") or {}).items()
                  if not k.startswith(FORBIDDEN_LABEL_PREFIX)}
        patch: dict[str, Any] = {"metadata": {"labels": labels,
                                              "annotations": meta.get("annotations") or {}}}
        taints = spec_of(obj).get("taints")
        if isinstance(taints, list):
            patch["spec"] = {"taints": taints}
        await self.kube.patch(NODES, node, patch)
        return "OK"

    async def _patch_node_status(self, node: str, res: CloudResource, msg: Message) -> Any:
        self._own_node(node, res)
        patch = _status_only(_json_content(msg))
        # The kubelet endpoint is set at registration, then CloudStream's to keep (it points
        # the API server at the tunnel); upstream likewise keeps a port already set.
        patch["status"].pop("daemonEndpoints", None)
        return typed(await self.kube.patch_status(NODES, node, patch), NODES)

    async def _update_node_status(self, node: str, res: CloudResource, msg: Message) -> Any:
        self._own_node(node, res)
        body = _json_content(msg)  # legacy NodeStatusRequest {UID, Status, ExtendResources}
        status = body.get("Status") or body.get("status")
        if not isinstance(status, dict):
            raise DecodeError("nodestatus update without a Status")
        status = {k: v for k, v in status.items() if k != "daemonEndpoints"}
        return await self.kube.patch_status(NODES, node, {"status": status})

    # -- pods ----------------------------------------------------------------------------------

    def _own_pod(self, node: str, namespace: str, name: str) -> str:
        """The UID of pod ``namespace/name`` if it is bound to ``node``, from the location
        cache the pod informer keeps (no API call); else :class:`NotAllowed`."""
        place = self.location.pod_node(namespace, name)
        if place is None:
            raise NotAllowed(f"pod {namespace}/{name} does not exist")
        bound, uid = place
        if bound != node:
            raise NotAllowed(f"pod {namespace}/{name} is bound to {bound!r}, not to {node}")
        return uid

    async def _patch_pod_status(self, node: str, res: CloudResource, msg: Message) -> Any:
        patch = _status_only(_json_content(msg))
        uid = self._own_pod(node, res.namespace, res.name)
        want_uid = uid_of(patch)
        if want_uid and want_uid != uid:
            raise NotAllowed(f"pod {res.namespace}/{res.name} has another UID now "
                             f"({uid}), not {want_uid}")
        # The UID goes in as a precondition either way: if the pod was replaced since the
        # cache saw it, the API server refuses instead of patching the new incarnation.
        patch["metadata"] = {"uid": uid}
        updated = await self.kube.patch_status(PODS, res.name, patch, namespace=res.namespace)
        # The whole Pod, as upstream answers: the Go edge stores the answer as its pod
        # (client/pod.go, updatePodDB), so a status-only view would erase the spec there.
        return typed(updated, PODS)

    async def _update_pod_statuses(self, node: str, res: CloudResource, msg: Message) -> Any:
        """The legacy ``<ns>/podstatus`` update: a list of ``{"uid", "name", "status"}``
        (upstream ``PodStatusRequest``), each patched like a ``podpatch``. Not answered
        with an object (upstream sends nothing back); failures are logged per pod."""
        body = msg.content
        if isinstance(body, str | bytes):
            try:
                body = orjson.loads(body) if body else []
            except orjson.JSONDecodeError as exc:
                raise DecodeError(f"podstatus update is not JSON: {exc}") from None
        items = body if isinstance(body, list) else [body]
        for item in items:
            if not isinstance(item, dict):
                raise DecodeError("a podstatus update must be a list of objects")
            name = item.get("name") or item.get("Name")
            status = item.get("status") or item.get("Status")
            want_uid = item.get("uid") or item.get("UID") or ""
            if not isinstance(name, str) or not isinstance(status, dict):
                raise DecodeError("a podstatus entry needs a name and a status")
            uid = self._own_pod(node, res.namespace, name)
            if want_uid and want_uid != uid:
                log.info("node %s: stale podstatus of %s/%s (uid %s)", node, res.namespace,
                         name, want_uid)
                continue
            try:
                await self.kube.patch_status(PODS, name, {"metadata": {"uid": uid},
                                                          "status": status},
                                             namespace=res.namespace)
            except KubeError as exc:
                log.info("node %s: podstatus of %s/%s not written: %s", node, res.namespace,
                         name, exc)
        return "OK"

    async def _delete_pod(self, node: str, res: CloudResource, msg: Message) -> Any:
        """The edge has stopped a terminating pod: finish its deletion (as kubelet does)."""
        known_uid = self._own_pod(node, res.namespace, res.name)
        content = msg.content
        if isinstance(content, str | bytes):
            content = _json_content(msg)
        content = content if isinstance(content, dict) else {}
        # Edged sends DeleteOptions {"preconditions": {"uid"}} as upstream; a Pod works too.
        preconditions = content.get("preconditions")
        uid = ((preconditions.get("uid") if isinstance(preconditions, dict) else None)
               or uid_of(content) or known_uid)
        with contextlib.suppress(NotFound):
            await self.kube.delete(PODS, res.name, namespace=res.namespace, uid=uid,
                                   grace_period_seconds=0)
        return "OK"

    # -- leases, config, events ---------------------------------------------------------------

    def _own_lease(self, node: str, res: CloudResource) -> None:
        if res.namespace != "kube-node-lease" or res.name != node:
            raise NotAllowed(f"node {node} may not use lease {res.namespace}/{res.name}")

    async def _put_lease(self, node: str, res: CloudResource, msg: Message) -> Any:
        self._own_lease(node, res)
        lease = _json_content(msg)
        spec = lease.get("spec") or {}
        try:
            return typed(await self.kube.patch(LEASES, node, {"spec": spec},
                                               namespace=res.namespace), LEASES)
        except NotFound:
            body = {"metadata": {"name": node, "namespace": res.namespace,
                                 "ownerReferences": (lease.get("metadata") or {}).get(
                                     "ownerReferences") or []},
                    "spec": spec}
            return typed(await self.kube.create(LEASES, body), LEASES)

    async def _get_lease(self, node: str, res: CloudResource, msg: Message) -> Any:
        self._own_lease(node, res)
        return typed(await self.kube.get(LEASES, node, namespace=res.namespace), LEASES)

    async def _get_referenced(self, node: str, res: CloudResource, msg: Message) -> Any:
        kind = res.resource_type
        if not self.location.node_uses(node, kind, res.namespace, res.name):
            raise NotAllowed(f"no pod on node {node} uses {kind} {res.namespace}/{res.name}")
        api = CONFIGMAPS if kind == "configmap" else SECRETS
        return typed(await self.kube.get(api, res.name, namespace=res.namespace), api)

    async def _service_account_token(self, node: str, res: CloudResource, msg: Message) -> Any:
        """A token for a ServiceAccount a pod of this node runs as (TokenRequest API)."""
        if not self.location.node_uses(node, "serviceaccount", res.namespace, res.name):
            raise NotAllowed(f"no pod on node {node} runs as serviceaccount "
                             f"{res.namespace}/{res.name}")
        request = _json_content(msg) if msg.content not in (None, "") else {}
        spec = request.get("spec")
        spec = spec if isinstance(spec, dict) else {}
        bound = spec.get("boundObjectRef")
        if isinstance(bound, dict) and bound.get("kind") == "Pod":
            self._own_pod(node, res.namespace, str(bound.get("name")))
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        token = await self.kube.request(
            "POST", SERVICEACCOUNTS.path(res.namespace, res.name, "token"), body=body)
        return typed(token, _TOKEN_REQUEST)

    async def _create_event(self, node: str, res: CloudResource, msg: Message) -> Any:
        event = _json_content(msg)
        involved = event.get("involvedObject")
        if not isinstance(involved, dict):
            raise DecodeError("an event needs an involvedObject")
        kind, name = involved.get("kind"), involved.get("name")
        if kind == "Node":
            if name != node:
                raise NotAllowed(f"node {node} may not report events of node {name!r}")
        elif kind == "Pod":
            if (involved.get("namespace") or res.namespace) != res.namespace:
                raise NotAllowed("an event must be in its pod's namespace")
            if self.location.last_node(res.namespace, str(name)) != node:
                self._own_pod(node, res.namespace, str(name))  # raises, with the reason
        else:
            raise NotAllowed(f"node {node} may only report events of itself and its pods")
        event.setdefault("metadata", {})["namespace"] = res.namespace
        event["metadata"].pop("resourceVersion", None)
        try:
            return await self.kube.create(EVENTS, event)
        except Conflict:
            meta = event["metadata"]
            return await self.kube.patch(EVENTS, meta["name"], {
                "count": event.get("count"), "lastTimestamp": event.get("lastTimestamp"),
                "message": event.get("message")}, namespace=res.namespace)

    async def _patch_event(self, node: str, res: CloudResource, msg: Message) -> Any:
        """A repeated event: upstream's ``{"event": <Event>, "patchData": "<patch>"}``; the
        same identity checks as a new one, then only count/lastTimestamp/message change."""
        body = _json_content(msg)
        event = body.get("event")
        if not isinstance(event, dict):
            raise DecodeError("an event patch needs its event")
        patch = json_object(body.get("patchData") or "{}", "patchData of an event patch")
        fields = {k: patch[k] for k in ("count", "lastTimestamp", "message") if k in patch}
        repeat = dataclasses.replace(msg, operation=Operation.INSERT,
                                     content={**event, **fields})
        return await self._create_event(node, res, repeat)

    async def _create_mirror_pod(self, node: str, res: CloudResource, msg: Message) -> Any:
        """The mirror pod of a static pod the edge runs (kubelet's ``CreateMirrorPod``): it
        must be bound to that node, owned by it, and carry the mirror annotation."""
        pod = _json_content(msg)
        meta = pod.setdefault("metadata", {})
        spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
        annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
        if meta.get("name") != res.name or (meta.get("namespace") or res.namespace) != \
                res.namespace:
            raise NotAllowed(f"pod {res.namespace}/{res.name} does not match its resource")
        if (spec or {}).get("nodeName") != node:
            raise NotAllowed(f"node {node} may only create mirror pods bound to itself")
        if not (annotations or {}).get(CONFIG_MIRROR):
            raise NotAllowed(f"node {node} may only create mirror pods (annotation "
                             f"{CONFIG_MIRROR})")
        owners = meta.get("ownerReferences") or []
        if any(not isinstance(o, dict) or o.get("kind") != "Node" or o.get("name") != node
               for o in owners):
            raise NotAllowed(f"a mirror pod of node {node} may only be owned by that node")
        for key in ("resourceVersion", "uid", "creationTimestamp"):
            meta.pop(key, None)
        meta["namespace"] = res.namespace
        pod.pop("status", None)
        return typed(await self.kube.create(PODS, pod), PODS)

    # -- volumes and certificates ----------------------------------------------------------

    async def _claims_of(self, node: str) -> set[tuple[str, str]]:
        """(namespace, claim) of every PersistentVolumeClaim the node's pods mount."""
        pods = await self.kube.list(PODS, field_selector=f"spec.nodeName={node}")
        claims: set[tuple[str, str]] = set()
        for pod in pods.get("items") or []:
            spec = pod.get("spec") if isinstance(pod, dict) else None
            for vol in (spec or {}).get("volumes") or []:
                pvc = vol.get("persistentVolumeClaim") if isinstance(vol, dict) else None
                if isinstance(pvc, dict) and isinstance(pvc.get("claimName"), str):
                    claims.add((str((pod.get("metadata") or {}).get("namespace")),
                                pvc["claimName"]))
        return claims

    async def _get_persistent_volume_claim(self, node: str, res: CloudResource,
                                           msg: Message) -> Any:
        if (res.namespace, res.name) not in await self._claims_of(node):
            raise NotAllowed(f"no pod on node {node} mounts claim {res.namespace}/{res.name}")
        return typed(await self.kube.get(PERSISTENTVOLUMECLAIMS, res.name,
                                         namespace=res.namespace), PERSISTENTVOLUMECLAIMS)

    async def _get_persistent_volume(self, node: str, res: CloudResource, msg: Message) -> Any:
        pv = await self.kube.get(PERSISTENTVOLUMES, res.name)
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        if (ref.get("namespace"), ref.get("name")) not in await self._claims_of(node):
            raise NotAllowed(f"no pod on node {node} mounts volume {res.name!r}")
        return typed(pv, PERSISTENTVOLUMES)

    async def _get_volume_attachment(self, node: str, res: CloudResource, msg: Message) -> Any:
        va = await self.kube.get(VOLUMEATTACHMENTS, res.name)
        if node_name_of(va) != node:
            raise NotAllowed(f"volume attachment {res.name!r} is not for node {node}")
        return typed(va, VOLUMEATTACHMENTS)

    @staticmethod
    def _own_csr(node: str, csr: dict[str, Any]) -> None:
        """A node may only ask for its own kubelet certificates: a kubelet signer and a
        request whose subject is ``system:node:<node>``."""
        spec = csr.get("spec") if isinstance(csr.get("spec"), dict) else {}
        if (spec or {}).get("signerName") not in _CSR_SIGNERS:
            raise NotAllowed(f"node {node} may only ask the kubelet signers")
        if csr_common_name((spec or {}).get("request")) != f"system:node:{node}":
            raise NotAllowed(f"node {node} may only ask for a certificate of "
                             f"system:node:{node}")

    async def _create_csr(self, node: str, res: CloudResource, msg: Message) -> Any:
        csr = _json_content(msg)
        if name_of(csr) != res.name:
            raise NotAllowed(f"CSR {name_of(csr)!r} does not match its resource")
        self._own_csr(node, csr)
        meta = csr.setdefault("metadata", {})
        for key in ("resourceVersion", "uid", "creationTimestamp"):
            meta.pop(key, None)
        csr.pop("status", None)
        return typed(await self.kube.create(CSRS, csr), CSRS)

    async def _get_csr(self, node: str, res: CloudResource, msg: Message) -> Any:
        csr = await self.kube.get(CSRS, res.name)
        self._own_csr(node, csr)
        return typed(csr, CSRS)


_TOKEN_REQUEST: Final = Resource("authentication.k8s.io", "v1", "tokenrequests", "TokenRequest")


def csr_common_name(request: Any) -> str:
    """The subject CN of a CSR's ``spec.request`` (base64 of a PEM request), or ""."""
    if not isinstance(request, str):
        return ""
    try:
        pem = base64.b64decode(request, validate=True)
        req = x509.load_pem_x509_csr(pem)
        names = req.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    except (ValueError, TypeError):
        return ""
    value = names[0].value if names else ""
    return value if isinstance(value, str) else value.decode(errors="replace")
