"""The ``edgecore`` command: EdgeHub, MetaManager (+ MetaServer), Edged, DeviceTwin,
EventBus and ServiceBus in one process, wired from edgecore.yaml.

    edgecore --config /etc/kubeedge/config/edgecore.yaml
    edgecore --defaultconfig

The container runtime is ``modules.edged.tailoredKubeletConfig.containerRuntimeEndpoint``: a
CRI socket (containerd; default ``unix:///run/containerd/containerd.sock``), or ``fake://`` to
run pods in memory (simulation, scale tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from pykubeedge import __version__
from pykubeedge.beehive import Hive, Module
from pykubeedge.beehive.runner import run as run_main
from pykubeedge.core.config import DEFAULT_EDGECORE_CONFIG, EdgeCoreConfig, load_edgecore_config
from pykubeedge.core.errors import ConfigError, PyKubeEdgeError
from pykubeedge.edge.dbm import Database
from pykubeedge.edge.devicetwin.dao import DeviceDAO
from pykubeedge.edge.devicetwin.devicetwin import DeviceTwin
from pykubeedge.edge.edged.cri import DEFAULT_ENDPOINT, CRIRuntime
from pykubeedge.edge.edged.edged import Edged
from pykubeedge.edge.edged.fake import FakeRuntime
from pykubeedge.edge.edged.node import DEFAULT_ROOT_DIR, HostInfo, primary_ipv4, probe_host
from pykubeedge.edge.edged.runtime import Runtime
from pykubeedge.edge.edged.server import DEFAULT_ADDRESS, DEFAULT_READ_ONLY_PORT, KubeletServer
from pykubeedge.edge.edgehub.certificate import CertRotator, bootstrap
from pykubeedge.edge.edgehub.hub import EdgeHub, EdgeHubSettings
from pykubeedge.edge.edgehub.outbox import Outbox
from pykubeedge.edge.edgestream import EdgeStream, EdgeStreamSettings
from pykubeedge.edge.eventbus.dao import SubTopicsDAO
from pykubeedge.edge.eventbus.eventbus import EventBus, EventBusSettings
from pykubeedge.edge.metamanager.dao import MetaStore
from pykubeedge.edge.metamanager.manager import MetaManager
from pykubeedge.edge.metamanager.metaserver import MetaServer
from pykubeedge.edge.servicebus.dao import TargetURLsDAO
from pykubeedge.edge.servicebus.servicebus import ServiceBus, ServiceBusSettings

log = logging.getLogger("pykubeedge.edgecore")
FAKE_RUNTIME = "fake://"

app = typer.Typer(add_completion=False, help="pykubeedge edgecore (edge side of KubeEdge).")


def _kubelet_config(cfg: EdgeCoreConfig) -> dict[str, Any]:
    extra: Any = cfg.modules.edged.model_extra or {}
    tailored = extra.get("tailoredKubeletConfig") or {}
    return tailored if isinstance(tailored, dict) else {}


def runtime_endpoint(cfg: EdgeCoreConfig) -> str:
    return str(_kubelet_config(cfg).get("containerRuntimeEndpoint") or DEFAULT_ENDPOINT)


def make_runtime(cfg: EdgeCoreConfig) -> Runtime:
    """The Runtime for ``containerRuntimeEndpoint``: ``fake://`` or a CRI socket (containerd).

    (mypy --strict checks here that both CRIRuntime and FakeRuntime implement Runtime.)"""
    endpoint = runtime_endpoint(cfg)
    if endpoint.startswith(FAKE_RUNTIME):
        log.warning("containers run in the in-memory fake runtime (%s): pods report Running "
                    "but nothing executes", FAKE_RUNTIME)
        fake = FakeRuntime()
        fake_logs = _kubelet_config(cfg).get("podLogsDir")
        if fake_logs:  # only where asked: a simulated node writes no files by default
            fake.pod_logs_dir = Path(fake_logs)
        return fake
    root = Path(cfg.modules.edged.tailoredKubeletFlag.rootDirectory)
    logs = _kubelet_config(cfg).get("podLogsDir") or "/var/log/pods"
    return CRIRuntime(endpoint, pods_dir=root / "pods", pod_logs_dir=logs)


def _seconds(value: Any, default: float) -> float:
    """A kubelet config duration (``"20s"``, ``"1m"``, or a number of seconds)."""
    text = str(value or "").strip()
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for unit in ("ms", "s", "m", "h"):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
            return float(text[: -len(unit)]) * units[unit]
    if text.replace(".", "", 1).isdigit():
        return float(text)
    if text:
        raise ConfigError(f"tailoredKubeletConfig: {value!r} is not a duration (e.g. 20s)")
    return default


def edged_options(cfg: EdgeCoreConfig, runtime: Runtime) -> dict[str, Any]:
    """Edged's kubelet settings from edgecore.yaml (``tailoredKubeletConfig`` keys)."""
    kubelet = _kubelet_config(cfg)
    fake = isinstance(runtime, FakeRuntime)
    root = Path(cfg.modules.edged.tailoredKubeletFlag.rootDirectory)
    dns = kubelet.get("clusterDNS") or []
    return {
        "root_dir": str(root),
        "pods_dir": None if fake else str(root / "pods"),
        "pod_logs_dir": None if fake else str(kubelet.get("podLogsDir") or "/var/log/pods"),
        "report_event": cfg.modules.edged.reportEvent,
        "static_pod_path": str(kubelet.get("staticPodPath", "/etc/kubeedge/manifests") or "")
        or None,
        "cluster_dns": tuple(str(d) for d in dns) if isinstance(dns, list) else (),
        "cluster_domain": str(kubelet.get("clusterDomain") or "cluster.local"),
        "file_check_frequency": _seconds(kubelet.get("fileCheckFrequency"), 20.0),
        "image_gc_high": int(kubelet.get("imageGCHighThresholdPercent") or 85),
        "image_gc_low": int(kubelet.get("imageGCLowThresholdPercent") or 80),
    }

