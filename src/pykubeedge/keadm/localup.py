"""The whole system on one machine: a real control plane, cloudcore, one edge node joined with
a token (its EventBus on an internal mosquitto), and a demo workload and device on it.

    async with LocalUp(workdir=Path("/tmp/pke")) as up:
        print(up.cluster.kubeconfig, up.node)
        await up.restart_cloudcore()

Every part runs as a real process (cloudcore and edgecore are started from this Python), logs
go to ``<workdir>/<name>.log``, and everything stops with the context (or when we are killed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pykubeedge.cloud.cloudhub.certs import read_token
from pykubeedge.core.config import CloudCoreConfig, EdgeCoreConfig
from pykubeedge.core.errors import ControlPlaneError, KubeError
from pykubeedge.devcluster.binaries import Tier
from pykubeedge.devcluster.cluster import DevCluster
from pykubeedge.devcluster.containerd import PrivateContainerd
from pykubeedge.devcluster.kubeletaccess import METRICS_CLIENT
from pykubeedge.devcluster.localimages import build_local_images
from pykubeedge.devcluster.metricsserver import MetricsServer, ensure_metrics_server
from pykubeedge.devcluster.process import ManagedProcess, free_port
from pykubeedge.edge.edged.volumemanager import unmount_under
from pykubeedge.edge.edgehub.certificate import bootstrap
from pykubeedge.edge.eventbus.mqtt import parse_broker_url
from pykubeedge.keadm.join import edgecore_config_for_join
from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.resources import (
    CONFIGMAPS,
    DEPLOYMENTS,
    DEVICEMODELS,
    DEVICES,
    DEVICESTATUSES,
    NODES,
    PODS,
)

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0
DEMO_LABELS = {"app": "pykubeedge-demo"}
DEMO_DEVICE = "demo-thermometer"


def _node_ready(node: dict[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


async def poll(check: Callable[[], Any], what: str, timeout: float = READY_TIMEOUT_S,
               interval: float = 0.2) -> Any:
    """Await ``check()`` until it returns something truthy; bounded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: object = None
    while loop.time() < deadline:
        try:
            result = await check()
            if result:
                return result
        except KubeError as exc:
            last = exc
        await asyncio.sleep(interval)
    raise ControlPlaneError(f"{what} not reached in {timeout:.0f}s" + (f": {last}" if last else ""))


