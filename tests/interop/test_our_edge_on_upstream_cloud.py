"""Our edgecore joined to upstream KubeEdge v1.23.1 cloudcore (with upstream's CRDs applied to
the cluster, the token from Secret kubeedge/tokensecret): issue 8, "our edge, Go cloud".

Upstream's cloudcore sends ACK-required messages to a node one at a time and waits 25 s for an
ACK it does not get before moving on; so a stall is not slowness but a protocol bug. Where one
would show, a generous bound (STALL_BOUND_S, well under 25 s and far above what either edge
needs here) is asserted; the figures themselves are printed, and measured by
bench/interop_latency.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from cryptography import x509

from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.config import KubeConfig
from pykubeedge.kube.resources import CONFIGMAPS, NODES, PODS, SECRETS
from tests.conftest import eventually
from tests.interop import steps
from tests.interop.rig import InteropRig
from tests.interop.steps import NS, is_, kube

pytestmark = [pytest.mark.integration, pytest.mark.interop]

STALL_BOUND_S = 15.0


@pytest.fixture(scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[InteropRig]:
    rig = InteropRig(cloud="upstream", edge="ours",
                     workdir=tmp_path_factory.mktemp("our-edge-go-cloud"))
    async with rig:
        yield rig


async def test_joins_with_the_upstream_token_and_is_ready(rig: InteropRig) -> None:
    secret = await kube(rig).get(SECRETS, "tokensecret", namespace="kubeedge")
    assert secret["data"]["tokendata"]  # written by upstream's cloudcore
    node = await kube(rig).get(NODES, rig.node)
    labels = node["metadata"]["labels"]
    assert labels.get("node-role.kubernetes.io/edge") == ""
    assert labels.get("disktype") == "test"
    assert await steps.ready_status(rig) == "True"
    cert = x509.load_pem_x509_certificate((rig.edge_dir / "certs" / "server.crt").read_bytes())
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert cn == f"system:node:{rig.node}"  # signed by upstream's CloudHub


async def test_pod_with_a_configmap_runs_without_a_stall(rig: InteropRig) -> None:
    await steps.create_configmap(rig, "c-cfg", {"v": "1"})
    await kube(rig).create(PODS, steps.pod("c-web", rig.node, configmap="c-cfg"))
    took = await steps.timed("pod with a ConfigMap Running",
                             lambda: is_(steps.phase(rig, "c-web"), "Running"))
    assert took < STALL_BOUND_S, f"pod Running after {took:.1f}s: a stalled node queue"
    assert await steps.running_containers(rig, "c-web")


async def test_pod_and_configmap_updates_and_delete_reach_the_edge_without_a_stall(
        rig: InteropRig) -> None:
    await steps.create_configmap(rig, "d-cfg", {"v": "1"})
    await kube(rig).create(PODS, steps.pod("d-web", rig.node, configmap="d-cfg"))
    await eventually(lambda: is_(steps.phase(rig, "d-web"), "Running"), timeout=120,
                     what="pod Running")

    await kube(rig).patch(PODS, "d-web", {"metadata": {"labels": {"v": "2"}}}, namespace=NS)
    took = await steps.timed(
        "pod update in the edge's database",
        lambda: ((steps.edge_row(rig, "pod", "d-web") or {}).get("metadata") or {})
        .get("labels", {}).get("v") == "2", timeout=60)
    assert took < STALL_BOUND_S, f"pod update reached the edge after {took:.1f}s"

    await kube(rig).patch(CONFIGMAPS, "d-cfg", {"data": {"v": "2"}}, namespace=NS)
    took = await steps.timed(
        "ConfigMap update in the edge's database",
        lambda: (steps.edge_row(rig, "configmap", "d-cfg") or {}).get("data") == {"v": "2"},
        timeout=60)
    assert took < STALL_BOUND_S, f"ConfigMap update reached the edge after {took:.1f}s"

    await kube(rig).delete(PODS, "d-web", namespace=NS)
    took = await steps.timed("pod delete reached the edge (containers stopped)",
                             lambda: is_(steps.running_containers(rig, "d-web"), []),
                             timeout=60)
    assert took < STALL_BOUND_S, f"pod delete reached the edge after {took:.1f}s"
    await steps.timed("pod gone from the API server", lambda: steps.gone(rig, "d-web"),
                      timeout=60)


async def test_autonomy_across_an_upstream_cloudcore_restart(rig: InteropRig) -> None:
    await steps.create_configmap(rig, "e-cfg", {"v": "1"})
    created = await kube(rig).create(PODS, steps.pod("e-web", rig.node, configmap="e-cfg"))
    await eventually(lambda: is_(steps.phase(rig, "e-web"), "Running"), timeout=120,
                     what="pod Running")
    containers = await steps.running_containers(rig, "e-web")

    rig.outage = True  # the cloud is away on purpose (see rig.OUTAGE_LINES)
    await rig.stop_cloudcore()
    await kube(rig).patch(CONFIGMAPS, "e-cfg", {"data": {"v": "2"}}, namespace=NS)
    await steps.settle(5)  # the edge is on its own for a while
    assert rig.edgecore is not None and rig.edgecore.running
    assert await steps.running_containers(rig, "e-web") == containers
    async with KubeClient(KubeConfig(server=rig.metaserver)) as edge_api:  # served from SQLite
        served = await edge_api.get(PODS, "e-web", namespace=NS)
    assert served["metadata"]["uid"] == created["metadata"]["uid"]

    await rig.start_cloudcore()
    await steps.timed("node Ready after upstream's cloudcore restarted",
                      lambda: is_(steps.ready_status(rig), "True"), timeout=90, interval=0.5)
    await steps.timed("ConfigMap changed during the outage reached the edge",
                      lambda: (steps.edge_row(rig, "configmap", "e-cfg") or {})
                      .get("data") == {"v": "2"}, timeout=60)
    assert await steps.running_containers(rig, "e-web") == containers  # never restarted
    after = await kube(rig).get(PODS, "e-web", namespace=NS)
    assert after["metadata"]["uid"] == created["metadata"]["uid"]
    assert after["status"]["phase"] == "Running"
    await kube(rig).delete(PODS, "e-web", namespace=NS)
    await eventually(lambda: steps.gone(rig, "e-web"), timeout=60, what="pod deleted")
