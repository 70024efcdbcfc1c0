"""metrics-server, built from the Go module proxy and run as a local process behind the
API server's aggregation layer, so ``kubectl top node`` and ``kubectl top pod`` answer.

It is built once per machine as the control plane is (``binaries``: the same cache root,
build lock and Go process handling) into ``~/.cache/pykubeedge/metrics-server/<version>/``;
``PYKUBEEDGE_METRICS_SERVER_BIN`` names a binary to use instead.

Running it outside a cluster takes three things: its own kubeconfig (it reads the
``extension-apiserver-authentication`` ConfigMap and makes TokenReviews and
SubjectAccessReviews with it), a kubelet client certificate the nodes' kubelet endpoint
(CloudStream) accepts, and the aggregation objects: an ``ExternalName`` Service ``localhost``
(the API server dials ``https://localhost:<port>``: no kube-proxy needed) and the
``v1beta1.metrics.k8s.io`` APIService::

    binary = await asyncio.to_thread(ensure_metrics_server, log=print)
    async with MetricsServer(cluster, binary) as ms:
        await ms.wait_available()          # `kubectl top node` answers from here on
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Final

from pykubeedge.core.errors import ControlPlaneError, KubeError, NotFound
from pykubeedge.devcluster.binaries import (
    BuildAborted,
    Log,
    build_lock,
    cache_root,
    fresh_module,
    go_build,
    is_executable,
    run_go,
)
from pykubeedge.devcluster.process import ManagedProcess, free_port
from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.resources import SERVICES, Resource

log = logging.getLogger(__name__)

METRICS_SERVER_MODULE: Final = "sigs.k8s.io/metrics-server"
METRICS_SERVER_VERSION: Final = "v0.8.0"
BINARY: Final = "metrics-server"
BIN_ENV: Final = "PYKUBEEDGE_METRICS_SERVER_BIN"
NAMESPACE: Final = "kube-system"
SERVICE: Final = "metrics-server"
APISERVICE: Final = "v1beta1.metrics.k8s.io"
CLIENT_USER: Final = "system:metrics-server"
"""The identity metrics-server shows the kubelet endpoint; RBAC lets it read node metrics."""
# metrics-server's minimum resolution is 10 s; it needs two scrapes before `top` answers.
METRIC_RESOLUTION: Final = "10s"
KUBELET_REQUEST_TIMEOUT: Final = "5s"
AVAILABLE_TIMEOUT_S: Final = 90.0

APISERVICES = Resource("apiregistration.k8s.io", "v1", "apiservices", "APIService",
                       namespaced=False)
CLUSTERROLES = Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole",
                        namespaced=False)
CLUSTERROLEBINDINGS = Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings",
                               "ClusterRoleBinding", namespaced=False)


def _noop(_: str) -> None:
    pass


def ensure_metrics_server(*, log: Log = _noop) -> Path:
    """The metrics-server binary, built and cached if missing (blocking: minutes on a cold
    cache; call it in a thread)::

        >>> ensure_metrics_server()              # doctest: +SKIP
        PosixPath('/root/.cache/pykubeedge/metrics-server/v0.8.0/metrics-server')
    """
    user = os.environ.get(BIN_ENV)
    if user:
        if not is_executable(Path(user)):
            raise ControlPlaneError(f"{BIN_ENV}={user} is not an executable file")
        return Path(user)
    root = cache_root()
    target = root / BINARY / METRICS_SERVER_VERSION / BINARY
    if is_executable(target):
        return target
    with build_lock(root):
        if is_executable(target):
            return target
        work = root / "build" / f"{BINARY}-{METRICS_SERVER_VERSION}"
        log(f"building metrics-server {METRICS_SERVER_VERSION} from the Go module proxy "
            "(once per machine; a few minutes)")
        try:
            fresh_module(work, "pykubeedge.local/metricsserverwrapper")
            run_go(["get", f"{METRICS_SERVER_MODULE}@{METRICS_SERVER_VERSION}"], work, log)
            # Its Makefile stamps the version into client-go's version package.
            ldflags = " ".join((
                "-w",
                f"-X k8s.io/client-go/pkg/version.gitVersion={METRICS_SERVER_VERSION}",
                "-X k8s.io/client-go/pkg/version.buildDate="
                + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            ))
            go_build(work, target.parent, [f"{METRICS_SERVER_MODULE}/cmd/{BINARY}"], ldflags,
                      log)
        except BuildAborted:
            raise
        except ControlPlaneError as exc:
            raise ControlPlaneError(f"metrics-server {METRICS_SERVER_VERSION} could not be "
                                    f"built: {exc}") from None
    return target


def aggregation_objects(port: int) -> list[tuple[Resource, dict[str, Any]]]:
    """The Service, APIService and RBAC that put metrics-server behind the API server.

    >>> [obj["kind"] for _, obj in aggregation_objects(4443)][:2]
    ['Service', 'APIService']
    """
    return [
        (SERVICES, {"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": SERVICE, "namespace": NAMESPACE},
                    # The aggregator dials an ExternalName Service by its name, not through
                    # kube-proxy: https://localhost:<port>.
                    "spec": {"type": "ExternalName", "externalName": "localhost"}}),
        (APISERVICES, {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                       "metadata": {"name": APISERVICE},
                       "spec": {"group": "metrics.k8s.io", "version": "v1beta1",
                                "service": {"name": SERVICE, "namespace": NAMESPACE,
                                            "port": port},
                                # metrics-server serves a self-signed certificate
                                "insecureSkipTLSVerify": True,
                                "groupPriorityMinimum": 100, "versionPriority": 100}}),
        (CLUSTERROLES, {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                        "metadata": {"name": CLIENT_USER},
                        "rules": [{"apiGroups": [""], "resources": ["nodes/metrics",
                                                                    "nodes/stats"],
                                   "verbs": ["get"]},
                                  {"apiGroups": [""], "resources": ["pods", "nodes"],
                                   "verbs": ["get", "list", "watch"]}]}),
        (CLUSTERROLEBINDINGS, {"apiVersion": "rbac.authorization.k8s.io/v1",
                               "kind": "ClusterRoleBinding", "metadata": {"name": CLIENT_USER},
                               "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                           "kind": "ClusterRole", "name": CLIENT_USER},
                               "subjects": [{"apiGroup": "rbac.authorization.k8s.io",
                                             "kind": "User", "name": CLIENT_USER}]}),
    ]


class MetricsServer:
    """metrics-server as a child process of ours, registered with the API server.

    ``kubeconfig`` is what it talks to the API server with; ``client_cert``/``client_key``
    what it shows the kubelet endpoints (CloudStream). It reaches nodes at their InternalIP
    and their reported kubelet port, and does not verify their serving certificates (the
    API server does not either without ``--kubelet-certificate-authority``).
    """

    def __init__(self, binary: Path, *, kubeconfig: Path, client_cert: Path,
                 client_key: Path, workdir: Path, port: int = 0) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig
        self.client_cert = client_cert
        self.client_key = client_key
        self.workdir = workdir
        self.port = port or free_port()
        self.process: ManagedProcess | None = None

    def argv(self) -> list[str]:
        kubeconfig = str(self.kubeconfig)
        return [
            str(self.binary),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={self.port}",
            f"--cert-dir={self.workdir / 'metrics-server-certs'}",
            f"--kubelet-client-certificate={self.client_cert}",
            f"--kubelet-client-key={self.client_key}",
            "--kubelet-insecure-tls",
            "--kubelet-preferred-address-types=InternalIP",
            "--kubelet-use-node-status-port",
            f"--kubelet-request-timeout={KUBELET_REQUEST_TIMEOUT}",
            f"--metric-resolution={METRIC_RESOLUTION}",
            "--v=1",
        ]

    async def __aenter__(self) -> MetricsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def register(self, kube: KubeClient) -> None:
        """Create (or replace) the aggregation objects for this process's port."""
        for res, obj in aggregation_objects(self.port):
            name = obj["metadata"]["name"]
            namespace = obj["metadata"].get("namespace")
            with contextlib.suppress(NotFound):
                await kube.delete(res, name, namespace=namespace)
            await kube.create(res, obj, namespace=namespace)

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(BINARY, self.argv(), self.workdir / f"{BINARY}.log")
        await self.process.start()
        await self.process.wait_port(self.port, timeout=60)

    async def stop(self) -> None:
        if self.process is not None:
            await self.process.stop()

    async def wait_available(self, kube: KubeClient,
                             timeout: float = AVAILABLE_TIMEOUT_S) -> dict[str, Any]:
        """Until ``kubectl top node`` would answer: the node metrics list is not empty."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.process is not None and not self.process.running:
                raise ControlPlaneError(f"metrics-server exited:\n{self.process.log_tail()}")
            try:
                found = await kube.request("GET", "/apis/metrics.k8s.io/v1beta1/nodes")
                if found.get("items"):
                    return dict(found)
                last = "no node metrics yet"
            except KubeError as exc:
                last = str(exc)
            await asyncio.sleep(1.0)
        tail = self.process.log_tail() if self.process is not None else ""
        raise ControlPlaneError(f"metrics-server not serving node metrics after "
                                f"{timeout:.0f}s: {last}\n{tail}")



def main() -> int:
    """``python -m pykubeedge.devcluster.metricsserver``: build (or find) the binary."""
    started = time.monotonic()
    try:
        binary = ensure_metrics_server(log=lambda line: print(line, flush=True))
    except ControlPlaneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"metrics-server {METRICS_SERVER_VERSION} ready in {time.monotonic() - started:.0f}s: "
          f"{binary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
