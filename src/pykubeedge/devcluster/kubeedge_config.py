"""Configuration files for upstream KubeEdge's edgecore and cloudcore as local test peers.

We start from what the binary itself prints for ``--defaultconfig`` (so every key is upstream's
own, at its own defaults) and change only what a test peer on one machine needs: loopback
addresses, free ports, paths under the test's directory, the private containerd. A key that
upstream no longer has is an error, not a silently ignored setting::

    defaults = await default_config(peers.edgecore)
    doc = edgecore_config(defaults, EdgePeer(node="edge-node", workdir=d, ...))
    (d / "edgecore.yaml").write_text(yaml.safe_dump(doc))
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pykubeedge.core.errors import ControlPlaneError

DEFAULTCONFIG_TIMEOUT_S = 30.0


async def default_config(binary: Path) -> dict[str, Any]:
    """What ``<binary> --defaultconfig`` prints, parsed."""
    proc = await asyncio.create_subprocess_exec(
        str(binary), "--defaultconfig", stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        async with asyncio.timeout(DEFAULTCONFIG_TIMEOUT_S):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ControlPlaneError(f"{binary} --defaultconfig did not answer in "
                                f"{DEFAULTCONFIG_TIMEOUT_S:g}s") from None
    if proc.returncode != 0:
        raise ControlPlaneError(f"{binary} --defaultconfig failed: {out[-500:].decode()}")
    doc = yaml.safe_load(out)
    if not isinstance(doc, dict) or "modules" not in doc:
        raise ControlPlaneError(f"{binary} --defaultconfig printed no configuration")
    return doc


def set_key(doc: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in ``doc``; every parent must already be there (upstream's shape)."""
    *parents, last = dotted.split(".")
    node: Any = doc
    for i, key in enumerate(parents):
        if not isinstance(node, dict) or key not in node:
            raise ControlPlaneError(f"upstream's configuration has no "
                                    f"{'.'.join(parents[:i + 1])} (setting {dotted})")
        node = node[key]
    if not isinstance(node, dict):
        raise ControlPlaneError(f"upstream's configuration: {'.'.join(parents)} is not a map")
    node[last] = value


def _apply(defaults: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(yaml.safe_dump(dict(defaults)))  # a deep copy
    for dotted, value in settings.items():
        set_key(doc, dotted, value)
    return doc


@dataclass(frozen=True)
class EdgePeer:
    """An upstream edgecore joining a CloudHub on this machine."""

    node: str
    workdir: Path  # its database, certificates, kubelet root and pod logs live here
    cloudhub: str  # host:port of CloudHub's WebSocket server
    cert_server: str  # https://host:port of CloudHub's certificate server
    token: str
    runtime_endpoint: str  # unix:///.../containerd.sock
    sandbox_image: str
    read_only_port: int
    mqtt_port: int
    labels: Mapping[str, str] = field(default_factory=dict)


def edgecore_config(defaults: Mapping[str, Any], peer: EdgePeer) -> dict[str, Any]:
    """edgecore.yaml for ``peer``: its real edged on the private containerd, cgroupfs with
    no QoS cgroups (we lack the rights a kubelet's cgroup tree needs), no host iptables."""
    d = peer.workdir
    edged = "modules.edged"
    kubelet = f"{edged}.tailoredKubeletConfig"
    return _apply(defaults, {
        "database.dataSource": str(d / "edgecore.db"),
        "modules.edgeHub.websocket.server": peer.cloudhub,
        "modules.edgeHub.httpServer": peer.cert_server,
        "modules.edgeHub.token": peer.token,
        "modules.edgeHub.tlsCaFile": str(d / "ca" / "rootCA.crt"),
        "modules.edgeHub.tlsCertFile": str(d / "certs" / "server.crt"),
        "modules.edgeHub.tlsPrivateKeyFile": str(d / "certs" / "server.key"),
        # The internal broker: no mosquitto needed, and nothing else listens on its port.
        "modules.eventBus.mqttMode": 0,
        "modules.eventBus.mqttServerInternal": f"tcp://127.0.0.1:{peer.mqtt_port}",
        "modules.deviceTwin.dmiSockPath": str(d) + "/",
        f"{edged}.hostnameOverride": peer.node,
        f"{edged}.nodeIP": "127.0.0.1",
        f"{edged}.nodeLabels": dict(peer.labels),
        f"{edged}.podSandboxImage": peer.sandbox_image,
        f"{edged}.rootDirectory": str(d / "kubelet"),
        f"{kubelet}.containerRuntimeEndpoint": peer.runtime_endpoint,
        f"{kubelet}.imageServiceEndpoint": peer.runtime_endpoint,
        f"{kubelet}.cgroupDriver": "cgroupfs",
        f"{kubelet}.cgroupsPerQOS": False,
        f"{kubelet}.enforceNodeAllocatable": [],
        f"{kubelet}.makeIPTablesUtilChains": False,
        f"{kubelet}.oomScoreAdj": 0,  # -999 needs CAP_SYS_RESOURCE
        f"{kubelet}.address": "127.0.0.1",
        f"{kubelet}.readOnlyPort": peer.read_only_port,
        f"{kubelet}.podLogsDir": str(d / "pod-logs"),
        f"{kubelet}.staticPodPath": str(d / "manifests"),
        f"{kubelet}.volumePluginDir": str(d / "volume-plugins"),
    })


@dataclass(frozen=True)
class CloudPeer:
    """An upstream cloudcore serving CloudHub on loopback, against an existing cluster."""

    kubeconfig: Path
    websocket_port: int
    https_port: int
    monitor_port: int


def cloudcore_config(defaults: Mapping[str, Any], peer: CloudPeer) -> dict[str, Any]:
    """cloudcore.yaml for ``peer``: no iptables manager (it rewrites the host's NAT table),
    no unix socket, CloudHub and its certificates on 127.0.0.1."""
    hub = "modules.cloudHub"
    return _apply(defaults, {
        "kubeAPIConfig.kubeConfig": str(peer.kubeconfig),
        "commonConfig.monitorServer.bindAddress": f"127.0.0.1:{peer.monitor_port}",
        f"{hub}.advertiseAddress": ["127.0.0.1"],
        f"{hub}.websocket.address": "127.0.0.1",
        f"{hub}.websocket.port": peer.websocket_port,
        f"{hub}.https.address": "127.0.0.1",
        f"{hub}.https.port": peer.https_port,
        f"{hub}.quic.enable": False,
        f"{hub}.unixsocket.enable": False,
        "modules.cloudStream.enable": False,
        "modules.router.enable": False,
        "modules.iptablesManager.enable": False,
    })