@dataclass
class LocalUp:
    tier: Tier = "full"
    workdir: Path | None = None
    bin_dir: Path | None = None
    node: str = "edge-node"
    node_labels: dict[str, str] = field(default_factory=lambda: {"disktype": "test"})
    demo: bool = True
    # "containerd": a private containerd (CRI) runs the pods for real; "fake": in memory.
    runtime: str = "containerd"
    network: str = "bridge"  # containerd's pod network: "bridge" (own IPs) or "loopback"
    bridge: str = "pke0"
    pod_subnet: str = "10.88.0.0/16"
    ws_port: int = 0  # 0: a free port (10000 is KubeEdge's default)
    https_port: int = 0
    metaserver_port: int = 0
    # EventBus: with mqtt_url, that (external) broker; else edgecore's internal mosquitto on
    # mqtt_port (0: a free port; `keadm local-up` uses KubeEdge's 1884).
    mqtt_url: str = ""
    mqtt_port: int = 0
    # Streams (kubectl logs/exec/port-forward/top): the node's own loopback address is its
    # kubelet endpoint, CloudStream listens there (docs/streams.md). 0 ports: free ones.
    node_ip: str = "127.0.0.2"
    tunnel_port: int = 0
    stream_port: int = 0
    kubelet_port: int = 0
    metrics_server: bool = True  # full tier only: `kubectl top`
    # Rules (docs/router.md): cloudcore's Router REST listener and edgecore's ServiceBus.
    # 0: free ports (KubeEdge's are 9443 and 9060).
    router_port: int = 0
    servicebus_port: int = 0
    progress: Callable[[str], None] = lambda _msg: None

    def __post_init__(self) -> None:
        self._own_workdir = self.workdir is None
        self.workdir = Path(self.workdir or tempfile.mkdtemp(prefix="pykubeedge-local-"))
        self.ws_port = self.ws_port or free_port()
        self.https_port = self.https_port or free_port()
        self.metaserver_port = self.metaserver_port or free_port()
        self.mqtt_port = self.mqtt_port or free_port()
        self.tunnel_port = self.tunnel_port or free_port()
        self.stream_port = self.stream_port or free_port()
        self.kubelet_port = self.kubelet_port or free_port()
        self.router_port = self.router_port or free_port()
        self.servicebus_port = self.servicebus_port or free_port()
        # A node cut off from the cloud shows as NotReady after 20 s instead of 50 s: local-up
        # is for watching things happen.
        cm_args = ["--node-monitor-grace-period=20s", "--node-monitor-period=2s"]
        self.cluster = DevCluster(tier=self.tier, workdir=self.workdir / "control-plane",
                                  bin_dir=self.bin_dir, progress=self.progress,
                                  extra_args={"kube-controller-manager": cm_args})
        self.containerd: PrivateContainerd | None = None
        self.cloudcore: ManagedProcess | None = None
        self.edgecore: ManagedProcess | None = None
        self.metrics: MetricsServer | None = None
        self.kube: KubeClient | None = None
        self.demo_mapper: ManagedProcess | None = None  # the virtual mapper (DMI)
        self.mapper_http_port = 0

    @property
    def edge_dir(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "edge"

    @property
    def edge_db(self) -> Path:
        return self.edge_dir / "edgecore.db"

    @property
    def static_pod_dir(self) -> Path:
        """The edge node's ``staticPodPath`` (a pod file put there runs with a mirror pod)."""
        return self.edge_dir / "manifests"

    @property
    def metaserver(self) -> str:
        return f"http://127.0.0.1:{self.metaserver_port}"

    @property
    def broker_url(self) -> str:
        """The MQTT broker of the edge node's EventBus."""
        return self.mqtt_url or f"tcp://127.0.0.1:{self.mqtt_port}"

    @property
    def mosquitto_sub(self) -> str:
        """The command that shows what the edge publishes."""
        address = parse_broker_url(self.broker_url)
        return f"mosquitto_sub -h {address.host} -p {address.port} -v -t '$hw/events/#'"

    async def __aenter__(self) -> LocalUp:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the whole thing --------------------------------------------------------------------

    async def start(self) -> None:
        assert self.workdir is not None
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cluster.workdir.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
        await self.cluster.start()
        self.kube = self.cluster.client()
        self.progress("starting cloudcore")
        self._write_cloudcore_config()
        await self.start_cloudcore()
        if self.runtime == "containerd":
            self.progress("starting containerd (CRI) and importing the local busybox image")
            await self._start_containerd()
        self.progress(f"joining edge node {self.node}")
        token = await poll(lambda: self._token(), "the join token in kubeedge/tokensecret")
        await self._join(token)
        self.progress("starting edgecore")
        await self.start_edgecore()
        await self.wait_node_ready()
        if self.tier == "full" and self.metrics_server:
            self.progress("starting metrics-server (kubectl top)")
            await self.start_metrics_server()
        if self.demo:
            self.progress("deploying the demo workload")
            await self.deploy_demo()
            self.progress("starting the virtual mapper and deploying the demo device")
            await self.start_demo_mapper()
            await self.deploy_device_demo()

    async def stop(self) -> None:
        """Stop everything, each step even if one before it failed."""
        steps: list[Callable[[], Awaitable[object]]] = [
            proc.stop for proc in (self.demo_mapper, self.metrics, self.edgecore, self.cloudcore)
            if proc is not None]
        if self.containerd is not None:
            steps.append(self.containerd.stop)  # removes the pods' sandboxes through CRI first
        if self.kube is not None:
            steps.append(self.kube.close)
        steps.append(self.cluster.stop)
        for step in steps:
            try:
                await step()
            except Exception:
                log.exception("stopping: %s failed; going on", getattr(step, "__qualname__", step))
        if self.containerd is not None:
            shutil.rmtree(self.containerd.base, ignore_errors=True)
        unmount_under(self.edge_dir)  # Edged's tmpfs volumes (secrets, memory emptyDirs)
        if self._own_workdir and self.workdir and os.environ.get("PYKUBEEDGE_KEEP") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- cloudcore ------------------------------------------------------------------------------

    @property
    def cloudcore_config(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "cloudcore.yaml"

    def _write_cloudcore_config(self) -> None:
        assert self.workdir is not None
        cfg = CloudCoreConfig()
        cfg.kubeAPIConfig.kubeConfig = str(self.cluster.kubeconfig)
        hub = cfg.modules.cloudHub
        hub.advertiseAddress = ["127.0.0.1"]
        pki = self.workdir / "cloud-pki"  # absent: the CA lives in Secret kubeedge/casecret
        hub.tlsCAFile, hub.tlsCAKeyFile = str(pki / "rootCA.crt"), str(pki / "rootCA.key")
        hub.tlsCertFile, hub.tlsPrivateKeyFile = str(pki / "server.crt"), str(pki / "server.key")
        hub.websocket.address, hub.websocket.port = "127.0.0.1", self.ws_port
        hub.https.address, hub.https.port = "127.0.0.1", self.https_port
        stream = cfg.modules.cloudStream
        stream.enable = True
        # absent files: the tunnel and stream servers use CloudHub's pair; the API server's
        # kubelet client certificate is checked against the cluster CA
        stream.tlsTunnelCAFile, stream.tlsTunnelCertFile, stream.tlsTunnelPrivateKeyFile = (
            hub.tlsCAFile, hub.tlsCertFile, hub.tlsPrivateKeyFile)
        stream.tlsStreamCertFile = str(pki / "stream.crt")
        stream.tlsStreamPrivateKeyFile = str(pki / "stream.key")
        stream.tlsStreamCAFile = str(self.cluster.pki_file("ca.crt"))
        stream.tunnelAddress, stream.tunnelPort = "127.0.0.1", self.tunnel_port
        stream.streamAddress, stream.streamPort = "127.0.0.1", self.stream_port
        router = cfg.modules.router
        router.enable, router.address, router.port = True, "127.0.0.1", self.router_port
        self.cloudcore_config.write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))

    async def start_cloudcore(self) -> None:
        assert self.workdir is not None
        self.cloudcore = ManagedProcess(
            "cloudcore", [sys.executable, "-m", "pykubeedge.cloud", "--config",
                          str(self.cloudcore_config)], self.workdir / "cloudcore.log")
        await self.cloudcore.start()
        await self.cloudcore.wait_port(self.ws_port, timeout=60)
        await self.cloudcore.wait_port(self.stream_port, timeout=30)
        await self.cloudcore.wait_port(self.router_port, timeout=30)  # rules are loaded

    async def stop_cloudcore(self, *, crash: bool = False) -> None:
        if self.cloudcore is not None:
            await (self.cloudcore.kill() if crash else self.cloudcore.stop())

    async def restart_cloudcore(self) -> None:
        await self.stop_cloudcore()
        await self.start_cloudcore()

    async def _token(self) -> str | None:
        assert self.kube is not None
        with contextlib.suppress(Exception):
            return await read_token(self.kube)
        if self.cloudcore is not None and not self.cloudcore.running:
            raise ControlPlaneError(f"cloudcore exited:\n{self.cloudcore.log_tail()}")
        return None

    # -- edgecore -------------------------------------------------------------------------------

    @property
    def edgecore_config(self) -> Path:
        return self.edge_dir / "config" / "edgecore.yaml"

    async def _join(self, token: str) -> None:
        """What `keadm join` does, with local paths: config, certificates, token cleared."""
        cfg: EdgeCoreConfig = edgecore_config_for_join(
            "127.0.0.1", self.ws_port, self.https_port, token, self.node, self.edge_dir,
            dict(self.node_labels))
        cfg.database.dataSource = str(self.edge_db)
        cfg.modules.metaManager.metaServer.enable = True
        cfg.modules.metaManager.metaServer.server = f"127.0.0.1:{self.metaserver_port}"
        cfg.modules.edged.tailoredKubeletFlag.rootDirectory = str(self.edge_dir / "kubelet")
        cfg.modules.deviceTwin.dmiSockPath = str(self.edge_dir) + "/"  # <edge>/dmi.sock
        bus = cfg.modules.eventBus
        if self.mqtt_url:
            bus.mqttMode, bus.mqttServerExternal = 2, self.mqtt_url
        else:
            bus.mqttMode, bus.mqttServerInternal = 0, self.broker_url
        bus.mqttSubClientID, bus.mqttPubClientID = f"{self.node}-sub", f"{self.node}-pub"
        extra = cfg.modules.edged.model_extra
        assert extra is not None
        extra["tailoredKubeletConfig"] = {
            "containerRuntimeEndpoint": self.containerd.endpoint if self.containerd else "fake://",
            "podLogsDir": str(self.edge_dir / "pod-logs"),
            "staticPodPath": str(self.static_pod_dir),
            "fileCheckFrequency": "2s",  # kubelet's 20 s: local-up is for watching
            "address": "127.0.0.1", "readOnlyPort": self.kubelet_port,
        }
        cfg.modules.edged.tailoredKubeletFlag.nodeIP = self.node_ip
        stream = cfg.modules.edgeStream
        stream.enable = True
        stream.server = f"127.0.0.1:{self.tunnel_port}"
        sb = cfg.modules.serviceBus
        sb.enable, sb.server, sb.port = True, "127.0.0.1", self.servicebus_port
        await bootstrap(cfg)
        cfg.modules.edgeHub.token = ""
        self.edgecore_config.parent.mkdir(parents=True, exist_ok=True)
        self.edgecore_config.write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))

    async def _start_containerd(self) -> None:
        # Its socket path must fit in 107 bytes: a short directory under /tmp.
        base = Path(tempfile.mkdtemp(prefix="pke-ctd-", dir="/tmp"))
        self.containerd = PrivateContainerd(base, network=self.network,  # type: ignore[arg-type]
                                            bridge=self.bridge, pod_subnet=self.pod_subnet)
        await self.containerd.start()
        archive = base / "images.tar"
        await build_local_images(archive)
        await self.containerd.import_images(archive)

    async def start_edgecore(self) -> None:
        assert self.workdir is not None
        self.edgecore = ManagedProcess(
            "edgecore", [sys.executable, "-m", "pykubeedge.edge", "--config",
                         str(self.edgecore_config)], self.workdir / "edgecore.log")
        await self.edgecore.start()
        await self.edgecore.wait_port(self.metaserver_port, timeout=60)

    async def start_metrics_server(self) -> None:
        """metrics-server as a process behind the aggregation layer (built once, cached)."""
        assert self.workdir is not None and self.kube is not None
        binary = await asyncio.to_thread(ensure_metrics_server, log=self.progress)
        self.metrics = MetricsServer(
            binary, kubeconfig=self.cluster.kubeconfig,
            client_cert=self.cluster.pki_file(f"{METRICS_CLIENT}.crt"),
            client_key=self.cluster.pki_file(f"{METRICS_CLIENT}.key"), workdir=self.workdir)
        await self.metrics.register(self.kube)
        await self.metrics.start()

    async def stop_edgecore(self, *, crash: bool = False) -> None:
        if self.edgecore is not None:
            await (self.edgecore.kill() if crash else self.edgecore.stop())

    async def wait_node_ready(self, timeout: float = READY_TIMEOUT_S) -> dict[str, Any]:
        assert self.kube is not None
        kube = self.kube

        async def ready() -> dict[str, Any] | None:
            try:
                node = await kube.get(NODES, self.node)
            except KubeError:
                node = None
            if self.edgecore is not None and not self.edgecore.running:
                raise ControlPlaneError(f"edgecore exited:\n{self.edgecore.log_tail()}")
            return node if node is not None and _node_ready(node) else None

        result: dict[str, Any] = await poll(ready, f"node {self.node} Ready", timeout)
        return result

    # -- the demo ---------------------------------------------------------------------------------

    async def deploy_demo(self, replicas: int = 2) -> list[dict[str, Any]]:
        """A ConfigMap and a Deployment scheduled onto the edge node; waits until Running."""
        assert self.kube is not None
        kube = self.kube
        await kube.create(CONFIGMAPS, {"metadata": {"name": "demo-config", "namespace": "default"},
                                       "data": {"greeting": "hello from the cloud"}})
        pod_spec: dict[str, Any] = {
            "nodeSelector": {"node-role.kubernetes.io/edge": ""},
            # -vv: httpd logs each request, so `kubectl logs` has something to show
            "containers": [{"name": "web", "image": "busybox:1.35",
                            "command": ["httpd", "-f", "-vv", "-p", "8080"],
                            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/demo"}]}],
            "volumes": [{"name": "cfg", "configMap": {"name": "demo-config"}}],
        }
        if self.tier == "full":
            await kube.create(DEPLOYMENTS, {
                "metadata": {"name": "demo", "namespace": "default"},
                "spec": {"replicas": replicas, "selector": {"matchLabels": DEMO_LABELS},
                         "template": {"metadata": {"labels": DEMO_LABELS}, "spec": pod_spec}},
            })
        else:  # no scheduler nor Deployment controller: plain pods bound to the node
            for i in range(replicas):
                await kube.create(PODS, {
                    "metadata": {"name": f"demo-{i}", "namespace": "default",
                                 "labels": DEMO_LABELS},
                    "spec": {**pod_spec, "nodeName": self.node}})
        selector = ",".join(f"{k}={v}" for k, v in DEMO_LABELS.items())

        async def running() -> list[dict[str, Any]] | None:
            pods = (await kube.list(PODS, namespace="default", label_selector=selector))["items"]
            ok = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
            return pods if len(ok) >= replicas else None

        result: list[dict[str, Any]] = await poll(running, "demo pods Running")
        return result

    # -- the demo device ---------------------------------------------------------------------

    async def deploy_device_demo(self) -> dict[str, Any]:
        """A DeviceModel and a Device bound to the edge node; waits for its DeviceStatus."""
        assert self.kube is not None
        kube = self.kube
        await kube.create(DEVICEMODELS, {
            "metadata": {"name": f"{DEMO_DEVICE}-model", "namespace": "default"},
            "spec": {"protocol": "virtual", "properties": [{
                "name": "temperature", "type": "INT", "accessMode": "ReadWrite",
                "minimum": "-40", "maximum": "125", "unit": "Celsius"}]}})
        await kube.create(DEVICES, {
            "metadata": {"name": DEMO_DEVICE, "namespace": "default"},
            "spec": {"deviceModelRef": {"name": f"{DEMO_DEVICE}-model"}, "nodeName": self.node,
                     "protocol": {"protocolName": "virtual"},
                     "properties": [{"name": "temperature", "reportToCloud": True,
                                     "collectCycle": 1000, "reportCycle": 5000,
                                     "desired": {"value": "22", "metadata": {"type": "int"}},
                                     "visitors": {"protocolName": "virtual", "configData": {
                                         "kind": "sensor", "amplitude": 2, "period": 60}}}]}})
        result: dict[str, Any] = await poll(
            lambda: kube.get(DEVICESTATUSES, DEMO_DEVICE, namespace="default"),
            f"the DeviceStatus of {DEMO_DEVICE}")
        return result

    async def start_demo_mapper(self) -> None:
        """The virtual mapper (``python -m pykubeedge.mapper virtual``) as its own process,
        registered with edgecore over DMI: it serves the demo thermometer."""
        assert self.workdir is not None
        self.mapper_http_port = free_port()
        config = self.workdir / "virtual-mapper.yaml"
        config.write_text(yaml.safe_dump({
            "grpc_server": {"socket_path": str(self.edge_dir / "virtual.sock")},
            "common": {"name": "virtual-mapper", "protocol": "virtual", "address": "127.0.0.1",
                       "edgecore_sock": str(self.edge_dir / "dmi.sock"),
                       "http_port": str(self.mapper_http_port)}}))
        self.demo_mapper = ManagedProcess(
            "virtual-mapper", [sys.executable, "-m", "pykubeedge.mapper", "virtual",
                               "--config", str(config)], self.workdir / "virtual-mapper.log")
        await self.demo_mapper.start()
        await self.demo_mapper.wait_port(self.mapper_http_port, timeout=60)