def kubelet_server_address(cfg: EdgeCoreConfig) -> tuple[str, int]:
    """Edged's kubelet server: ``tailoredKubeletConfig.address``:``readOnlyPort`` (0: off)."""
    kubelet = _kubelet_config(cfg)
    try:
        port = int(kubelet.get("readOnlyPort", DEFAULT_READ_ONLY_PORT))
    except (TypeError, ValueError):
        raise ConfigError("modules.edged.tailoredKubeletConfig.readOnlyPort is not a port "
                          "number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"modules.edged.tailoredKubeletConfig.readOnlyPort {port} is out "
                          "of range")
    return str(kubelet.get("address") or DEFAULT_ADDRESS), port


def host_probe(cfg: EdgeCoreConfig) -> Callable[[], Awaitable[HostInfo]]:
    """The host facts, with ``tailoredKubeletFlag.nodeIP`` as the InternalIP when set (the
    address the API server reaches this node's kubelet endpoint at: docs/streams.md)."""
    flags = cfg.modules.edged.tailoredKubeletFlag
    root = flags.rootDirectory or DEFAULT_ROOT_DIR

    async def probe() -> HostInfo:
        host = await asyncio.to_thread(probe_host, root)
        return dataclasses.replace(host, internal_ip=flags.nodeIP) if flags.nodeIP else host

    return probe


