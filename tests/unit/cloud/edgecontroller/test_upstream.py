"""EdgeController's answers to the edge, against an in-memory API server: a pod status patch
is checked against the location cache (no GET per patch), carries the UID as a precondition,
and the reply holds only what the edge needs, in upstream's ObjectResp encoding."""

from __future__ import annotations

import json

from pykubeedge.cloud.edgecontroller.location import LocationCache
from pykubeedge.cloud.edgecontroller.upstream import Upstream
from pykubeedge.core.message import Message, new_message
from pykubeedge.kube.resources import PODS
from tests.unit.cloud.fakekube import FakeKube

NS = "apps"


def patch_message(node: str, name: str, patch: object) -> Message:
    return new_message(source="edged", group="resource", operation="patch",
                       resource=f"node/{node}/{NS}/podpatch/{name}",
                       content=json.dumps(patch))


async def edge_with_pod(node: str = "edge-1") -> tuple[FakeKube, LocationCache, Upstream, str]:
    kube = FakeKube()
    location = LocationCache()
    pod = await kube.create(PODS, {"metadata": {"name": "web", "namespace": NS}, "spec": {
        "nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}})
    location.update_pod(pod)  # as the pod informer does
    return kube, location, Upstream(kube, location), pod["metadata"]["uid"]  # type: ignore[arg-type]


async def test_a_status_patch_of_its_own_pod_needs_no_get_and_returns_the_whole_pod() -> None:
    kube, _, upstream, uid = await edge_with_pod()
    reply = await upstream.handle(patch_message("edge-1", "web", {
        "metadata": {"uid": uid}, "status": {"phase": "Running", "podIP": "10.88.0.2"}}))
    assert reply.operation == "response" and reply.group == "resource"
    assert reply.content["Err"] is None
    returned = reply.content["Object"]
    # The whole Pod: upstream's Go edge stores the answer as its copy of the pod.
    assert returned["kind"] == "Pod" and returned["apiVersion"] == "v1"
    assert returned["spec"]["nodeName"] == "edge-1"
    assert reply.resourceversion == returned["metadata"]["resourceVersion"]
    assert returned["status"]["phase"] == "Running"
    assert kube.reads == []  # answered from the location cache
    assert kube.writes[-1] == ("patch/status", "pods", f"{NS}/web")


async def test_the_cache_still_refuses_what_is_not_the_nodes() -> None:
    _, _, upstream, _uid = await edge_with_pod()
    other = await upstream.handle(patch_message("edge-2", "web", {"status": {}}))
    assert other.operation == "error" and "bound to 'edge-1'" in other.content
    ghost = await upstream.handle(patch_message("edge-1", "ghost", {"status": {}}))
    assert ghost.operation == "error" and "does not exist" in ghost.content
    stale = await upstream.handle(patch_message("edge-1", "web", {
        "metadata": {"uid": "an-earlier-uid"}, "status": {}}))
    assert stale.operation == "error" and "another UID" in stale.content


async def test_a_pod_replaced_behind_the_cache_is_not_patched() -> None:
    kube, _, upstream, _uid = await edge_with_pod()
    await kube.delete(PODS, "web", namespace=NS)  # and created again: a new UID...
    await kube.create(PODS, {"metadata": {"name": "web", "namespace": NS}, "spec": {
        "nodeName": "edge-1", "containers": []}})
    # ...before the informer told the cache: the UID precondition stops the patch.
    reply = await upstream.handle(patch_message("edge-1", "web", {"status": {"phase": "Failed"}}))
    assert reply.operation == "response" and reply.content["Object"] is None
    failure = reply.content["Err"]["ErrStatus"]
    assert (failure["reason"], failure["code"]) == ("Conflict", 409)
    assert (await kube.get(PODS, "web", namespace=NS)).get("status") is None


def _mirror(node: str, name: str = "static-edge-1", **meta: object) -> dict:
    return {"metadata": {"name": name, "namespace": NS,
                         "annotations": {"kubernetes.io/config.mirror": "h1",
                                         "kubernetes.io/config.hash": "h1"},
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Node",
                                              "name": node, "uid": "n1", "controller": True}],
                         **meta},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}}


async def test_a_node_creates_the_mirror_pods_of_its_static_pods_only() -> None:
    kube, _, upstream, _uid = await edge_with_pod()

    def insert(node: str, body: dict) -> Message:
        return new_message(source="edged", group="resource", operation="insert",
                           resource=f"node/{node}/{NS}/pod/{body['metadata']['name']}",
                           content=body)

    reply = await upstream.handle(insert("edge-1", _mirror("edge-1")))
    assert reply.operation == "response" and reply.content["Err"] is None
    assert reply.content["Object"]["metadata"]["annotations"]["kubernetes.io/config.mirror"]
    for bad in (_mirror("edge-2"),                                    # bound elsewhere
                {**_mirror("edge-1"), "metadata": {"name": "static-edge-1", "namespace": NS}}):
        refused = await upstream.handle(insert("edge-1", bad))
        assert refused.operation == "error", bad
    owned = _mirror("edge-1")
    owned["metadata"]["ownerReferences"][0]["name"] = "edge-2"
    assert (await upstream.handle(insert("edge-1", owned))).operation == "error"
    assert len(kube.objects["pods"]) == 2  # web, and the one mirror pod


