"""CloudStream's authorization (kubelet's attributes, SubjectAccessReview, its cache) and its
node directory (addresses to nodes, ambiguity refused, kubelet endpoints pointed at it)."""

from __future__ import annotations

import asyncio
from typing import Any

from pykubeedge.cloud.cloudstream.authz import (
    Attributes,
    Identity,
    SubjectAccessAuthorizer,
    attributes,
    identity_of,
)
from pykubeedge.cloud.cloudstream.nodes import NodeDirectory
from pykubeedge.core.errors import ServerError
from pykubeedge.kube.resources import NODES
from pykubeedge.transport import certs
from tests.unit.cloud.fakekube import FakeKube


class ReviewingKube:
    """Answers SubjectAccessReviews: the API server's identity may do anything."""

    def __init__(self) -> None:
        self.reviews: list[dict[str, Any]] = []
        self.down = False

    async def create(self, res: Any, obj: dict[str, Any], **_: Any) -> dict[str, Any]:
        if self.down:
            raise ServerError("etcd is away", status=503)
        self.reviews.append(obj["spec"])
        allowed = "system:masters" in obj["spec"]["groups"]
        return {**obj, "status": {"allowed": allowed,
                                  "reason": "" if allowed else "no rule allows it"}}


def test_kubelets_request_attributes() -> None:
    assert attributes("GET", "/stats/summary") == Attributes("get", "stats")
    assert attributes("GET", "/metrics/cadvisor") == Attributes("get", "metrics")
    assert attributes("GET", "/containerLogs/a/b/c") == Attributes("get", "proxy")
    assert attributes("POST", "/portForward/a/b") == Attributes("create", "proxy")
    assert attributes("GET", "/statsx") == Attributes("get", "proxy")


def test_the_identity_is_the_certificates_cn_and_organisations() -> None:
    ca = certs.new_ca("ca")
    pair = certs.issue(ca, "kube-apiserver-kubelet-client", orgs=["system:masters", "x"],
                       client=True)
    assert identity_of(pair.cert_der()) == Identity("kube-apiserver-kubelet-client",
                                                   ("system:masters", "x"))
    assert identity_of(None) is None


async def test_decisions_are_reviewed_once_and_cached_as_kubelet_caches_them() -> None:
    kube = ReviewingKube()
    now = [0.0]
    authz = SubjectAccessAuthorizer(kube, clock=lambda: now[0])  # type: ignore[arg-type]
    admin, mallory = Identity("apiserver", ("system:masters",)), Identity("mallory")
    get_logs = Attributes("get", "proxy")
    assert await authz.allowed(admin, get_logs, "edge-1") == (True, "")
    assert await authz.allowed(mallory, get_logs, "edge-1") == (False, "no rule allows it")
    assert kube.reviews[1]["resourceAttributes"] == {"verb": "get", "resource": "nodes",
                                                     "subresource": "proxy", "name": "edge-1"}
    now[0] = 29
    await authz.allowed(admin, get_logs, "edge-1")
    await authz.allowed(mallory, get_logs, "edge-1")
    assert len(kube.reviews) == 2
    now[0] = 31  # a denial is kept 30 s, an allowance 5 min
    await authz.allowed(admin, get_logs, "edge-1")
    await authz.allowed(mallory, get_logs, "edge-1")
    assert len(kube.reviews) == 3


async def test_a_review_that_fails_denies_and_is_not_cached() -> None:
    kube = ReviewingKube()
    kube.down = True
    authz = SubjectAccessAuthorizer(kube)  # type: ignore[arg-type]
    admin = Identity("apiserver", ("system:masters",))
    ok, why = await authz.allowed(admin, Attributes("get", "stats"), "n")
    assert not ok and "could not be checked" in why
    kube.down = False
    assert (await authz.allowed(admin, Attributes("get", "stats"), "n"))[0]


def edge_node(name: str, ip: str, port: int = 10350) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"node-role.kubernetes.io/edge": ""}},
            "status": {"addresses": [{"type": "InternalIP", "address": ip},
                                     {"type": "Hostname", "address": name}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}}


async def test_addresses_map_to_nodes_and_connected_nodes_get_the_stream_port() -> None:
    kube = FakeKube()
    await kube.create(NODES, edge_node("a", "127.0.0.2"))
    await kube.create(NODES, edge_node("b", "127.0.0.3"))
    seen: list[set[str]] = []

    async def on_addresses(ips: set[str]) -> None:
        seen.append(ips)

    directory = NodeDirectory(kube, stream_port=10003, connected=lambda n: n == "a",  # type: ignore[arg-type]
                              on_addresses=on_addresses)
    task = asyncio.create_task(directory.run())
    try:
        for _ in range(200):
            if directory.port_patches:
                break
            await asyncio.sleep(0.01)
        assert directory.node_for("127.0.0.2") == "a" and directory.node_for("127.0.0.9") is None
        assert seen[-1] == {"127.0.0.2", "127.0.0.3"}
        port = kube.objects["nodes"]["a"]["status"]["daemonEndpoints"]["kubeletEndpoint"]
        assert port == {"Port": 10003}
        assert kube.objects["nodes"]["b"]["status"]["daemonEndpoints"]["kubeletEndpoint"] == {
            "Port": 10350}
        # b now claims a's address as well: it names neither
        await kube.patch_status(NODES, "b", {"status": {"addresses": [
            {"type": "InternalIP", "address": "127.0.0.2"}]}})
        for _ in range(200):
            if directory.node_for("127.0.0.2") is None:
                break
            await asyncio.sleep(0.01)
        assert directory.node_for("127.0.0.2") is None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
