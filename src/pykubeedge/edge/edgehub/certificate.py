"""EdgeHub's certificates: obtain them with the join token, rotate them before they expire.

Bootstrap (upstream ``CertManager.applyCerts``): when the certificate at ``tlsCertFile`` is
missing or not for ``CN=system:node:<node>``, fetch ``<httpServer>/ca.crt`` (over TLS without
verification: there is nothing to verify it with yet), accept it only if its sha256 equals the
token's prefix, save it as PEM, make an EC key and a CSR, and ``GET /edge.crt`` with the CSR
and the token's JWT part. The certificate and key are written with mode 0600.

Rotation: at a jittered 70-90 % of the certificate's lifetime, request a new one presenting the
current certificate (no token); back off from 2 s, then poll every 32 s; tell EdgeHub to
reconnect with the new one.

    paths = await bootstrap(edge_cfg)              # no-op when the certificate is good
    rotator = CertRotator(edge_cfg, on_rotated=hub.reconnect)
    task_group.create_task(rotator.run())   # in edgecore's scope, until it stops
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging
import os
import random
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pykubeedge.core.clock import TimeSource
from pykubeedge.core.config import EdgeCoreConfig
from pykubeedge.core.errors import CertificateError, ConfigError, TokenError
from pykubeedge.transport import certs, tls
from pykubeedge.transport.certs import parse_certificate, parse_ec_key
from pykubeedge.transport.token import (
    NODES_ORGANIZATION,
    check_ca,
    is_valid_node_name,
    node_common_name,
    split_token,
)

log = logging.getLogger(__name__)

CA_URL = "/ca.crt"
CERT_URL = "/edge.crt"
MAX_RESPONSE_BYTES = 64 * 1024
MAX_FILE_BYTES = 1024 * 1024
REQUEST_TIMEOUT = 30.0
ROTATION_BACKOFF = (2.0, 4.0, 8.0, 16.0)  # then ROTATION_POLL; as upstream's wait.Backoff
ROTATION_POLL = 32.0
ROTATION_JITTER = 0.1


@dataclass(frozen=True)
class EdgeCertPaths:
    """Where the edge keeps its CA, certificate and key (edgeHub.tlsCaFile, ...)."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def from_config(cls, edge_cfg: EdgeCoreConfig) -> EdgeCertPaths:
        hub = edge_cfg.modules.edgeHub
        return cls(Path(hub.tlsCaFile), Path(hub.tlsCertFile), Path(hub.tlsPrivateKeyFile))


def node_name(edge_cfg: EdgeCoreConfig) -> str:
    """The node's name: ``hostnameOverride``, else the host name (as edged does)."""
    name = edge_cfg.node_name or socket.gethostname().lower()
    if not is_valid_node_name(name):
        raise ConfigError(f"node name {name!r} is not valid: lower-case letters, digits, '-' "
                          "and '.' (set modules.edged.tailoredKubeletFlag.hostnameOverride)")
    return name


def http_server_url(edge_cfg: EdgeCoreConfig) -> str:
    """``edgeHub.httpServer`` without a trailing slash, checked to be an https URL."""
    url = edge_cfg.modules.edgeHub.httpServer.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigError(f"modules.edgeHub.httpServer {url!r} must be https://<host>:<port>")
    return url


def make_csr(node: str) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A fresh P-256 key and a DER CSR for ``CN=system:node:<node>``, as upstream's subject."""
    key = certs.new_key()
    subject = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, NODES_ORGANIZATION),
        x509.NameAttribute(NameOID.LOCALITY_NAME, "Hangzhou"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Zhejiang"),
        x509.NameAttribute(NameOID.COMMON_NAME, node_common_name(node)),
    ])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key,
                                                                             hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.DER)


def bootstrap_reason(paths: EdgeCertPaths, node: str, *, now: float | None = None) -> str | None:
    """Why the edge needs a new certificate from the token; None if the current one is good."""
    if not paths.ca.is_file():
        return f"no CA certificate at {paths.ca}"
    if not paths.cert.is_file() or not paths.key.is_file():
        return f"no certificate and key at {paths.cert}, {paths.key}"
    try:
        cert = parse_certificate(_read_bounded(paths.cert), str(paths.cert))
        key = parse_ec_key(_read_bounded(paths.key), str(paths.key))
    except (CertificateError, OSError) as exc:
        return str(exc)
    want = node_common_name(node)
    if _common_name(cert) != want:
        return f"the certificate is for CN {_common_name(cert)!r}, not {want!r}"
    if not _same_public_key(cert, key):
        return f"the key {paths.key} does not belong to the certificate {paths.cert}"
    current = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC)
    if current >= cert.not_valid_after_utc:
        return f"the certificate expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    return None


