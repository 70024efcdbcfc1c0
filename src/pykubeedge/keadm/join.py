"""What `keadm join` writes: edgecore.yaml for a node joining a cloudcore.

    cfg = edgecore_config_for_join("10.0.0.1", 10000, 10002, token, "edge-1",
                                   Path("/etc/kubeedge"), {"disktype": "ssd"})
    write_edgecore_config(Path("/etc/kubeedge/config/edgecore.yaml"), cfg)
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from pykubeedge.core.config import EdgeCoreConfig

TUNNEL_PORT = 10004


def edgecore_config_for_join(host: str, port: int, cert_port: int, token: str, node: str,
                             config_dir: Path, labels: dict[str, str]) -> EdgeCoreConfig:
    """edgecore.yaml for a joining node: CloudHub address, token, name, cert paths."""
    cfg = EdgeCoreConfig()
    hub = cfg.modules.edgeHub
    url_host = f"[{host}]" if ":" in host else host
    hub.websocket.server = f"{url_host}:{port}"
    hub.httpServer = f"https://{url_host}:{cert_port}"
    hub.token = token
    hub.tlsCaFile = str(config_dir / "ca" / "rootCA.crt")
    hub.tlsCertFile = str(config_dir / "certs" / "server.crt")
    hub.tlsPrivateKeyFile = str(config_dir / "certs" / "server.key")
    stream = cfg.modules.edgeStream  # enabled with --set, as upstream; on 10004
    stream.server = f"{url_host}:{TUNNEL_PORT}"
    stream.tlsTunnelCAFile, stream.tlsTunnelCertFile, stream.tlsTunnelPrivateKeyFile = (
        hub.tlsCaFile, hub.tlsCertFile, hub.tlsPrivateKeyFile)
    flags = cfg.modules.edged.tailoredKubeletFlag
    flags.hostnameOverride = node
    flags.nodeLabels = labels
    return cfg


def write_edgecore_config(path: Path, cfg: EdgeCoreConfig) -> None:
    # 0600: until the certificate is obtained the file holds the join token.
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    os.replace(tmp, path)
