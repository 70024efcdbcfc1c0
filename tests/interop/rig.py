"""A control plane, a cloudcore and an edge node on this machine, where either side may be
upstream KubeEdge v1.23.1 (built from the Go module proxy, see devcluster.kubeedge).

Upstream processes run in a private mount namespace (devcluster.kubeedge_mountns): whatever
they write to /etc or /var lands in the rig's directory. An upstream edgecore drives its own
private containerd, which joins the same namespace (kubelet's volume mounts must be visible to
the runtime); our edgecore uses a containerd on the host, as in local-up::

    async with InteropRig(cloud="ours", edge="upstream", workdir=d) as rig:
        await rig.wait_node_ready()
        rig.upstream_logs  # [Path(".../edgecore.log")]
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from pykubeedge.core.errors import ControlPlaneError
from pykubeedge.devcluster import manifests
from pykubeedge.devcluster.containerd import PrivateContainerd
from pykubeedge.devcluster.kubeedge import KubeEdgeBinaries, crd_files, ensure_kubeedge
from pykubeedge.devcluster.kubeedge_config import (
    CloudPeer,
    EdgePeer,
    cloudcore_config,
    default_config,
    edgecore_config,
)
from pykubeedge.devcluster.kubeedge_mountns import PrivateMounts
from pykubeedge.devcluster.localimages import PAUSE_IMAGE, build_local_images
from pykubeedge.devcluster.process import ManagedProcess, free_port
from pykubeedge.keadm.localup import LocalUp, poll

Side = Literal["ours", "upstream"]

# What upstream's logs must never show while talking to us (issue 8's acceptance): a message
# it could not decode, one it does not handle, and an ACK it waited for in vain. One list, used
# by every interop test.
UPSTREAM_LOG_ERRORS: dict[str, re.Pattern[str]] = {
    "unmarshal error": re.compile(r"unmarshal", re.IGNORECASE),
    "not supported": re.compile(r"not supported", re.IGNORECASE),
    "syncAckMessage error": re.compile(r"syncAckMessage"),
}
# Lines upstream prints whoever its peer is: each seen with upstream's edgecore on upstream's
# cloudcore (the rig with both sides upstream), and explained by upstream's own code. Only
# these exact shapes are excused.
UPSTREAM_OWN_LINES: dict[str, re.Pattern[str]] = {
    # EdgeHub tells group meta that the cloud is connected, and at shutdown the closed module
    # channels yield empty messages; MetaManager has no case for either operation
    # (edge/pkg/metamanager/process.go, process(): the default branch).
    "connect event or shutdown at MetaManager": re.compile(
        r"metamanager not supported operation: (connect)?$"),
    # processInsert feeds every insert to the MetaServer imitator, edged's own new Node too,
    # which has no TypeMeta; an object from the API server has a creationTimestamp.
    "edged's own Node at registration": re.compile(
        r"Object 'Kind' is missing in '\{\"metadata\":\{\"name\":\"[^\"]+\","
        r"\"creationTimestamp\":null"),
    # processDelete feeds edged's own pod delete (its content is DeleteOptions) to the same
    # imitator (edge/pkg/metamanager/process.go, processDelete).
    "edged's own pod delete": re.compile(
        r"Object 'Kind' is missing in '\{\"gracePeriodSeconds\":"),
    # Upstream's synccontroller sends a delete whose content is only the object's name,
    # namespace and UID (cloud/pkg/synccontroller: an unstructured object); the Go edge
    # applies it, and its imitator complains.
    "synccontroller's bare delete": re.compile(
        r"Object 'Kind' is missing in '\{\"metadata\":\{\"name\":\"[^\"]+\","
        r"\"namespace\":\"[^\"]+\",\"uid\":\"[^\"]+\"\}\}'$"),
    # The node's ACK queue is shut down when its session ends (cloudhub node_session.go).
    "ACK queue shut down at disconnect": re.compile(
        r"syncAckMessage err: AckMessageQueue for node \S+ has shutdown"),
}
# Lines upstream's edgecore prints while its cloud is away, whoever the cloud is: excused only
# in a test that takes the cloudcore down on purpose (``InteropRig.outage``). With no
# connection, MetaManager answers a Lease query from its own database, with a list of rows
# (edge/pkg/metamanager/process.go, processQuery: requireRemoteQuery needs IsConnected), and
# a Lease update with the error text "failed to process remote: not connected"
# (processUpdate -> feedbackError); the Lease client decodes either as a LeaseResp
# (metamanager/client/lease.go, handleLeaseResp) and fails.
OUTAGE_LINES: dict[str, re.Pattern[str]] = {
    "lease query answered from the edge's database": re.compile(
        r'"Failed to ensure lease exists, will retry" err="unmarshal message to lease failed, '
        r'err: json: cannot unmarshal array into Go value of type client\.LeaseResp"'),
    "lease update refused with \"not connected\"": re.compile(
        r'"Failed to update lease" err="unmarshal message to lease failed, err: invalid '
        r"character 'i' in literal false \(expecting 'l'\)\""),
}
GETTOKEN_TIMEOUT_S = 60.0
NODE = "edge-node"
LABELS = {"disktype": "test"}


def forbidden_lines(text: str, *, outage: bool = False) -> list[tuple[str, str]]:
    """(which pattern, the line) for every line of ``text`` matching UPSTREAM_LOG_ERRORS and
    none of UPSTREAM_OWN_LINES (nor, if the cloud was down on purpose, OUTAGE_LINES)."""
    found: list[tuple[str, str]] = []
    excused = list(UPSTREAM_OWN_LINES.values())
    if outage:
        excused += OUTAGE_LINES.values()
    for line in text.splitlines():
        if any(own.search(line) for own in excused):
            continue
        for name, pattern in UPSTREAM_LOG_ERRORS.items():
            if pattern.search(line):
                found.append((name, line))
                break
    return found


@dataclass
class LogReader:
    """Reads what some log files gained since the last read (the first read: all of it)."""

    paths: list[Path]
    offsets: dict[Path, int] = field(default_factory=dict)

    def read(self) -> str:
        parts: list[str] = []
        for p in self.paths:
            if not p.exists():
                continue
            with p.open("rb") as f:
                f.seek(self.offsets.get(p, 0))
                data = f.read()
            self.offsets[p] = self.offsets.get(p, 0) + len(data)
            parts.append(data.decode(errors="replace"))
        return "".join(parts)


def _keadm() -> str:
    beside = Path(sys.executable).with_name("keadm")
    found = str(beside) if beside.exists() else shutil.which("keadm")
    if not found:
        raise ControlPlaneError("keadm not found: `pip install -e .` installs it")
    return found


class InteropRig(LocalUp):
    """LocalUp, with upstream's cloudcore and/or edgecore in place of ours."""

    def __init__(self, *, cloud: Side, edge: Side, workdir: Path,
                 bridge: str = "pkeint0", pod_subnet: str = "10.254.80.0/24") -> None:
        super().__init__(tier="full", workdir=workdir, node=NODE, node_labels=dict(LABELS),
                         demo=False, runtime="containerd", network="bridge", bridge=bridge,
                         pod_subnet=pod_subnet)
        self.cloud, self.edge = cloud, edge
        self.peers: KubeEdgeBinaries | None = None
        self.ns = PrivateMounts(workdir / "ns")
        self.cluster.install_crds = cloud == "ours"  # upstream's CRDs, for upstream's cloudcore
        self.monitor_port = free_port()
        self.read_only_port = free_port()
        self.mqtt_port = free_port()
        self._log_reader = LogReader(self.upstream_logs)
        self.outage = False  # set by a test that stops the cloudcore; reset at each log check

    # -- the whole rig ----------------------------------------------------------------------

    async def start(self) -> None:
        self.peers = await asyncio.to_thread(ensure_kubeedge)
        assert self.workdir is not None and self.cluster.workdir is not None
        self.cluster.workdir.mkdir(parents=True, exist_ok=True)
        await self.ns.start()
        await self.cluster.start()
        self.kube = self.cluster.client()
        if self.cloud == "upstream":
            await manifests.install_crds(self.kube, files=crd_files(self.peers.crds))
        await self._write_cloud_config()
        await self.start_cloudcore()
        await self._start_containerd()
        token = await poll(self._gettoken, "a join token from `keadm gettoken`",
                           GETTOKEN_TIMEOUT_S, interval=0.5)
        if self.edge == "ours":
            await self._join(token)
        else:
            await self._write_upstream_edge_config(token)
        await self.start_edgecore()
        await self.wait_node_ready()

    async def stop(self) -> None:
        """Everything LocalUp stops, then the namespace; the rig's directory last."""
        own, self._own_workdir = self._own_workdir, False
        try:
            await super().stop()
        finally:
            await self.ns.stop()
            if own and self.workdir and os.environ.get("PYKUBEEDGE_KEEP") != "1":
                shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def upstream_logs(self) -> list[Path]:
        """The logs of the upstream processes of this rig."""
        assert self.workdir is not None
        names = [n for n, side in (("cloudcore", self.cloud), ("edgecore", self.edge))
                 if side == "upstream"]
        return [self.workdir / f"{n}.log" for n in names]

    def unchecked_log(self) -> str:
        """Upstream's log lines since the last call (the first call: since the rig started)."""
        return self._log_reader.read()

    async def _gettoken(self) -> str | None:
        proc = await asyncio.create_subprocess_exec(
            _keadm(), "gettoken", "--kube-config", str(self.cluster.kubeconfig),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        if proc.returncode == 0 and out.strip():
            return out.decode().strip()
        if self.cloudcore is not None and not self.cloudcore.running:
            raise ControlPlaneError(f"cloudcore exited:\n{self.cloudcore.log_tail()}")
        return None

    # -- cloudcore --------------------------------------------------------------------------

    async def _write_cloud_config(self) -> None:
        if self.cloud == "ours":
            self._write_cloudcore_config()
            return
        assert self.peers is not None
        doc = cloudcore_config(await default_config(self.peers.cloudcore), CloudPeer(
            kubeconfig=self.cluster.kubeconfig, websocket_port=self.ws_port,
            https_port=self.https_port, monitor_port=self.monitor_port))
        self.cloudcore_config.write_text(yaml.safe_dump(doc, sort_keys=False))

    async def start_cloudcore(self) -> None:
        if self.cloud == "ours":
            await super().start_cloudcore()
            return
        assert self.workdir is not None and self.peers is not None
        self.cloudcore = ManagedProcess(
            "cloudcore (upstream)",
            self.ns.wrap([str(self.peers.cloudcore), "--config", str(self.cloudcore_config)]),
            self.workdir / "cloudcore.log")
        await self.cloudcore.start()
        await self.cloudcore.wait_port(self.ws_port, timeout=90)

    # -- containerd -------------------------------------------------------------------------

    async def _start_containerd(self) -> None:
        if self.edge == "ours":
            await super()._start_containerd()
            return
        base = Path(tempfile.mkdtemp(prefix="pke-ctd-", dir="/tmp"))
        wrapper = base / "containerd-in-ns"
        wrapper.write_text("#!/bin/sh\nexec " + " ".join(self.ns.wrap(["containerd"])) +
                           ' "$@"\n')
        wrapper.chmod(0o755)
        self.containerd = PrivateContainerd(base, network="bridge", bridge=self.bridge,
                                            pod_subnet=self.pod_subnet,
                                            containerd=str(wrapper))
        await self.containerd.start()
        archive = base / "images.tar"
        await build_local_images(archive)
        await self.containerd.import_images(archive)

    # -- edgecore ---------------------------------------------------------------------------

    @property
    def upstream_edge_dir(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "go-edge"

    @property
    def edge_db(self) -> Path:
        return self.upstream_edge_dir / "edgecore.db" if self.edge == "upstream" \
            else super().edge_db

    async def _write_upstream_edge_config(self, token: str) -> None:
        assert self.peers is not None and self.containerd is not None
        d = self.upstream_edge_dir
        d.mkdir(parents=True, exist_ok=True)
        doc = edgecore_config(await default_config(self.peers.edgecore), EdgePeer(
            node=self.node, workdir=d, cloudhub=f"127.0.0.1:{self.ws_port}",
            cert_server=f"https://127.0.0.1:{self.https_port}", token=token,
            runtime_endpoint=self.containerd.endpoint, sandbox_image=PAUSE_IMAGE,
            read_only_port=self.read_only_port, mqtt_port=self.mqtt_port,
            labels=self.node_labels))
        self.edgecore_config.parent.mkdir(parents=True, exist_ok=True)
        self.edgecore_config.write_text(yaml.safe_dump(doc, sort_keys=False))

    @property
    def edgecore_config(self) -> Path:
        if self.edge == "upstream":
            return self.upstream_edge_dir / "edgecore.yaml"
        return super().edgecore_config

    async def start_edgecore(self) -> None:
        if self.edge == "ours":
            await super().start_edgecore()
            return
        assert self.workdir is not None and self.peers is not None
        self.edgecore = ManagedProcess(
            "edgecore (upstream)",
            self.ns.wrap([str(self.peers.edgecore), "--config", str(self.edgecore_config)]),
            self.workdir / "edgecore.log",
            # its check for a running kubelet process is for real hosts, not a shared CI box
            env={**os.environ, "CHECK_EDGECORE_ENVIRONMENT": "false"})
        await self.edgecore.start()
