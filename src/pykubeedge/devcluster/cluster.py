"""Run a real Kubernetes control plane on 127.0.0.1 (envtest style).

Tier ``minimal`` is etcd + kube-apiserver; ``full`` adds kube-scheduler and
kube-controller-manager. Ports are free ports on loopback; the CA, serving certificate and
service-account keys are made fresh; an admin token and a kubeconfig are written into the work
directory. Children die with us (PR_SET_PDEATHSIG), so a killed test run leaves no orphans.

    async with DevCluster(tier="minimal") as cluster:
        print(cluster.kubeconfig)          # kubectl --kubeconfig ... get ns
        async with cluster.client() as kube:
            await kube.list(NAMESPACES)
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pykubeedge.core.errors import ControlPlaneError, KubeError
from pykubeedge.devcluster import manifests
from pykubeedge.devcluster.binaries import Binaries, Tier, abort_builds, ensure_binaries
from pykubeedge.devcluster.kubeletaccess import kubelet_facing_args, kubelet_facing_pki
from pykubeedge.devcluster.process import ManagedProcess, free_port
from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.config import load_kubeconfig
from pykubeedge.transport import certs

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0
# Every controller kube-controller-manager runs by default (StatefulSets, DaemonSets, Jobs,
# CronJobs, endpoints, disruption budgets, CSR signing...), as a real cluster has them.
CONTROLLERS = "*"


@dataclass
class DevCluster:
    tier: Tier = "minimal"
    workdir: Path | None = None
    bin_dir: Path | None = None
    install_crds: bool = True
    extra_args: dict[str, list[str]] = field(default_factory=dict)
    progress: Callable[[str], None] = lambda _msg: None

    def __post_init__(self) -> None:
        self._own_workdir = self.workdir is None
        self.workdir = Path(self.workdir or tempfile.mkdtemp(prefix="pykubeedge-devcluster-"))
        self.token = secrets.token_hex(16)
        self.etcd_port = free_port()
        self.apiserver_port = free_port()
        self.procs: dict[str, ManagedProcess] = {}
        self.binaries: Binaries | None = None

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "kubeconfig"

    def client(self) -> KubeClient:
        return KubeClient(load_kubeconfig(self.kubeconfig))

    def pki_file(self, name: str) -> Path:
        """A file of the cluster's PKI: ``ca.crt``, ``kubelet-client.crt``..."""
        assert self.workdir is not None
        return self.workdir / name

    async def __aenter__(self) -> DevCluster:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- start / stop ---------------------------------------------------------------------

    async def start(self) -> None:
        started = time.monotonic()
        try:
            self.binaries = await asyncio.to_thread(
                ensure_binaries, self.tier, bin_dir=self.bin_dir, log=self.progress)
        except asyncio.CancelledError:
            abort_builds()  # else the thread (and `go`) would run on after Ctrl-C
            raise
        self._write_pki()
        self._write_kubeconfig()
        self.progress("starting etcd")
        await self._spawn("etcd", self._etcd_argv())
        await self.procs["etcd"].wait_port(self.etcd_port)
        self.progress("starting kube-apiserver")
        await self._spawn("kube-apiserver", self._apiserver_argv())
        await self.wait_ready()
        if self.tier == "full":
            self.progress("starting kube-scheduler and kube-controller-manager")
            await self._spawn("kube-scheduler", self._scheduler_argv())
            await self._spawn("kube-controller-manager", self._controller_manager_argv())
        if self.install_crds:
            self.progress("installing pykubeedge CRDs")
            async with self.client() as kube:
                await manifests.install_crds(kube)
        log.info("control plane (%s, Kubernetes %s) ready in %.1fs at %s", self.tier,
                 self.binaries.kube_version, time.monotonic() - started, self.server)

    async def stop(self) -> None:
        # Reverse start order: controllers, then the apiserver, then its storage.
        for name in ("kube-controller-manager", "kube-scheduler", "kube-apiserver", "etcd"):
            proc = self.procs.get(name)
            if proc:
                await proc.stop()
        if self._own_workdir and self.workdir and os.environ.get("PYKUBEEDGE_KEEP") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)

    async def restart_apiserver(self) -> None:
        """Stop and start kube-apiserver on the same port and etcd (for resilience tests)."""
        await self.procs["kube-apiserver"].stop()
        await self._spawn("kube-apiserver", self._apiserver_argv())
        await self.wait_ready()

    async def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        async with self.client() as kube:
            while time.monotonic() < deadline:
                api = self.procs["kube-apiserver"]
                if not api.running:
                    raise ControlPlaneError(
                        f"kube-apiserver exited ({api.process and api.process.returncode}):\n"
                        f"{api.log_tail()}")
                try:
                    await kube.request("GET", "/readyz", timeout=5)
                    return
                except KubeError as exc:
                    last = str(exc)
                await asyncio.sleep(0.2)
        raise ControlPlaneError(f"kube-apiserver not ready after {timeout:.0f}s: {last}\n"
                                f"{self.procs['kube-apiserver'].log_tail()}")

    async def _spawn(self, name: str, argv: list[str]) -> None:
        assert self.workdir is not None
        proc = ManagedProcess(name, argv, self.workdir / f"{name}.log")
        await proc.start()
        self.procs[name] = proc

    # -- files ------------------------------------------------------------------------------

    def _path(self, name: str) -> Path:
        assert self.workdir is not None
        return self.workdir / name

    def _write_pki(self) -> None:
        ca = certs.new_ca("pykubeedge-devcluster-ca")
        serving = certs.issue(ca, "kube-apiserver", ips=["127.0.0.1"],
                              dns=["localhost", "kubernetes", "kubernetes.default",
                                   "kubernetes.default.svc"], server=True)
        sa = certs.new_key()
        files = {
            "ca.crt": ca.cert_pem(), "ca.key": ca.key_pem(),
            "apiserver.crt": serving.cert_pem(), "apiserver.key": serving.key_pem(),
            "sa.key": certs.key_pem(sa), "sa.pub": certs.public_key_pem(sa),
            "tokens.csv": f'{self.token},admin,admin,"system:masters"\n'.encode(),
            **kubelet_facing_pki(ca),  # kubelets (CloudStream) and aggregated APIs
        }
        for name, data in files.items():
            p = self._path(name)
            p.write_bytes(data)
            p.chmod(0o600)

    def _write_kubeconfig(self) -> None:
        ca = base64.b64encode(self._path("ca.crt").read_bytes()).decode()
        doc: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Config", "current-context": "pykubeedge",
            "clusters": [{"name": "pykubeedge",
                          "cluster": {"server": self.server, "certificate-authority-data": ca}}],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "pykubeedge",
                          "context": {"cluster": "pykubeedge", "user": "admin"}}],
        }
        self.kubeconfig.write_text(yaml.safe_dump(doc, sort_keys=False))
        self.kubeconfig.chmod(0o600)

    # -- command lines ----------------------------------------------------------------------

    def _extra(self, name: str) -> list[str]:
        return list(self.extra_args.get(name, []))

    def _etcd_argv(self) -> list[str]:
        assert self.binaries is not None
        url = f"http://127.0.0.1:{self.etcd_port}"
        return [str(self.binaries.etcd), "--data-dir", str(self._path("etcd-data")),
                "--listen-client-urls", url, "--advertise-client-urls", url,
                "--listen-peer-urls", f"http://127.0.0.1:{free_port()}",
                "--unsafe-no-fsync", "--log-level", "warn", *self._extra("etcd")]

    def _apiserver_argv(self) -> list[str]:
        assert self.binaries is not None
        p = self._path
        argv = [
            str(self.binaries.apiserver),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            # Loopback may not be advertised through the kubernetes Service endpoints.
            "--endpoint-reconciler-type=none",
            f"--secure-port={self.apiserver_port}",
            f"--tls-cert-file={p('apiserver.crt')}", f"--tls-private-key-file={p('apiserver.key')}",
            f"--client-ca-file={p('ca.crt')}",
            "--service-cluster-ip-range=10.0.0.0/24", "--allow-privileged=true",
            "--authorization-mode=Node,RBAC",
            f"--service-account-issuer={self.server}/",
            f"--service-account-key-file={p('sa.pub')}",
            f"--service-account-signing-key-file={p('sa.key')}",
            f"--token-auth-file={p('tokens.csv')}",
            "--enable-admission-plugins=NodeRestriction",
            "--profiling=false",
            *kubelet_facing_args(self._path),
        ]
        if self.tier == "minimal":
            # No controller-manager mints service-account tokens in this tier.
            argv.append("--disable-admission-plugins=ServiceAccount")
        return argv + self._extra("kube-apiserver")

    def _scheduler_argv(self) -> list[str]:
        assert self.binaries is not None and self.binaries.scheduler is not None
        return [str(self.binaries.scheduler), f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false", "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}", *self._extra("kube-scheduler")]

    def _controller_manager_argv(self) -> list[str]:
        assert self.binaries is not None and self.binaries.controller_manager is not None
        return [str(self.binaries.controller_manager), f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false", "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}", f"--controllers={CONTROLLERS}",
                f"--service-account-private-key-file={self._path('sa.key')}",
                f"--root-ca-file={self._path('ca.crt')}",
                # the CSR signer (csrsigning) signs with the cluster CA
                f"--cluster-signing-cert-file={self._path('ca.crt')}",
                f"--cluster-signing-key-file={self._path('ca.key')}",
                "--use-service-account-credentials=false",
                *self._extra("kube-controller-manager")]
