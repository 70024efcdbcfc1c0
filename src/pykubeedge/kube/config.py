"""Read a kubeconfig into what the client needs: server URL, TLS settings, credentials.

    >>> cfg = load_kubeconfig("/tmp/devcluster/kubeconfig")
    >>> cfg.server
    'https://127.0.0.1:41234'

Every problem (missing file, bad YAML, unknown context, unreadable certificate) raises
``ConfigError`` with a one-line message that names the file and the key at fault.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pykubeedge.core.errors import ConfigError


@dataclass(frozen=True)
class KubeConfig:
    server: str
    ca_data: bytes | None = None
    insecure_skip_tls_verify: bool = False
    token: str | None = None
    client_cert_data: bytes | None = None
    client_key_data: bytes | None = None
    tls_server_name: str | None = None
    source: str = field(default="", compare=False)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for an https server; None for plain http."""
        if not self.server.startswith("https://"):
            return None
        ctx = ssl.create_default_context()
        if self.insecure_skip_tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_data:
            try:
                ctx.load_verify_locations(cadata=self.ca_data.decode())
            except (ssl.SSLError, ValueError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{self.source}: certificate-authority is not a PEM "
                                  f"certificate: {exc}") from None
        if self.client_cert_data and self.client_key_data:
            _load_client_cert(ctx, self.client_cert_data, self.client_key_data, self.source)
        return ctx


def _load_client_cert(ctx: ssl.SSLContext, cert: bytes, key: bytes, source: str) -> None:
    # ssl only loads key pairs from files: write them to a private temporary directory.
    with tempfile.TemporaryDirectory(prefix="pykubeedge-cred-") as d:
        cpath, kpath = Path(d, "c.pem"), Path(d, "k.pem")
        for p, data in ((cpath, cert), (kpath, key)):
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        try:
            ctx.load_cert_chain(cpath, kpath)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"{source}: client certificate/key cannot be loaded: {exc}") from None


def default_kubeconfig_path() -> Path:
    env = os.environ.get("KUBECONFIG")
    if env:
        return Path(env.split(os.pathsep)[0])
    return Path.home() / ".kube" / "config"


def load_kubeconfig(path: str | Path | None = None, context: str | None = None) -> KubeConfig:
    """Parse the kubeconfig at ``path`` (default: $KUBECONFIG, then ~/.kube/config)."""
    p = Path(path) if path else default_kubeconfig_path()
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"kubeconfig {p} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"kubeconfig {p} is a directory, not a file") from None
    except PermissionError:
        raise ConfigError(f"kubeconfig {p} is not readable (permission denied)") from None
    except OSError as exc:
        raise ConfigError(f"kubeconfig {p} cannot be read: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"kubeconfig {p} is not valid YAML{where}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"kubeconfig {p} is not a YAML mapping")
    return _parse(doc, p, context)


def _named(doc: dict[str, Any], key: str, name: str, src: Path) -> dict[str, Any]:
    entries = doc.get(key) or []
    if not isinstance(entries, list):
        raise ConfigError(f"kubeconfig {src}: `{key}` must be a list")
    for entry in entries:
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(key[:-1])  # clusters -> cluster, users -> user
            if not isinstance(body, dict):
                raise ConfigError(f"kubeconfig {src}: {key[:-1]} {name!r} has no body")
            return body
    raise ConfigError(f"kubeconfig {src}: no {key[:-1]} named {name!r}")


def _parse(doc: dict[str, Any], src: Path, context: str | None) -> KubeConfig:
    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise ConfigError(f"kubeconfig {src}: no current-context and no context given")
    ctx = _named(doc, "contexts", ctx_name, src)
    cluster = _named(doc, "clusters", str(ctx.get("cluster", "")), src)
    user_name = ctx.get("user")
    user = _named(doc, "users", str(user_name), src) if user_name else {}

    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        raise ConfigError(f"kubeconfig {src}: cluster server {server!r} is not an http(s) URL")

    base = src.parent
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = _read_ref(base, user["tokenFile"], src, "tokenFile").decode().strip()
    return KubeConfig(
        server=server.rstrip("/"),
        ca_data=_data_or_file(cluster, "certificate-authority", base, src),
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
        token=token or None,
        client_cert_data=_data_or_file(user, "client-certificate", base, src),
        client_key_data=_data_or_file(user, "client-key", base, src),
        tls_server_name=cluster.get("tls-server-name"),
        source=str(src),
    )


def _data_or_file(section: dict[str, Any], key: str, base: Path, src: Path) -> bytes | None:
    data = section.get(f"{key}-data")
    if data:
        try:
            return base64.b64decode(data, validate=True)
        except (ValueError, TypeError):
            raise ConfigError(f"kubeconfig {src}: {key}-data is not valid base64") from None
    ref = section.get(key)
    return _read_ref(base, ref, src, key) if ref else None


def _read_ref(base: Path, ref: str, src: Path, key: str) -> bytes:
    p = Path(ref) if os.path.isabs(ref) else base / ref
    try:
        return p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"kubeconfig {src}: {key} file {p} cannot be read: "
                          f"{exc.strerror}") from None
