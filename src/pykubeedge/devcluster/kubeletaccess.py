"""How the local control plane reaches kubelets and aggregated APIs: the API server's
kubelet client certificate (CloudStream, the edge nodes' kubelet endpoint, trusts its CA and
authorizes its identity as kubelet would), metrics-server's own client identity, and the
front-proxy CA and client pair of the aggregation layer.

    files = kubelet_facing_pki(ca)             # written next to the cluster's other PKI
    argv += kubelet_facing_args(workdir.joinpath)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final

from pykubeedge.transport import certs

KUBELET_CLIENT: Final = "kubelet-client"
KUBELET_CLIENT_USER: Final = "kube-apiserver-kubelet-client"
METRICS_CLIENT: Final = "metrics-client"
METRICS_CLIENT_USER: Final = "system:metrics-server"
FRONT_PROXY_CA: Final = "front-proxy-ca"
FRONT_PROXY_CLIENT: Final = "front-proxy-client"
PREFERRED_ADDRESS_TYPES: Final = "InternalIP,Hostname,InternalDNS,ExternalDNS,ExternalIP"
"""An edge node's InternalIP is where its kubelet endpoint is (docs/streams.md)."""


def kubelet_facing_pki(ca: certs.KeyPair) -> dict[str, bytes]:
    """File name -> PEM: the kubelet client pair (kubeadm's identity, in system:masters),
    metrics-server's pair (its own user, for RBAC on ``nodes/metrics``), the front-proxy CA
    and its client pair."""
    kubelet = certs.issue(ca, KUBELET_CLIENT_USER, orgs=["system:masters"], client=True)
    metrics = certs.issue(ca, METRICS_CLIENT_USER, client=True)
    front_ca = certs.new_ca("pykubeedge-front-proxy-ca")
    front = certs.issue(front_ca, FRONT_PROXY_CLIENT, client=True)
    return {
        f"{KUBELET_CLIENT}.crt": kubelet.cert_pem(), f"{KUBELET_CLIENT}.key": kubelet.key_pem(),
        f"{METRICS_CLIENT}.crt": metrics.cert_pem(), f"{METRICS_CLIENT}.key": metrics.key_pem(),
        f"{FRONT_PROXY_CA}.crt": front_ca.cert_pem(),
        f"{FRONT_PROXY_CLIENT}.crt": front.cert_pem(),
        f"{FRONT_PROXY_CLIENT}.key": front.key_pem(),
    }


def kubelet_facing_args(path: Callable[[str], Path]) -> list[str]:
    """kube-apiserver flags for the files of :func:`kubelet_facing_pki` (``path(name)``)."""
    return [
        f"--kubelet-client-certificate={path(KUBELET_CLIENT + '.crt')}",
        f"--kubelet-client-key={path(KUBELET_CLIENT + '.key')}",
        f"--kubelet-preferred-address-types={PREFERRED_ADDRESS_TYPES}",
        f"--requestheader-client-ca-file={path(FRONT_PROXY_CA + '.crt')}",
        f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
        # kube-apiserver has no defaults for these (only delegating servers do)
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={path(FRONT_PROXY_CLIENT + '.crt')}",
        f"--proxy-client-key-file={path(FRONT_PROXY_CLIENT + '.key')}",
    ]