async def test_a_repeated_event_arrives_as_upstreams_event_patch() -> None:
    kube, _, upstream, uid = await edge_with_pod()
    event = {"metadata": {"name": "web.17", "namespace": NS},
             "involvedObject": {"kind": "Pod", "namespace": NS, "name": "web", "uid": uid},
             "reason": "Pulled", "message": "m", "count": 1, "type": "Normal"}
    first = new_message(source="edged", group="resource", operation="insert",
                        resource=f"node/edge-1/{NS}/event/web.17", content=event)
    assert (await upstream.handle(first)).operation == "response"
    patch = new_message(source="edged", group="resource", operation="patch",
                        resource=f"node/edge-1/{NS}/event/web.17",
                        content={"event": {**event, "count": 2},
                                 "patchData": json.dumps({"count": 2, "message": "m"})})
    assert (await upstream.handle(patch)).operation == "response"
    from pykubeedge.kube.resources import EVENTS
    stored = await kube.get(EVENTS, "web.17", namespace=NS)
    assert stored["count"] == 2
    other = new_message(source="edged", group="resource", operation="patch",
                        resource=f"node/edge-2/{NS}/event/web.17",
                        content={"event": event, "patchData": "{}"})
    assert (await upstream.handle(other)).operation == "error"


async def test_the_last_events_of_a_deleted_pod_are_kept_but_only_from_its_node() -> None:
    # kubelet's Killing event comes after the delete: the pod's node may still report it,
    # and nobody may patch the pod's status.
    kube, location, upstream, uid = await edge_with_pod()
    location.delete_pod(await kube.get(PODS, "web", namespace=NS))
    event = {"metadata": {"name": "web.18", "namespace": NS},
             "involvedObject": {"kind": "Pod", "namespace": NS, "name": "web", "uid": uid},
             "reason": "Killing", "message": "Stopping container c", "type": "Normal"}
    killing = await upstream.handle(new_message(
        source="edged", group="resource", operation="insert",
        resource=f"node/edge-1/{NS}/event/web.18", content=event))
    assert killing.operation == "response"
    foreign = await upstream.handle(new_message(
        source="edged", group="resource", operation="insert",
        resource=f"node/edge-2/{NS}/event/web.19",
        content={**event, "metadata": {"name": "web.19", "namespace": NS}}))
    assert foreign.operation == "error" and "does not exist" in foreign.content
    status = await upstream.handle(patch_message("edge-1", "web", {"status": {}}))
    assert status.operation == "error" and "does not exist" in status.content


def _request(node: str, operation: str, resource: str, content: object = None) -> Message:
    return new_message(source="edged", group="resource", operation=operation,
                       resource=f"node/{node}/{resource}", content=content)


async def test_a_missing_lease_is_a_not_found_status_error_the_go_edge_decodes() -> None:
    _, _, upstream, _uid = await edge_with_pod()
    reply = await upstream.handle(_request("edge-1", "query", "kube-node-lease/lease/edge-1"))
    assert reply.operation == "response" and reply.group == "resource"
    assert reply.content["Object"] is None
    status = reply.content["Err"]["ErrStatus"]
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "NotFound", 404)
    created = await upstream.handle(_request("edge-1", "insert", "kube-node-lease/lease/edge-1", {
        "metadata": {"name": "edge-1", "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": "edge-1", "leaseDurationSeconds": 40}}))
    lease = created.content["Object"]
    assert (lease["kind"], lease["apiVersion"]) == ("Lease", "coordination.k8s.io/v1")
    assert created.content["Err"] is None
    assert created.resourceversion == lease["metadata"]["resourceVersion"]