async def run_edgecore(cfg: EdgeCoreConfig, stop: asyncio.Event, *,
                       runtime: Runtime | None = None,
                       ready: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or a module dies for good)."""
    node = cfg.node_name
    if not node:
        raise ConfigError("modules.edged.tailoredKubeletFlag.hostnameOverride (the node name) "
                          "is empty")
    await bootstrap(cfg)  # a certificate for system:node:<node>, unless we have one
    runtime = runtime or make_runtime(cfg)
    db = cfg.database.dataSource
    meta_cfg = cfg.modules.metaManager
    async with contextlib.AsyncExitStack() as stack:
        close = getattr(runtime, "close", None)
        if close is not None:
            stack.push_async_callback(close)
        database = await Database.open(db)  # the one owner of edgecore.db; modules add DAOs
        stack.push_async_callback(database.close)
        store = await MetaStore.open(database)
        outbox = await Outbox.open(database)
        metaserver = None
        if meta_cfg.metaServer.enable:
            host, _, port = meta_cfg.metaServer.server.rpartition(":")
            metaserver = MetaServer(store, host=host or "127.0.0.1", port=int(port))
        hub = EdgeHub(EdgeHubSettings.from_config(cfg), outbox)
        address, kubelet_port = kubelet_server_address(cfg)
        edged = Edged(node_name=node, runtime=runtime,
                      node_labels=cfg.modules.edged.tailoredKubeletFlag.nodeLabels,
                      kubelet_port=kubelet_port or DEFAULT_READ_ONLY_PORT,
                      host_probe=host_probe(cfg), **edged_options(cfg, runtime))
        modules: list[Module] = [
            hub,
            MetaManager(store, remote_query_timeout=meta_cfg.remoteQueryTimeout,
                        metaserver=metaserver),
            edged,
        ]
        if cfg.modules.deviceTwin.enable:
            modules.append(DeviceTwin(node, await DeviceDAO.open(database),
                                      dmi_sock_path=cfg.modules.deviceTwin.dmiSockPath))
        if cfg.modules.eventBus.enable:
            modules.append(EventBus(EventBusSettings.from_config(cfg),
                                    await SubTopicsDAO.open(database)))
        if cfg.modules.serviceBus.enable:
            modules.append(ServiceBus(ServiceBusSettings.from_config(cfg),
                                      await TargetURLsDAO.open(database)))
        if kubelet_port:
            await stack.enter_async_context(KubeletServer(
                runtime, node_name=node, host=address, port=kubelet_port,
                pods=lambda: [w.pod for w in edged.workers.values()],
                root_dir=cfg.modules.edged.tailoredKubeletFlag.rootDirectory or "/"))
        if cfg.modules.edgeStream.enable:
            if not kubelet_port:
                raise ConfigError("modules.edgeStream needs Edged's kubelet server: "
                                  "tailoredKubeletConfig.readOnlyPort is 0")
            node_ip = cfg.modules.edged.tailoredKubeletFlag.nodeIP or primary_ipv4()
            modules.append(EdgeStream(EdgeStreamSettings.from_config(
                cfg, node_ip=node_ip, local_server=f"{address}:{kubelet_port}")))
        hive = Hive(on_module_stopped=lambda name, err: stop.set())
        for module in modules:
            hive.add_module(module)
        await stack.enter_async_context(hive)
        background = await stack.enter_async_context(asyncio.TaskGroup())
        if cfg.modules.edgeHub.rotateCertificates:
            rotator = CertRotator(cfg, on_rotated=hub.reconnect)
            rotation = background.create_task(rotator.run(), name="cert-rotation")
            stack.callback(rotation.cancel)  # runs first on exit; the task group waits for it
        log.info("edgecore %s for node %s: CloudHub %s, database %s%s", __version__, node,
                 cfg.modules.edgeHub.websocket.server, db,
                 f", MetaServer {metaserver.url}" if metaserver else "")
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("edgecore stopping")


async def _main(cfg: EdgeCoreConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_edgecore(cfg, stop)


@app.command()
def run(
    config: Annotated[Path, typer.Option("--config", help="edgecore.yaml")] =
        DEFAULT_EDGECORE_CONFIG,
    defaultconfig: Annotated[bool, typer.Option(
        "--defaultconfig", help="print the default config and exit")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logs")] = False,
) -> None:
    if defaultconfig:
        typer.echo(yaml.safe_dump(EdgeCoreConfig().model_dump(), sort_keys=False))
        return
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run_main(_main(load_edgecore_config(config)))
    except PyKubeEdgeError as exc:
        typer.echo(f"edgecore: error: {exc}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.echo(f"edgecore: error: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None


def main() -> None:
    sys.exit(app())
