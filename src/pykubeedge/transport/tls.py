"""TLS contexts for CloudHub (server) and EdgeHub (client), as KubeEdge sets them up.

The server requires a client certificate signed by the CloudHub CA, TLS >= 1.2 and, for
TLS 1.2, only ECDHE-ECDSA AES-GCM / ChaCha20 suites.

    ctx = server_context(cert_pem, key_pem, ca_pem, require_client_cert=True)
    ctx = client_context(ca_pem, cert_pem, key_pem)
"""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from pykubeedge.core.errors import ConfigError

ECDSA_SUITES = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
))


def _load_pair(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    # ssl only loads key pairs from files: a private temporary directory, removed at once.
    with tempfile.TemporaryDirectory(prefix="pykubeedge-tls-") as d:
        paths = []
        for name, data in (("c.pem", cert_pem), ("k.pem", key_pem)):
            p = Path(d, name)
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            paths.append(p)
        try:
            ctx.load_cert_chain(paths[0], paths[1])
        except ssl.SSLError as exc:
            raise ConfigError(f"certificate and key do not load: {exc}") from None


def server_context(cert_pem: bytes, key_pem: bytes, ca_pem: bytes | None = None, *,
                   require_client_cert: bool = True) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(ECDSA_SUITES)
    _load_pair(ctx, cert_pem, key_pem)
    if ca_pem:
        ctx.load_verify_locations(cadata=ca_pem.decode())
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return ctx


def client_context(ca_pem: bytes, cert_pem: bytes | None = None,
                   key_pem: bytes | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cadata=ca_pem.decode())
    # Edges dial CloudHub by IP; the certificate's IP SANs (advertiseAddress) are checked.
    ctx.check_hostname = True
    if cert_pem and key_pem:
        _load_pair(ctx, cert_pem, key_pem)
    return ctx


def client_context_from_files(ca_file: Path, cert_file: Path, key_file: Path, *,
                              what: str = "edge") -> ssl.SSLContext:
    """A client context from PEM files, read afresh (they change when the certificate
    rotates); ConfigError if one cannot be read."""
    try:
        return client_context(ca_file.read_bytes(), cert_file.read_bytes(),
                              key_file.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} certificates: {exc}") from None


def peer_common_name(der: bytes | None) -> str | None:
    """The CN of a DER certificate (e.g. from ``ssl_object.getpeercert(binary_form=True)``)."""
    if not der:
        return None
    cert = x509.load_der_x509_certificate(der)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None