async def test_volume_queries_answer_only_what_the_nodes_pods_mount() -> None:
    from pykubeedge.cloud.edgecontroller.upstream import (
        PERSISTENTVOLUMECLAIMS,
        PERSISTENTVOLUMES,
        VOLUMEATTACHMENTS,
    )
    kube, _, upstream, _uid = await edge_with_pod()
    await kube.create(PODS, {"metadata": {"name": "db", "namespace": NS}, "spec": {
        "nodeName": "edge-1", "containers": [],
        "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}})
    await kube.create(PERSISTENTVOLUMECLAIMS, {"metadata": {"name": "data", "namespace": NS}})
    await kube.create(PERSISTENTVOLUMECLAIMS, {"metadata": {"name": "other", "namespace": NS}})
    await kube.create(PERSISTENTVOLUMES, {"metadata": {"name": "pv-1"}, "spec": {
        "claimRef": {"namespace": NS, "name": "data"}}})
    await kube.create(VOLUMEATTACHMENTS, {"metadata": {"name": "va-1"},
                                          "spec": {"nodeName": "edge-1"}})
    pvc = await upstream.handle(_request("edge-1", "query", f"{NS}/persistentvolumeclaim/data"))
    assert pvc.operation == "response" and pvc.content["kind"] == "PersistentVolumeClaim"
    assert pvc.resourceversion
    pv = await upstream.handle(_request("edge-1", "query", "null/persistentvolume/pv-1"))
    assert pv.content["kind"] == "PersistentVolume"
    va = await upstream.handle(_request("edge-1", "query", "null/volumeattachment/va-1"))
    assert va.content["apiVersion"] == "storage.k8s.io/v1"
    for node, resource in (("edge-1", f"{NS}/persistentvolumeclaim/other"),
                           ("edge-2", f"{NS}/persistentvolumeclaim/data"),
                           ("edge-2", "null/persistentvolume/pv-1"),
                           ("edge-2", "null/volumeattachment/va-1")):
        refused = await upstream.handle(_request(node, "query", resource))
        assert refused.operation == "error", (node, resource)


def _csr(cn: str, signer: str = "kubernetes.io/kubelet-serving") -> dict:
    import base64

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    key = ec.generate_private_key(ec.SECP256R1())
    req = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)])).sign(key, hashes.SHA256())
    pem = req.public_bytes(serialization.Encoding.PEM)
    return {"metadata": {"name": "csr-1"}, "spec": {
        "request": base64.b64encode(pem).decode(), "signerName": signer,
        "usages": ["server auth"]}}


async def test_a_node_asks_only_for_its_own_kubelet_certificates() -> None:
    _, _, upstream, _uid = await edge_with_pod()
    ok = await upstream.handle(_request("edge-1", "insert", "null/certificatesigningrequest/csr-1",
                                        _csr("system:node:edge-1")))
    assert ok.operation == "response" and ok.content["Err"] is None
    assert ok.content["Object"]["kind"] == "CertificateSigningRequest"
    for body in (_csr("system:node:edge-2"), _csr("system:node:edge-1", "example.com/any")):
        refused = await upstream.handle(_request(
            "edge-1", "insert", "null/certificatesigningrequest/csr-1", body))
        assert refused.operation == "error"
    assert (await upstream.handle(_request(
        "edge-1", "query", "null/certificatesigningrequest/csr-1"))).operation == "response"
    assert (await upstream.handle(_request(
        "edge-2", "query", "null/certificatesigningrequest/csr-1"))).operation == "error"


async def test_node_update_and_legacy_podstatus_are_served_for_the_node_itself() -> None:
    from pykubeedge.kube.resources import NODES
    kube, _, upstream, uid = await edge_with_pod()
    await kube.create(NODES, {"metadata": {"name": "edge-1", "labels": {"a": "1"}}})
    reply = await upstream.handle(_request("edge-1", "update", "null/node/edge-1", {
        "metadata": {"name": "edge-1", "labels": {"a": "2"}}, "spec": {"taints": []}}))
    assert (reply.operation, reply.content) == ("response", "OK")
    assert (await kube.get(NODES, "edge-1"))["metadata"]["labels"]["a"] == "2"
    assert (await upstream.handle(_request("edge-2", "update", "null/node/edge-1", {
        "metadata": {"name": "edge-1"}}))).operation == "error"
    status = await upstream.handle(_request("edge-1", "update", f"{NS}/podstatus", [
        {"uid": uid, "name": "web", "status": {"phase": "Running"}}]))
    assert (status.operation, status.content) == ("response", "OK")
    assert (await kube.get(PODS, "web", namespace=NS))["status"]["phase"] == "Running"
    refused = await upstream.handle(_request("edge-2", "update", f"{NS}/podstatus", [
        {"uid": uid, "name": "web", "status": {"phase": "Failed"}}]))
    assert refused.operation == "error"


async def test_bad_podstatus_content_is_a_clear_error_and_changes_nothing() -> None:
    kube, _, upstream, _uid = await edge_with_pod()
    for content in ("{not json", "[1, 2]", '[{"name": "web"}]'):
        reply = await upstream.handle(_request("edge-1", "update", f"{NS}/podstatus", content))
        assert reply.operation == "error", content
    assert not [w for w in kube.writes if w[0] == "patch/status"]
