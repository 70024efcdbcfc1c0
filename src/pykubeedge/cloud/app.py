"""The ``cloudcore`` command: CloudHub (WebSocket + HTTPS certificate service), EdgeController,
DeviceController, SyncController, CloudStream and Router in one process, wired from cloudcore.yaml.

    cloudcore --config /etc/kubeedge/config/cloudcore.yaml
    cloudcore --kubeconfig ~/.kube/config         # defaults for everything else
    cloudcore --defaultconfig                     # print the defaults as YAML
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from pykubeedge import __version__
from pykubeedge.beehive import Hive
from pykubeedge.beehive.runner import run as run_main
from pykubeedge.cloud.cloudhub.certs import TokenManager, ensure_ca_and_server_cert
from pykubeedge.cloud.cloudhub.httpserver import CertHTTPServer
from pykubeedge.cloud.cloudhub.hub import CloudHub
from pykubeedge.cloud.cloudstream import CloudStream, Fallback, tls_contexts
from pykubeedge.cloud.devicecontroller.controller import DeviceController
from pykubeedge.cloud.edgecontroller.controller import EdgeController
from pykubeedge.cloud.router.router import Router
from pykubeedge.cloud.synccontroller.controller import SyncController
from pykubeedge.core.config import CloudCoreConfig, load_cloudcore_config
from pykubeedge.core.errors import ConfigError, NotFound, PyKubeEdgeError
from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.config import load_kubeconfig
from pykubeedge.kube.resources import CRDS

log = logging.getLogger("pykubeedge.cloudcore")
REQUIRED_CRDS = ("objectsyncs.reliablesyncs.kubeedge.io",
                 "clusterobjectsyncs.reliablesyncs.kubeedge.io")
DEVICE_CRDS = ("devices.devices.kubeedge.io", "devicemodels.devices.kubeedge.io",
               "devicestatuses.devices.kubeedge.io")
RULE_CRDS = ("rules.rules.kubeedge.io", "ruleendpoints.rules.kubeedge.io")

app = typer.Typer(add_completion=False, help="pykubeedge cloudcore (cloud side of KubeEdge).")


async def check_api_server(kube: KubeClient) -> str:
    """The API server's gitVersion, after checking the CRDs cloudcore needs are installed."""
    info = await kube.request("GET", "/version")
    for name in REQUIRED_CRDS:
        try:
            await kube.get(CRDS, name)
        except NotFound:
            raise ConfigError(f"CRD {name} is not installed (apply deploy/crds or start the "
                              "control plane with `keadm local-up`)") from None
    return str(info.get("gitVersion", "unknown"))


async def missing_crds(kube: KubeClient, names: tuple[str, ...]) -> list[str]:
    missing = []
    for name in names:
        try:
            await kube.get(CRDS, name)
        except NotFound:
            missing.append(name)
    return missing


