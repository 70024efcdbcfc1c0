"""Edged's kubelet behaviours end to end (issue 11): real containerd, the full-tier control
plane with every default controller, a real registry on loopback.

One LocalUp serves the module. The pods of independent behaviours are created together at
the start (``batch``) so they run concurrently; each test then waits for what its pod shows
(events, statuses), never for fixed sleeps."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pykubeedge.core.errors import NotFound
from pykubeedge.devcluster.localimages import ImageConfig, busybox_layer, oci_archive
from pykubeedge.keadm.localup import LocalUp
from pykubeedge.kube.resources import PODS, SECRETS, Resource
from tests.conftest import eventually
from tests.e2e.registry import LocalRegistry, docker_config_secret

pytestmark = pytest.mark.integration

NS = "default"
IMAGE = "busybox:1.35"
SLEEP = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
HOST_DIR = Path("/tmp") / f"pke-edged-e2e-{uuid.uuid4().hex[:8]}"
EVENTS = Resource("", "v1", "events", "Event", True)


def kubectl(local: LocalUp, *args: str, stdin: str | None = None, check: bool = True) -> str:
    out = subprocess.run(["kubectl", "--kubeconfig", str(local.cluster.kubeconfig), *args],
                         capture_output=True, text=True, input=stdin, timeout=60)
    if check:
        assert out.returncode == 0, out.stderr
    return out.stdout + out.stderr


async def k(local: LocalUp, *args: str, stdin: str | None = None) -> str:
    return await asyncio.to_thread(kubectl, local, *args, stdin=stdin)


async def apply(local: LocalUp, *objects: dict[str, Any]) -> None:
    doc = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    await k(local, "apply", "-f", "-", stdin=json.dumps(doc))


def pod(name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    meta = spec.pop("metadata", {})
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, **meta},
            "spec": {"nodeName": "edge-node", "terminationGracePeriodSeconds": 2,
                     "containers": containers, **spec}}


def container(name: str = "c", command: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": IMAGE, "command": command or SLEEP, **fields}


async def get_pod(local: LocalUp, name: str) -> dict[str, Any]:
    assert local.kube is not None
    return await local.kube.get(PODS, name, namespace=NS)


async def phase(local: LocalUp, name: str) -> str:
    return str((await get_pod(local, name)).get("status", {}).get("phase"))


async def wait_phase(local: LocalUp, name: str, want: str, timeout: float = 90) -> dict[str, Any]:
    await eventually(lambda: _phase_is(local, name, want), timeout=timeout, interval=0.2,
                     what=f"pod {name} {want}")
    return await get_pod(local, name)


async def _phase_is(local: LocalUp, name: str, want: str) -> bool:
    try:
        return await phase(local, name) == want
    except NotFound:
        return False


def statuses(p: dict[str, Any], key: str = "containerStatuses") -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in p.get("status", {}).get(key) or []}


def condition(p: dict[str, Any], kind: str) -> dict[str, Any]:
    for c in p.get("status", {}).get("conditions") or []:
        if c["type"] == kind:
            return dict(c)
    return {}


async def events_of(local: LocalUp, name: str) -> list[dict[str, Any]]:
    assert local.kube is not None
    items = (await local.kube.list(EVENTS, namespace=NS,
                                   field_selector=f"involvedObject.name={name}"))["items"]
    return list(items)


async def wait_event(local: LocalUp, name: str, reason: str, timeout: float = 90,
                     contains: str = "") -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    async def seen() -> bool:
        found[:] = [e for e in await events_of(local, name)
                    if e["reason"] == reason and contains in e.get("message", "")]
        return bool(found)

    await eventually(seen, timeout=timeout, interval=0.3, what=f"event {reason} of {name}")
    return found[0]


# -- the module's cluster and the pods it starts at once --------------------------------------


@pytest.fixture(scope="module")
async def local(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalUp]:
    async with LocalUp(tier="full", workdir=tmp_path_factory.mktemp("edged-e2e"),
                       runtime="containerd", network="bridge", bridge="pkeed0",
                       pod_subnet="10.254.81.0/24", demo=False) as up:
        yield up
    await asyncio.to_thread(shutil.rmtree, HOST_DIR, ignore_errors=True)


@pytest.fixture(scope="module")
async def registry(local: LocalUp, tmp_path_factory: pytest.TempPathFactory
                   ) -> AsyncIterator[LocalRegistry]:
    async with LocalRegistry(tmp_path_factory.mktemp("registry"), user="e2e",
                             password="pke-s3cret") as reg:
        layer = await asyncio.to_thread(busybox_layer)
        archive = oci_archive(layer, [ImageConfig(names=("app",), cmd=("sh",))])
        await reg.push(archive, "e2e/app", "1.0")
        assert local.containerd is not None
        local.containerd.trust_plain_http(reg.host)
        yield reg


INIT_PODS = [
    pod("init-order", [container(command=["sh", "-c", "cat /work/log > /dev/termination-log"],
                                 volumeMounts=[{"name": "work", "mountPath": "/work"}])],
        restartPolicy="Never",
        initContainers=[
            container("one", ["sh", "-c", "echo one >> /work/log"],
                      volumeMounts=[{"name": "work", "mountPath": "/work"}]),
            container("two", ["sh", "-c", "echo two >> /work/log"],
                      volumeMounts=[{"name": "work", "mountPath": "/work"}]),
        ],
        volumes=[{"name": "work", "emptyDir": {}}]),
    pod("init-fails", [container()], restartPolicy="Never",
        initContainers=[container("bad", ["sh", "-c", "exit 3"])]),
]


def _batch(local: LocalUp) -> list[dict[str, Any]]:
    host = str(HOST_DIR)
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "e2e-cfg",
                                                                "namespace": NS},
          "data": {"v": "1", "ready": "no"}}
    return [cm, *INIT_PODS,
            pod("hostpath", [container(command=["sh", "-c", "echo from-pod > /h/out; "
                                                            "cat /tmp-host/marker > /dev/null; "
                                                            + SLEEP[2]],
                                       volumeMounts=[{"name": "h", "mountPath": "/h"},
                                                     {"name": "t", "mountPath": "/tmp-host"}])],
                volumes=[{"name": "h", "hostPath": {"path": f"{host}/hp", "type":
                                                    "DirectoryOrCreate"}},
                         {"name": "t", "hostPath": {"path": "/tmp"}}]),
            pod("cm-watch", [container(
                volumeMounts=[{"name": "cfg", "mountPath": "/cfg"}],
                readinessProbe={"exec": {"command": ["grep", "-q", "2", "/cfg/v"]},
                                "periodSeconds": 1, "failureThreshold": 1})],
                volumes=[{"name": "cfg", "configMap": {"name": "e2e-cfg"}}]),
            pod("liveness", [container(livenessProbe={
                "exec": {"command": ["sh", "-c", "exit 1"]}, "periodSeconds": 1,
                "failureThreshold": 1})]),
            pod("startup", [container(
                command=["sh", "-c", "sleep 6; touch /tmp/started; " + SLEEP[2]],
                startupProbe={"exec": {"command": ["test", "-f", "/tmp/started"]},
                              "periodSeconds": 1, "failureThreshold": 30},
                livenessProbe={"exec": {"command": ["test", "-f", "/tmp/started"]},
                               "periodSeconds": 1, "failureThreshold": 1})]),
            pod("oom", [container(command=["sh", "-c", "x=$(head -c 200000000 /dev/zero | "
                                                       "tr '\\0' a); echo ${#x}"],
                                  resources={"limits": {"memory": "24Mi"}})],
                restartPolicy="Never"),
            pod("prestop", [container(
                command=["sh", "-c", "trap 'echo term >> /h/log; exit 0' TERM; "
                                     "echo start >> /h/log; while true; do sleep 1; done"],
                lifecycle={"preStop": {"exec": {"command": [
                    "sh", "-c", "echo prestop >> /h/log"]}}},
                volumeMounts=[{"name": "h", "mountPath": "/h"}])],
                terminationGracePeriodSeconds=10,
                volumes=[{"name": "h", "hostPath": {"path": f"{host}/prestop",
                                                    "type": "DirectoryOrCreate"}}]),
            pod("env-and-more", [container(
                command=["sh", "-c", "echo $POD_NAME $CPU_LIMIT $FROM_CM > /dev/termination-log"],
                env=[{"name": "POD_NAME", "valueFrom": {"fieldRef": {
                    "fieldPath": "metadata.name"}}},
                     {"name": "CPU_LIMIT", "valueFrom": {"resourceFieldRef": {
                         "resource": "limits.cpu", "divisor": "1m"}}},
                     {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {
                         "name": "e2e-cfg", "key": "v"}}}],
                resources={"limits": {"cpu": "250m", "memory": "64Mi"}},
                securityContext={"runAsUser": 1000, "readOnlyRootFilesystem": True})],
                restartPolicy="Never"),
            ]


LIVENESS_RESTARTS: dict[int, tuple[float, float]] = {}
"""restartCount -> (the previous instance's finishedAt, this one's startedAt), Unix s."""


async def _follow_liveness(local: LocalUp) -> None:
    """Record every restart of pod ``liveness`` from its statuses (bounded: 4 restarts)."""
    from pykubeedge.edge.edged.podworker import parse_time

    deadline = time.monotonic() + 200
    while time.monotonic() < deadline and len(LIVENESS_RESTARTS) < 4:
        try:
            s = statuses(await get_pod(local, "liveness")).get("c") or {}
        except NotFound:
            s = {}
        running = (s.get("state") or {}).get("running")
        finished = ((s.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        if running and finished and s.get("restartCount"):
            LIVENESS_RESTARTS.setdefault(int(s["restartCount"]), (
                parse_time(finished) or 0.0, parse_time(running["startedAt"]) or 0.0))
        await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
async def batch(local: LocalUp) -> AsyncIterator[float]:
    """Start every independent pod at once; the time they were created."""
    await asyncio.to_thread((HOST_DIR / "hp").mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(Path("/tmp/marker").write_text, "x")
    started = time.monotonic()
    await apply(local, *_batch(local))
    follower = asyncio.create_task(_follow_liveness(local))
    yield started
    follower.cancel()
    await asyncio.gather(follower, return_exceptions=True)


# -- containers ---------------------------------------------------------------------------------


async def test_init_containers_run_in_order_to_completion(local: LocalUp, batch: float) -> None:
    p = await wait_phase(local, "init-order", "Succeeded")
    inits = p["status"]["initContainerStatuses"]
    assert [s["name"] for s in inits] == ["one", "two"]
    for s in inits:
        assert s["state"]["terminated"]["exitCode"] == 0
        assert s["ready"] is True
    one, two = (s["state"]["terminated"] for s in inits)
    assert one["finishedAt"] <= two["startedAt"]
    main = statuses(p)["c"]["state"]["terminated"]
    assert main["message"] == "one\ntwo\n"  # both ran, in order, before the main container
    assert condition(p, "Initialized")["status"] == "True"


async def test_a_failed_init_container_fails_the_pod_under_never(local: LocalUp,
                                                                 batch: float) -> None:
    p = await wait_phase(local, "init-fails", "Failed")
    bad = statuses(p, "initContainerStatuses")["bad"]
    assert bad["state"]["terminated"]["exitCode"] == 3
    main = statuses(p)["c"]
    assert "running" not in main["state"] and "terminated" not in main["state"]
    assert condition(p, "Initialized")["status"] == "False"


async def test_env_resources_and_security_context(local: LocalUp, batch: float) -> None:
    p = await wait_phase(local, "env-and-more", "Succeeded")
    message = statuses(p)["c"]["state"]["terminated"]["message"]
    assert message.strip() == "env-and-more 250 1"
    assert p["status"]["qosClass"] == "Guaranteed"  # requests default to the limits


# -- volumes ------------------------------------------------------------------------------------


async def test_host_path_content_is_on_the_host(local: LocalUp, batch: float) -> None:
    await wait_phase(local, "hostpath", "Running")
    await eventually(lambda: (HOST_DIR / "hp" / "out").is_file(), timeout=30,
                     what="file written by the pod")
    assert (HOST_DIR / "hp" / "out").read_text() == "from-pod\n"


async def test_a_configmap_edit_reaches_the_running_pods_file(local: LocalUp,
                                                              batch: float) -> None:
    p = await wait_phase(local, "cm-watch", "Running")
    assert condition(p, "Ready")["status"] == "False"  # /cfg/v is "1"
    uid = p["metadata"]["uid"]
    t0 = time.monotonic()
    await k(local, "patch", "configmap", "e2e-cfg", "-p", '{"data":{"v":"2"}}')

    async def ready() -> bool:
        return condition(await get_pod(local, "cm-watch"), "Ready").get("status") == "True"

    await eventually(ready, timeout=90, interval=0.2, what="readiness on the new file")
    print(f"configmap edit seen inside the pod in {time.monotonic() - t0:.1f}s")
    volume = (local.edge_dir / "kubelet" / "pods" / uid / "volumes" /
              "kubernetes.io~configmap" / "cfg")
    assert (volume / "v").read_text() == "2"
    assert (volume / "..data").is_symlink()  # the atomic writer's swap


# -- probes and lifecycle -----------------------------------------------------------------------


async def test_failing_liveness_restarts_with_growing_backoff(local: LocalUp,
                                                              batch: float) -> None:
    async def restarted_three_times() -> bool:
        return max(LIVENESS_RESTARTS, default=0) >= 3

    await eventually(restarted_three_times, timeout=150, interval=0.2,
                     what="three liveness restarts")
    # the window between one instance's exit and the next one's start: kubelet's back-off
    gaps = {n: started - finished for n, (finished, started) in LIVENESS_RESTARTS.items()}
    print(f"liveness restart windows (s): {gaps}")
    assert gaps[1] <= 3  # the first crash restarts at once
    assert 9 <= gaps[2] <= 15 and 19 <= gaps[3] <= 26  # then 10 s, then 20 s
    killing = await wait_event(local, "liveness", "Killing", contains="failed liveness probe")
    assert killing["message"] == "Container c failed liveness probe, will be restarted"
    await wait_event(local, "liveness", "Unhealthy", contains="Liveness probe failed")
    await wait_event(local, "liveness", "BackOff", contains="Back-off restarting failed")


async def test_a_startup_probe_holds_liveness_off(local: LocalUp, batch: float) -> None:
    async def started() -> bool:
        s = statuses(await get_pod(local, "startup")).get("c") or {}
        return bool(s.get("started")) and bool(s.get("ready"))

    await eventually(started, timeout=60, interval=0.3, what="startup probe success")
    s = statuses(await get_pod(local, "startup"))["c"]
    assert s["restartCount"] == 0  # liveness would have killed it during the first 6 s


async def test_oom_killed_is_reported(local: LocalUp, batch: float) -> None:
    p = await wait_phase(local, "oom", "Failed")
    terminated = statuses(p)["c"]["state"]["terminated"]
    assert terminated["reason"] == "OOMKilled"
    assert terminated["exitCode"] == 137


async def test_pre_stop_runs_before_sigterm(local: LocalUp, batch: float) -> None:
    await wait_phase(local, "prestop", "Running")
    log = HOST_DIR / "prestop" / "log"
    await eventually(lambda: log.is_file(), timeout=30, what="the pod started")
    await k(local, "delete", "pod", "prestop", "--wait=false")
    await eventually(lambda: "term" in log.read_text(), timeout=60, what="SIGTERM handled")
    assert log.read_text().split() == ["start", "prestop", "term"]


async def test_readiness_drives_the_deployment_available_count(local: LocalUp,
                                                               batch: float) -> None:
    template = pod("x", [container(
        volumeMounts=[{"name": "cfg", "mountPath": "/cfg"}],
        readinessProbe={"exec": {"command": ["grep", "-q", "yes", "/cfg/ready"]},
                        "periodSeconds": 1, "failureThreshold": 1})],
        volumes=[{"name": "cfg", "configMap": {"name": "ready-cfg"}}])
    spec = template["spec"]
    del spec["nodeName"]
    spec["nodeSelector"] = {"node-role.kubernetes.io/edge": ""}
    await apply(local, {"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "ready-cfg", "namespace": NS},
                        "data": {"ready": "yes"}},
                {"apiVersion": "apps/v1", "kind": "Deployment",
                 "metadata": {"name": "ready-dep", "namespace": NS},
                 "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "ready-dep"}},
                          "template": {"metadata": {"labels": {"app": "ready-dep"}},
                                       "spec": spec}}})

    async def available(n: int) -> bool:
        out = await k(local, "get", "deployment", "ready-dep", "-o",
                      "jsonpath={.status.availableReplicas}")
        return (int(out) if out.strip() else 0) == n

    await eventually(lambda: available(2), timeout=90, interval=0.3, what="2 available")
    await k(local, "patch", "configmap", "ready-cfg", "-p", '{"data":{"ready":"no"}}')
    await eventually(lambda: available(0), timeout=90, interval=0.3, what="0 available")
    await k(local, "patch", "configmap", "ready-cfg", "-p", '{"data":{"ready":"yes"}}')
    await eventually(lambda: available(2), timeout=90, interval=0.3, what="2 available again")
    await k(local, "delete", "deployment", "ready-dep", "--wait=false")


# -- images -------------------------------------------------------------------------------------


async def test_pull_from_a_registry_with_a_pull_secret_and_refused_without(
        local: LocalUp, registry: LocalRegistry) -> None:
    assert local.kube is not None
    secret = docker_config_secret("regcred", registry.host, registry.user, registry.password)
    secret["metadata"]["namespace"] = NS
    await local.kube.create(SECRETS, secret)
    image = f"{registry.host}/e2e/app:1.0"
    await apply(local,
                pod("pulled", [{"name": "c", "image": image, "command": SLEEP}],
                    imagePullSecrets=[{"name": "regcred"}]),
                pod("no-secret", [{"name": "c", "image": f"{registry.host}/e2e/app:1.0",
                                   "imagePullPolicy": "Always", "command": SLEEP}]))
    p = await wait_phase(local, "pulled", "Running", timeout=120)
    assert statuses(p)["c"]["imageID"]
    pulled = await wait_event(local, "pulled", "Pulled")
    assert pulled["message"].startswith(f'Successfully pulled image "{image}"')

    async def backing_off() -> bool:
        out = await k(local, "get", "pod", "no-secret", "--no-headers")
        return "ImagePullBackOff" in out

    await eventually(backing_off, timeout=120, interval=0.5, what="ImagePullBackOff shown")
    failed = await wait_event(local, "no-secret", "Failed", contains="Failed to pull image")
    assert "401" in failed["message"] or "authorization" in failed["message"].lower() or \
        "unauthorized" in failed["message"].lower()


# -- events, static pods, hold upgrade ------------------------------------------------------------


async def test_kubectl_describe_shows_edged_events(local: LocalUp, batch: float) -> None:
    await wait_phase(local, "hostpath", "Running")
    out = await k(local, "describe", "pod", "hostpath")
    for reason in ("Pulled", "Created", "Started"):
        assert reason in out, out
    assert "kubelet" in out and "edge-node" in out
    events = await k(local, "get", "events", "--field-selector",
                     "involvedObject.name=hostpath")
    assert "Started container c" in events


async def test_a_static_pod_gets_a_mirror_pod_that_goes_with_its_file(local: LocalUp) -> None:
    local.static_pod_dir.mkdir(parents=True, exist_ok=True)
    manifest = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "static-web", "namespace": NS},
                "spec": {"containers": [container()]}}
    path = local.static_pod_dir / "static-web.yaml"
    path.write_text(json.dumps(manifest))
    p = await wait_phase(local, "static-web-edge-node", "Running", timeout=90)
    annotations = p["metadata"]["annotations"]
    assert annotations["kubernetes.io/config.source"] == "file"
    assert annotations["kubernetes.io/config.mirror"] == annotations["kubernetes.io/config.hash"]
    assert p["metadata"]["ownerReferences"][0]["kind"] == "Node"
    path.unlink()

    async def gone() -> bool:
        try:
            await get_pod(local, "static-web-edge-node")
        except NotFound:
            return True
        return False

    await eventually(gone, timeout=90, interval=0.3, what="mirror pod removed")


async def test_a_held_pod_waits_until_released_through_metaserver(local: LocalUp) -> None:
    spec = pod("held", [container()])["spec"]
    del spec["nodeName"]
    spec["nodeSelector"] = {"node-role.kubernetes.io/edge": ""}
    await apply(local, {"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "held", "namespace": NS},
                        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "held"}},
                                 "template": {"metadata": {
                                     "labels": {"app": "held"},
                                     "annotations": {"edge.kubeedge.io/hold-upgrade": "true"}},
                                     "spec": spec}}})
    assert local.kube is not None
    names: list[str] = []

    async def held() -> bool:
        pods = (await local.kube.list(PODS, namespace=NS, label_selector="app=held"))["items"]
        names[:] = [p["metadata"]["name"] for p in pods]
        return any(condition(p, "HeldUpgrade").get("status") == "True" for p in pods)

    await eventually(held, timeout=60, interval=0.3, what="HeldUpgrade=True")
    [name] = names
    assert await phase(local, name) == "Pending"
    out = await asyncio.to_thread(subprocess.run, [
        "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
        "-H", "Content-Type: text/plain", "--data", f"{NS}/{name}",
        f"{local.metaserver}/api/v1/pods/unhold-upgrade"], capture_output=True, text=True,
        timeout=30)
    assert out.stdout == "200", out.stderr
    await wait_phase(local, name, "Running")
    await k(local, "delete", "deployment", "held", "--wait=false")


async def test_node_status_capacity_and_pressure(local: LocalUp) -> None:
    node = json.loads(await k(local, "get", "node", local.node, "-o", "json"))
    status = node["status"]
    for key in ("cpu", "memory", "pods", "ephemeral-storage"):
        assert key in status["capacity"] and key in status["allocatable"]
    kinds = [c["type"] for c in status["conditions"]]
    assert kinds == ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
    ready = status["conditions"][-1]
    assert (ready["reason"], ready["message"]) == ("EdgeReady", "edge is posting ready status")
    out = await k(local, "get", "events", "-A", "--field-selector",
                  f"involvedObject.kind=Node,involvedObject.name={local.node}")
    assert "Starting" in out


# -- the cluster around it: upstream's e2e shapes --------------------------------------------------


async def _ready_count(local: LocalUp, kind: str, name: str, path: str) -> int:
    out = await k(local, "get", kind, name, "-o", f"jsonpath={{{path}}}")
    return int(out) if out.strip().isdigit() else 0


async def test_deployment_scaled_one_three_zero(local: LocalUp) -> None:
    spec = pod("x", [container()])["spec"]
    del spec["nodeName"]
    spec["nodeSelector"] = {"node-role.kubernetes.io/edge": ""}
    await apply(local, {"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "scale", "namespace": NS},
                        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "scale"}},
                                 "template": {"metadata": {"labels": {"app": "scale"}},
                                              "spec": spec}}})
    for replicas in (1, 3, 0):
        await k(local, "scale", "deployment", "scale", f"--replicas={replicas}")

        async def settled(n: int = replicas) -> bool:
            ready = await _ready_count(local, "deployment", "scale", ".status.readyReplicas")
            assert local.kube is not None
            pods = (await local.kube.list(PODS, namespace=NS,
                                          label_selector="app=scale"))["items"]
            return ready == n and len(pods) == n

        await eventually(settled, timeout=120, interval=0.3, what=f"{replicas} replicas")


async def test_statefulset_of_two_survives_deletions(local: LocalUp) -> None:
    spec = pod("x", [container()])["spec"]
    del spec["nodeName"]
    spec["nodeSelector"] = {"node-role.kubernetes.io/edge": ""}
    await apply(local,
                {"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": "sts", "namespace": NS},
                 "spec": {"clusterIP": "None", "selector": {"app": "sts"},
                          "ports": [{"port": 80}]}},
                {"apiVersion": "apps/v1", "kind": "StatefulSet",
                 "metadata": {"name": "sts", "namespace": NS},
                 "spec": {"replicas": 2, "serviceName": "sts",
                          "selector": {"matchLabels": {"app": "sts"}},
                          "template": {"metadata": {"labels": {"app": "sts"}}, "spec": spec}}})

    async def both_running() -> bool:
        return all([await _phase_is(local, "sts-0", "Running"),
                    await _phase_is(local, "sts-1", "Running")])

    await eventually(both_running, timeout=120, interval=0.3, what="sts-0 and sts-1 Running")
    for _ in range(2):
        old = (await get_pod(local, "sts-0"))["metadata"]["uid"]
        await k(local, "delete", "pod", "sts-0", "--wait=false")

        async def replaced(uid: str = old) -> bool:
            try:
                p = await get_pod(local, "sts-0")
            except NotFound:
                return False
            return p["metadata"]["uid"] != uid and p["status"].get("phase") == "Running"

        await eventually(replaced, timeout=120, interval=0.3, what="sts-0 recreated")
    hosts = local.edge_dir / "kubelet" / "pods" / (await get_pod(local, "sts-0"))[
        "metadata"]["uid"] / "etc-hosts"
    assert "sts-0.sts.default.svc.cluster.local" in hosts.read_text()


async def test_daemonset_runs_on_the_edge_node(local: LocalUp) -> None:
    spec = pod("x", [container()])["spec"]
    del spec["nodeName"]
    spec["nodeSelector"] = {"node-role.kubernetes.io/edge": ""}
    await apply(local, {"apiVersion": "apps/v1", "kind": "DaemonSet",
                        "metadata": {"name": "ds", "namespace": NS},
                        "spec": {"selector": {"matchLabels": {"app": "ds"}},
                                 "template": {"metadata": {"labels": {"app": "ds"}},
                                              "spec": spec}}})

    async def ready() -> bool:
        return await _ready_count(local, "daemonset", "ds", ".status.numberReady") == 1

    await eventually(ready, timeout=120, interval=0.3, what="DaemonSet pod ready")


async def test_job_runs_to_completion(local: LocalUp) -> None:
    spec = pod("x", [container(command=["sh", "-c", "echo done"])])["spec"]
    del spec["nodeName"]
    spec["nodeSelector"] = {"node-role.kubernetes.io/edge": ""}
    spec["restartPolicy"] = "Never"
    await apply(local, {"apiVersion": "batch/v1", "kind": "Job",
                        "metadata": {"name": "job", "namespace": NS},
                        "spec": {"backoffLimit": 2, "template": {"spec": spec}}})

    async def complete() -> bool:
        return await _ready_count(local, "job", "job", ".status.succeeded") == 1

    await eventually(complete, timeout=120, interval=0.3, what="Job complete")


# -- nothing silently substituted --------------------------------------------------------------

UNSERVED_VOLUMES: dict[str, dict[str, Any]] = {
    "persistentVolumeClaim": {"claimName": "c"},
    "csi": {"driver": "example.csi.io"},
    "nfs": {"server": "127.0.0.1", "path": "/x"},
    "iscsi": {"targetPortal": "127.0.0.1:3260", "iqn": "iqn.2001-04.com.example:x", "lun": 0},
    "fc": {"targetWWNs": ["500a0982991b8dc5"], "lun": 0},
    "cephfs": {"monitors": ["127.0.0.1:6789"]},
    "rbd": {"monitors": ["127.0.0.1:6789"], "image": "x"},
    "glusterfs": {"endpoints": "e", "path": "p"},
    "flexVolume": {"driver": "example/x"},
    "gitRepo": {"repository": "https://example.invalid/x.git"},
    "image": {"reference": IMAGE},
    "ephemeral": {"volumeClaimTemplate": {"spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}},
}
SERVED_VOLUMES: dict[str, dict[str, Any]] = {
    "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"},
    "hostPath": {"path": "/tmp", "type": "Directory"},
    "configMap": {"name": "e2e-cfg", "items": [{"key": "v", "path": "x/v", "mode": 0o600}]},
    "secret": {"secretName": "sub-secret", "defaultMode": 0o400},
    "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]},
    "projected": {"sources": [{"configMap": {"name": "e2e-cfg"}},
                              {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {
                                  "fieldPath": "metadata.namespace"}}]}},
                              {"serviceAccountToken": {"path": "token"}}]},
}
UNSERVED_FIELDS: dict[str, dict[str, Any]] = {
    "host-users": {"hostUsers": False},
    "windows": {"os": {"name": "windows"}},
}


async def test_every_volume_type_and_field_is_served_or_refused_with_a_reason(
        local: LocalUp, batch: float) -> None:
    assert local.kube is not None
    await local.kube.create(SECRETS, {"metadata": {"name": "sub-secret", "namespace": NS},
                                      "data": {"k": base64.b64encode(b"v").decode()}})
    created: dict[str, str] = {}
    cases: list[tuple[str, dict[str, Any], bool]] = []
    for kind, source in {**UNSERVED_VOLUMES, **SERVED_VOLUMES}.items():
        name = f"vol-{kind.lower()}"
        cases.append((name, pod(name, [container(volumeMounts=[{"name": "v",
                                                                 "mountPath": "/v"}])],
                                volumes=[{"name": "v", kind: source}]),
                      kind in SERVED_VOLUMES))
    for label, fields in UNSERVED_FIELDS.items():
        cases.append((f"field-{label}", pod(f"field-{label}", [container()], **fields), False))
    cases.append(("kitchen-sink", pod("kitchen-sink", [container(
        ports=[{"containerPort": 8080, "name": "http"}],
        workingDir="/tmp", stdin=True, tty=True,
        securityContext={"capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]},
                         "allowPrivilegeEscalation": False, "runAsUser": 1000,
                         "runAsGroup": 3000},
        terminationMessagePolicy="FallbackToLogsOnError")],
        shareProcessNamespace=True, hostAliases=[{"ip": "10.1.2.3", "hostnames": ["alias"]}],
        dnsPolicy="None", dnsConfig={"nameservers": ["127.0.0.53"], "searches": ["x.local"]},
        hostname="sink", subdomain="sub", activeDeadlineSeconds=3600,
        securityContext={"fsGroup": 2000, "supplementalGroups": [4000],
                         "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start",
                                      "value": "0"}]}), True))
    for name, body, _served in cases:
        try:
            await local.kube.create(PODS, body)
            created[name] = "created"
        except Exception as exc:  # the API server refused it: it never reaches Edged
            created[name] = f"refused by the API server: {exc}"
    results: dict[str, str] = {}

    async def decided() -> bool:
        for name, _body, _served in cases:
            if not created[name].startswith("created") or name in results:
                continue
            p = await get_pod(local, name)
            status = p.get("status") or {}
            if status.get("phase") == "Running":
                results[name] = "served"
            elif status.get("phase") == "Failed" and status.get("reason"):
                results[name] = f"refused: {status.get('message')}"
        return all(n in results for n, _, _ in cases if created[n].startswith("created"))

    await eventually(decided, timeout=120, interval=0.5, what="every pod served or refused")
    print(json.dumps({**created, **results}, indent=1))
    for name, _body, served in cases:
        if name not in results:
            continue
        assert results[name].startswith("served" if served else "refused"), (name, results)
        if not served:
            assert "not supported" in results[name] or "does not match" in results[name]
    sink = await get_pod(local, "kitchen-sink")
    hosts = local.edge_dir / "kubelet" / "pods" / sink["metadata"]["uid"] / "etc-hosts"
    assert "10.1.2.3\talias" in hosts.read_text()
    assert "sink.sub.default.svc.cluster.local" in hosts.read_text()