async def fetch_ca(http_server: str, *, timeout: float = REQUEST_TIMEOUT) -> bytes:
    """GET ``<http_server>/ca.crt`` without verifying the server: the raw DER bytes.

    The caller must check them against the token (``check_ca``) before trusting them.
    """
    return await _get(http_server + CA_URL, ssl_ctx=False, timeout=timeout, what="CA")


async def request_certificate(http_server: str, node: str, ca_pem: bytes, *,
                              token_jwt: str | None = None,
                              client_pair: tuple[bytes, bytes] | None = None,
                              timeout: float = REQUEST_TIMEOUT,
                              ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Get a new key and certificate for ``node`` from ``<http_server>/edge.crt``.

    Authenticated by the token's JWT part (join) or by ``client_pair`` = (cert PEM, key PEM)
    of the current certificate (rotation). The server is verified against ``ca_pem``.
    """
    key, csr = make_csr(node)
    try:
        ctx = tls.client_context(ca_pem, *(client_pair or (None, None)))
    except (ConfigError, ssl.SSLError, ValueError) as exc:
        raise CertificateError(f"cannot use the local CA or certificate: {exc}") from None
    headers = {"NodeName": node, "Content-Type": "application/octet-stream"}
    if token_jwt:
        headers["Authorization"] = f"Bearer {token_jwt}"
    body = await _get(http_server + CERT_URL, ssl_ctx=ctx, timeout=timeout, what="certificate",
                      data=csr, headers=headers)
    cert = parse_certificate(body, "the certificate from cloudcore")
    ca = parse_certificate(ca_pem, "the CA certificate")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise CertificateError("cloudcore returned a certificate not signed by its CA") from None
    if _common_name(cert) != node_common_name(node) or not _same_public_key(cert, key):
        raise CertificateError("cloudcore returned a certificate for another identity or key")
    return key, cert


async def bootstrap(edge_cfg: EdgeCoreConfig, *,
                    timeout: float = REQUEST_TIMEOUT) -> EdgeCertPaths:
    """Make sure the edge has a CA and a certificate for ``system:node:<node>``; return paths.

        paths = await bootstrap(load_edgecore_config(Path("/etc/kubeedge/config/edgecore.yaml")))
    """
    paths = EdgeCertPaths.from_config(edge_cfg)
    node = node_name(edge_cfg)
    reason = await asyncio.to_thread(bootstrap_reason, paths, node)
    if reason is None:
        log.debug("edge certificate %s is good for node %s", paths.cert, node)
        return paths
    token = edge_cfg.modules.edgeHub.token.strip()
    if not token:
        raise CertificateError(f"a new certificate is needed ({reason}) but "
                               "modules.edgeHub.token is empty; get one with `keadm gettoken`")
    split_token(token)  # a malformed token fails here, before any network traffic
    server = http_server_url(edge_cfg)
    log.info("requesting an edge certificate from %s: %s", server, reason)
    ca_der = await fetch_ca(server, timeout=timeout)
    jwt_part = check_ca(token, ca_der)
    ca = parse_certificate(ca_der, f"the CA from {server}")
    if not _is_ca(ca):
        raise CertificateError(f"the certificate from {server}{CA_URL} is not a CA certificate")
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    await asyncio.to_thread(_write_file, paths.ca, ca_pem, 0o644, 0o755)
    key, cert = await request_certificate(server, node, ca_pem, token_jwt=jwt_part,
                                          timeout=timeout)
    await asyncio.to_thread(write_key_and_cert, paths, key, cert)
    log.info("saved the edge certificate for %s to %s (valid until %s)", node, paths.cert,
             cert.not_valid_after_utc)
    return paths


def write_key_and_cert(paths: EdgeCertPaths, key: ec.EllipticCurvePrivateKey,
                       cert: x509.Certificate) -> None:
    """Write the key (PEM "EC PRIVATE KEY") and the certificate, both mode 0600."""
    _write_file(paths.key, certs.key_pem(key), 0o600, 0o700)
    _write_file(paths.cert, cert.public_bytes(serialization.Encoding.PEM), 0o600, 0o700)


class CertRotator:
    """Renews the edge certificate at a jittered 70-90 % of its lifetime.

        rotator = CertRotator(edge_cfg, on_rotated=hub.reconnect)
        await rotator.run()          # until cancelled
    """

    def __init__(self, edge_cfg: EdgeCoreConfig, *, clock: TimeSource = time.time,
                 rand: Callable[[], float] = random.random,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 on_rotated: Callable[[], Awaitable[object] | object] | None = None,
                 timeout: float = REQUEST_TIMEOUT) -> None:
        self.paths = EdgeCertPaths.from_config(edge_cfg)
        self.node = node_name(edge_cfg)
        self.server = http_server_url(edge_cfg)
        self.enabled = edge_cfg.modules.edgeHub.rotateCertificates
        self._clock = clock
        self._rand = rand
        self._sleep = sleep
        self._on_rotated = on_rotated
        self._timeout = timeout

    def rotation_deadline(self, cert: x509.Certificate) -> float:
        """Epoch seconds at NotBefore + (70..90 %) x lifetime, the fraction drawn at random."""
        start = cert.not_valid_before_utc.timestamp()
        lifetime = cert.not_valid_after_utc.timestamp() - start
        return start + lifetime * (0.7 + 0.2 * self._rand())

    def current(self) -> x509.Certificate:
        """The certificate on disk."""
        return parse_certificate(_read_bounded(self.paths.cert), str(self.paths.cert))

    async def rotate(self) -> x509.Certificate:
        """Get a new key and certificate presenting the current ones (no token); save them."""
        ca_pem, cert_pem, key_pem = await asyncio.to_thread(
            lambda: (_read_bounded(self.paths.ca), _read_bounded(self.paths.cert),
                     _read_bounded(self.paths.key)))
        key, cert = await request_certificate(self.server, self.node, ca_pem,
                                              client_pair=(cert_pem, key_pem),
                                              timeout=self._timeout)
        await asyncio.to_thread(write_key_and_cert, self.paths, key, cert)
        log.info("rotated the edge certificate for %s (valid until %s)", self.node,
                 cert.not_valid_after_utc)
        return cert

    async def run(self) -> None:
        """Sleep until the deadline, rotate (with backoff), notify, repeat. Cancel to stop."""
        if not self.enabled:
            log.info("certificate rotation is disabled (edgeHub.rotateCertificates: false)")
            return
        rotated = False
        while True:
            cert = await asyncio.to_thread(self.current)
            deadline = self.rotation_deadline(cert)
            wait = deadline - self._clock()
            if rotated and wait < ROTATION_POLL:
                # A new certificate already due (tiny edgeCertSigningDuration, clock skew):
                # never spin; at most one rotation per poll interval.
                wait = ROTATION_POLL
            if wait > 0:
                log.info("next certificate rotation in %.0fs (at %s)", wait,
                         dt.datetime.fromtimestamp(deadline, dt.UTC))
                await self._sleep(wait)
            await self._rotate_until_done()
            rotated = True
            if self._on_rotated is not None:
                result = self._on_rotated()
                if inspect.isawaitable(result):
                    await result

    async def _rotate_until_done(self) -> None:
        attempt = 0
        while True:
            try:
                await self.rotate()
                return
            except (CertificateError, ConfigError, TokenError, OSError) as exc:
                if attempt < len(ROTATION_BACKOFF):
                    delay = ROTATION_BACKOFF[attempt] * (1 + ROTATION_JITTER * self._rand())
                else:
                    delay = ROTATION_POLL
                attempt += 1
                log.warning("certificate rotation failed (attempt %d, next in %.1fs): %s",
                            attempt, delay, exc)
                await self._sleep(delay)


# -- helpers ----------------------------------------------------------------------------------


async def _get(url: str, *, ssl_ctx: ssl.SSLContext | bool, timeout: float, what: str,
               data: bytes | None = None, headers: dict[str, str] | None = None) -> bytes:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http, \
                http.get(url, data=data, headers=headers, ssl=ssl_ctx) as resp:
            body = await _read_limited(resp.content, MAX_RESPONSE_BYTES)
            if resp.status != 200:
                text = body.decode(errors="replace").strip().splitlines()
                detail = text[0][:300] if text else resp.reason or ""
                raise CertificateError(f"cloudcore refused the {what} request to {url} "
                                       f"(HTTP {resp.status}): {detail}")
            return body
    except aiohttp.ClientError as exc:
        raise CertificateError(f"cannot get the {what} from {url}: "
                               f"{str(exc) or type(exc).__name__}") from None
    except TimeoutError:
        raise CertificateError(f"cannot get the {what} from {url}: no answer within "
                               f"{timeout:g}s") from None


async def _read_limited(stream: aiohttp.StreamReader, limit: int) -> bytes:
    buf = bytearray()
    async for chunk in stream.iter_any():
        buf += chunk
        if len(buf) > limit:
            raise CertificateError(f"cloudcore's answer is larger than {limit} bytes")
    return bytes(buf)


def _read_bounded(path: Path) -> bytes:
    with path.open("rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise CertificateError(f"{path} is larger than {MAX_FILE_BYTES} bytes")
    return data


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _same_public_key(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)


def _make_dirs(directory: Path, mode: int) -> None:
    missing: list[Path] = []
    d = directory
    while not d.exists():
        missing.append(d)
        d = d.parent
    for m in reversed(missing):
        try:
            m.mkdir(mode=mode)
        except FileExistsError:
            continue
        m.chmod(mode)  # mkdir's mode is filtered by the umask


def _write_file(path: Path, data: bytes, mode: int, dir_mode: int) -> None:
    """Atomically replace ``path`` with ``data``, created with exactly ``mode``."""
    _make_dirs(path.parent, dir_mode)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # the umask filtered os.open's mode
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