async def run_cloudcore(cfg: CloudCoreConfig, stop: asyncio.Event,
                        ready: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or a module dies for good)."""
    hub_cfg = cfg.modules.cloudHub
    async with KubeClient(load_kubeconfig(cfg.kubeAPIConfig.kubeConfig or None)) as kube:
        version = await check_api_server(kube)
        log.info("cloudcore %s, Kubernetes API server %s at %s", __version__, version,
                 kube.config.server)
        pki = await ensure_ca_and_server_cert(kube, hub_cfg)
        tokens = TokenManager(kube, pki, hub_cfg.tokenRefreshDuration)
        await tokens.refresh()  # so `keadm gettoken` works as soon as we are up
        sync = SyncController(kube)
        address = hub_cfg.advertiseAddress[0] if hub_cfg.advertiseAddress else "127.0.0.1"
        controller = EdgeController(kube, sync, cloudcore_address=address)
        hub = CloudHub(pki.server_ssl_context(require_client_cert=True),
                       host=hub_cfg.websocket.address, port=hub_cfg.websocket.port,
                       keepalive_interval=hub_cfg.keepaliveInterval, node_limit=hub_cfg.nodeLimit,
                       write_timeout=hub_cfg.writeTimeout, ack_listener=sync.on_ack,
                       cluster_ca=kube.config.ca_data or b"")
        failed: list[str] = []

        def module_stopped(name: str, err: BaseException | None) -> None:
            failed.append(f"{name}: {err}" if err else f"{name} stopped")
            stop.set()

        hive = Hive(on_module_stopped=module_stopped)
        for module in (sync, controller, hub):
            hive.add_module(module)
        dc_cfg = cfg.modules.deviceController
        if dc_cfg.enable:
            missing = await missing_crds(kube, DEVICE_CRDS)
            if missing:
                log.error("DeviceController is not started: CRD(s) %s not installed",
                          ", ".join(missing))
            else:
                hive.add_module(DeviceController(
                    kube, sync, status_workers=dc_cfg.load.updateDeviceStatusWorkers,
                    max_waiting=dc_cfg.buffer.updateDeviceTwins
                    + dc_cfg.buffer.updateDeviceStatus))
        router_cfg = cfg.modules.router
        if router_cfg.enable:
            missing = await missing_crds(kube, RULE_CRDS)
            if missing:
                log.error("Router is not started: CRD(s) %s not installed", ", ".join(missing))
            else:
                hive.add_module(Router(kube, address=router_cfg.address, port=router_cfg.port,
                                       rest_timeout=router_cfg.restTimeout))
        stream_cfg = cfg.modules.cloudStream
        if stream_cfg.enable:
            fallback = Fallback(pki.ca.cert_pem(), pki.server.cert_pem(), pki.server.key_pem(),
                                kube.config.ca_data or b"")
            tls = await asyncio.to_thread(tls_contexts, stream_cfg, fallback)
            hive.add_module(CloudStream(kube, stream_cfg, tls, node_limit=hub_cfg.nodeLimit))
        async with CertHTTPServer(pki, hub_cfg), hive:
            refusal = ""
            async with asyncio.TaskGroup() as background:
                refresher = background.create_task(tokens.run(), name="token-refresh")
                try:
                    await _first(hub.ready.wait(), stop.wait())
                    if not hub.ready.is_set():
                        refusal = "cloudcore could not start: " + "; ".join(failed)
                    else:
                        log.info("cloudcore is up: CloudHub wss on %s:%d, certificates on "
                                 "https %s:%d", hub.host, hub.port, hub_cfg.https.address,
                                 hub_cfg.https.port)
                        if ready is not None:
                            ready.set()
                        await stop.wait()
                        if failed:
                            refusal = "cloudcore stopped: " + "; ".join(failed)
                        log.info("cloudcore stopping")
                finally:
                    refresher.cancel()  # the task group waits for it
            if refusal:  # raised outside the task group: one error, not an ExceptionGroup
                raise ConfigError(refusal)


async def _first(*aws: Any) -> None:
    """Wait until the first of ``aws`` finishes; cancel the others and wait for them."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def setup_logging(verbose: bool) -> None:
    verbose = verbose or os.environ.get("PYKUBEEDGE_DEBUG") == "1"
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


async def _main(cfg: CloudCoreConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_cloudcore(cfg, stop)


@app.command()
def run(
    config: Annotated[Path | None, typer.Option("--config", help="cloudcore.yaml")] = None,
    kubeconfig: Annotated[str | None, typer.Option(
        "--kubeconfig", help="overrides kubeAPIConfig.kubeConfig")] = None,
    defaultconfig: Annotated[bool, typer.Option(
        "--defaultconfig", help="print the default config and exit")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logs")] = False,
) -> None:
    if defaultconfig:
        typer.echo(yaml.safe_dump(CloudCoreConfig().model_dump(), sort_keys=False))
        return
    setup_logging(verbose)
    try:
        cfg = load_cloudcore_config(config)
        if kubeconfig:
            cfg.kubeAPIConfig.kubeConfig = kubeconfig
        run_main(_main(cfg))
    except PyKubeEdgeError as exc:
        typer.echo(f"cloudcore: error: {exc}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:  # a port in use, typically
        typer.echo(f"cloudcore: error: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None


def main() -> None:
    sys.exit(app())
