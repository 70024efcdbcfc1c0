"""CloudHub's PKI: the CA, the server certificate, and the join token, kept in Secrets.

Where they come from, in order (as upstream ``PrepareAllCerts``): the files named in
``modules.cloudHub`` (tlsCAFile/tlsCAKeyFile, tlsCertFile/tlsPrivateKeyFile), then the Secrets
``kubeedge/casecret`` (``cadata``, ``cakeydata``) and ``kubeedge/cloudcoresecret``
(``cloudcoredata``, ``cloudcorekeydata``), DER in the Secret's ``data``. If neither exists they
are generated and stored.

Several replicas starting at once (upstream #5922, where each one generated its own CA): each
*creates* the Secret, and the one that gets a Conflict reads back the winner's. So every replica
ends with the same CA, and tokens and edge certificates work whichever replica an edge reaches.

    pki = await ensure_ca_and_server_cert(kube, cfg.modules.cloudHub)
    tokens = TokenManager(kube, pki, refresh_hours=cfg.modules.cloudHub.tokenRefreshDuration)
    await tokens.refresh()                 # kubeedge/tokensecret now holds a fresh token
    task_group.create_task(tokens.run())   # in cloudcore's scope, until it stops
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import ipaddress
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pykubeedge.core.clock import TimeSource
from pykubeedge.core.config import CloudHub
from pykubeedge.core.errors import CertificateError, ConfigError, Conflict, KubeError, NotFound
from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.resources import NAMESPACES, SECRETS
from pykubeedge.transport import certs, tls
from pykubeedge.transport.certs import KeyPair, parse_certificate, parse_ec_key
from pykubeedge.transport.token import make_token, split_token

log = logging.getLogger(__name__)

KUBEEDGE_NAMESPACE = "kubeedge"
CA_SECRET, CA_DATA, CA_KEY_DATA = "casecret", "cadata", "cakeydata"
CLOUDCORE_SECRET = "cloudcoresecret"
CLOUDCORE_DATA, CLOUDCORE_KEY_DATA = "cloudcoredata", "cloudcorekeydata"
TOKEN_SECRET, TOKEN_DATA = "tokensecret", "tokendata"
CA_COMMON_NAME = "KubeEdge"
SERVER_COMMON_NAME = SERVER_ORGANIZATION = "KubeEdge"
# Upstream makes the CA and the server certificate valid for 100 years.
VALIDITY_DAYS = 36500
# A PEM/DER certificate or key file is a few KiB; refuse to slurp anything much larger.
MAX_PKI_FILE_BYTES = 1024 * 1024
TOKEN_RETRY_SECONDS = 30.0


@dataclass(frozen=True)
class CloudHubPKI:
    """The CA (signs edge certificates, keys the join token) and CloudHub's server pair."""

    ca: KeyPair
    server: KeyPair
    ca_source: str = "generated"  # "files", "secret" or "generated"

    @property
    def ca_der(self) -> bytes:
        return self.ca.cert_der()

    @property
    def ca_key_der(self) -> bytes:
        return self.ca.key_der()

    def server_ssl_context(self, *, require_client_cert: bool) -> ssl.SSLContext:
        """TLS for CloudHub's listeners: ``pki.server_ssl_context(require_client_cert=True)``."""
        return tls.server_context(self.server.cert_pem(), self.server.key_pem(),
                                  self.ca.cert_pem(), require_client_cert=require_client_cert)


async def ensure_ca_and_server_cert(kube: KubeClient, hub_cfg: CloudHub, *,
                                    namespace: str = KUBEEDGE_NAMESPACE) -> CloudHubPKI:
    """Load or create the CA and server certificate; the same CA for every replica.

        pki = await ensure_ca_and_server_cert(kube, cfg.modules.cloudHub)
    """
    ips, dns = server_sans(hub_cfg)
    await _ensure_namespace(kube, namespace)

    ca = await asyncio.to_thread(_load_pair_files, hub_cfg.tlsCAFile, hub_cfg.tlsCAKeyFile,
                                 "CA")
    if ca is not None:
        ca_source = "files"
        # Other replicas (and `keadm gettoken` users) find the CA in the Secret.
        await _upsert_secret(kube, namespace, CA_SECRET,
                             {CA_DATA: ca.cert_der(), CA_KEY_DATA: ca.key_der()})
    else:
        ca, ca_source = await _get_or_create_pair(
            kube, namespace, CA_SECRET, CA_DATA, CA_KEY_DATA,
            lambda: certs.new_ca(CA_COMMON_NAME, days=VALIDITY_DAYS))

    server = await asyncio.to_thread(_load_pair_files, hub_cfg.tlsCertFile,
                                     hub_cfg.tlsPrivateKeyFile, "server")
    if server is not None:
        problem = _server_cert_problem(server, ca, (), ())
        if problem:
            raise CertificateError(f"server certificate {hub_cfg.tlsCertFile} {problem}")
        await _upsert_secret(kube, namespace, CLOUDCORE_SECRET,
                             {CLOUDCORE_DATA: server.cert_der(),
                              CLOUDCORE_KEY_DATA: server.key_der()})
    else:
        server = await _ensure_server_secret(kube, namespace, ca, ips, dns)
    log.info("CloudHub PKI ready: CA from %s (sha256 %s...), server certificate SANs %s",
             ca_source, ca.cert.fingerprint(hashes.SHA256()).hex()[:12], [*ips, *dns])
    return CloudHubPKI(ca=ca, server=server, ca_source=ca_source)


def server_sans(hub_cfg: CloudHub) -> tuple[list[str], list[str]]:
    """The server certificate's IP and DNS SANs: advertiseAddress + dnsNames."""
    ips: list[str] = []
    for addr in hub_cfg.advertiseAddress:
        try:
            ips.append(str(ipaddress.ip_address(addr.strip())))
        except ValueError:
            raise ConfigError(f"modules.cloudHub.advertiseAddress: {addr!r} is not an IP "
                              "address") from None
    dns = [d.strip() for d in hub_cfg.dnsNames if d.strip()]
    if not ips and not dns:
        log.warning("modules.cloudHub.advertiseAddress and dnsNames are empty: the server "
                    "certificate will only be valid for 127.0.0.1; remote edges cannot verify it")
        ips = ["127.0.0.1"]
    return ips, dns


def new_server_cert(ca: KeyPair, ips: list[str], dns: list[str]) -> KeyPair:
    """CloudHub's server pair: CN and O "KubeEdge", the given SANs, serverAuth, 100 years."""
    return certs.issue(ca, SERVER_COMMON_NAME, orgs=[SERVER_ORGANIZATION], ips=ips, dns=dns,
                       server=True, days=VALIDITY_DAYS)


async def read_token(kube: KubeClient, *, namespace: str = KUBEEDGE_NAMESPACE) -> str:
    """The current join token from Secret ``kubeedge/tokensecret`` (what `keadm gettoken` prints).

    Raises CertificateError when cloudcore has not stored one yet.
    """
    try:
        obj = await kube.get(SECRETS, TOKEN_SECRET, namespace=namespace)
    except NotFound:
        raise CertificateError("cloudcore has not created a token yet (secret "
                               f"{namespace}/{TOKEN_SECRET} not found)") from None
    raw = _secret_value(obj, TOKEN_DATA, namespace, TOKEN_SECRET)
    try:
        token = raw.decode().strip()
    except UnicodeDecodeError:
        raise CertificateError(f"secret {namespace}/{TOKEN_SECRET}: {TOKEN_DATA} is not "
                               "text") from None
    split_token(token)  # a clear TokenError rather than handing out garbage
    return token


class TokenManager:
    """Keeps a fresh join token in Secret ``kubeedge/tokensecret`` (key ``tokendata``).

    A token is valid for 2 x ``refresh_hours`` and a new one is stored every ``refresh_hours``,
    so whatever `keadm gettoken` prints stays valid for at least one period.

        tokens = TokenManager(kube, pki, refresh_hours=12)
        await tokens.run()       # refresh now, then every 12 h; cancel to stop
    """

    def __init__(self, kube: KubeClient, pki: CloudHubPKI, refresh_hours: float, *,
                 namespace: str = KUBEEDGE_NAMESPACE, clock: TimeSource = time.time,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 retry_seconds: float = TOKEN_RETRY_SECONDS) -> None:
        if refresh_hours <= 0:
            raise ConfigError(f"modules.cloudHub.tokenRefreshDuration must be positive, "
                              f"not {refresh_hours}")
        self._kube = kube
        self._pki = pki
        self.refresh_hours = refresh_hours
        self.namespace = namespace
        self._clock = clock
        self._sleep = sleep
        self._retry_seconds = retry_seconds
        self.token: str | None = None

    async def refresh(self) -> str:
        """Make a new token and store it (create or update the Secret); return it."""
        token = make_token(self._pki.ca_der, self._pki.ca_key_der, self.refresh_hours,
                           now=self._clock())
        await _upsert_secret(self._kube, self.namespace, TOKEN_SECRET,
                             {TOKEN_DATA: token.encode()})
        self.token = token
        log.info("stored a new join token in secret %s/%s (valid %gh)", self.namespace,
                 TOKEN_SECRET, 2 * self.refresh_hours)
        return token

    async def run(self) -> None:
        """Refresh every ``refresh_hours`` (first now, unless ``refresh()`` already ran); a
        failed store is retried sooner. Runs until cancelled."""
        period = self.refresh_hours * 3600
        if self.token is not None:
            await self._sleep(period)
        while True:
            try:
                await self.refresh()
                delay = period
            except KubeError as exc:
                delay = min(self._retry_seconds, period)
                log.warning("could not store the join token (retrying in %gs): %s", delay, exc)
            await self._sleep(delay)


# -- Secrets ----------------------------------------------------------------------------------


async def _ensure_namespace(kube: KubeClient, namespace: str) -> None:
    try:
        await kube.get(NAMESPACES, namespace)
        return
    except NotFound:
        pass
    try:
        await kube.create(NAMESPACES, {"metadata": {"name": namespace}})
        log.info("created namespace %s", namespace)
    except Conflict:
        pass  # another replica made it first


def _secret_body(namespace: str, name: str, data: dict[str, bytes]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


async def _upsert_secret(kube: KubeClient, namespace: str, name: str,
                         data: dict[str, bytes]) -> None:
    try:
        await kube.create(SECRETS, _secret_body(namespace, name, data), namespace=namespace)
    except Conflict:
        patch = {"data": {k: base64.b64encode(v).decode() for k, v in data.items()}}
        await kube.patch(SECRETS, name, patch, namespace=namespace)


def _secret_value(obj: dict[str, Any], key: str, namespace: str, name: str) -> bytes:
    value = (obj.get("data") or {}).get(key)
    if not isinstance(value, str) or not value:
        raise CertificateError(f"secret {namespace}/{name} has no {key!r} entry")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise CertificateError(f"secret {namespace}/{name}: {key} is not valid base64") from None


async def _read_pair_secret(kube: KubeClient, namespace: str, name: str, cert_key: str,
                            key_key: str) -> tuple[KeyPair, str] | None:
    """The pair stored in a Secret and the Secret's resourceVersion; None if absent."""
    try:
        obj = await kube.get(SECRETS, name, namespace=namespace)
    except NotFound:
        return None
    where = f"secret {namespace}/{name}"
    cert = parse_certificate(_secret_value(obj, cert_key, namespace, name), f"{where} {cert_key}")
    key = parse_ec_key(_secret_value(obj, key_key, namespace, name), f"{where} {key_key}")
    return _pair(cert, key, where), str((obj.get("metadata") or {}).get("resourceVersion", ""))


async def _get_or_create_pair(kube: KubeClient, namespace: str, name: str, cert_key: str,
                              key_key: str, generate: Callable[[], KeyPair]
                              ) -> tuple[KeyPair, str]:
    stored = await _read_pair_secret(kube, namespace, name, cert_key, key_key)
    if stored is not None:
        log.info("loaded %s from secret %s/%s", cert_key, namespace, name)
        return stored[0], "secret"
    fresh = generate()
    body = _secret_body(namespace, name, {cert_key: fresh.cert_der(), key_key: fresh.key_der()})
    try:
        await kube.create(SECRETS, body, namespace=namespace)
    except Conflict:
        # Another replica created it between our read and our create: its pair wins.
        stored = await _read_pair_secret(kube, namespace, name, cert_key, key_key)
        if stored is None:
            raise CertificateError(f"secret {namespace}/{name} was created by another replica "
                                   "and deleted again; restart cloudcore") from None
        log.info("another cloudcore created secret %s/%s first; using its %s", namespace, name,
                 cert_key)
        return stored[0], "secret"
    log.info("generated %s and stored it in secret %s/%s", cert_key, namespace, name)
    return fresh, "generated"


async def _ensure_server_secret(kube: KubeClient, namespace: str, ca: KeyPair, ips: list[str],
                                dns: list[str]) -> KeyPair:
    server, _ = await _get_or_create_pair(kube, namespace, CLOUDCORE_SECRET, CLOUDCORE_DATA,
                                          CLOUDCORE_KEY_DATA,
                                          lambda: new_server_cert(ca, ips, dns))
    problem = _server_cert_problem(server, ca, ips, dns)
    if problem is None:
        return server
    # A stale certificate (other CA, missing advertiseAddress SANs: upstream #2905, #4418) is
    # reissued; the resourceVersion precondition makes concurrent replicas agree on one.
    log.warning("the server certificate in secret %s/%s %s; issuing a new one", namespace,
                CLOUDCORE_SECRET, problem)
    for _ in range(3):
        stored = await _read_pair_secret(kube, namespace, CLOUDCORE_SECRET, CLOUDCORE_DATA,
                                         CLOUDCORE_KEY_DATA)
        if stored is not None and _server_cert_problem(stored[0], ca, ips, dns) is None:
            return stored[0]
        fresh = new_server_cert(ca, ips, dns)
        body = _secret_body(namespace, CLOUDCORE_SECRET, {CLOUDCORE_DATA: fresh.cert_der(),
                                                          CLOUDCORE_KEY_DATA: fresh.key_der()})
        try:
            if stored is None:
                await kube.create(SECRETS, body, namespace=namespace)
            else:
                body["metadata"]["resourceVersion"] = stored[1]
                await kube.replace(SECRETS, body)
            return fresh
        except (Conflict, NotFound):
            continue
    raise CertificateError(f"could not store a server certificate in secret {namespace}/"
                           f"{CLOUDCORE_SECRET}: it keeps changing under us")


def _server_cert_problem(server: KeyPair, ca: KeyPair, ips: Any, dns: Any) -> str | None:
    """Why the server certificate cannot be used with this CA and these SANs; None if it can."""
    try:
        server.cert.verify_directly_issued_by(ca.cert)
    except (ValueError, TypeError, InvalidSignature):
        return "is not signed by the CA"
    if server.cert.not_valid_after_utc <= dt.datetime.now(dt.UTC) + dt.timedelta(days=1):
        return "has expired"
    try:
        san = server.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        have_ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
        have_dns = set(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        have_ips, have_dns = set(), set()
    missing = sorted(set(ips) - have_ips) + sorted(set(dns) - have_dns)
    if missing:
        return f"lacks the SANs {missing}"
    return None


# -- parsing ----------------------------------------------------------------------------------


def _pair(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, where: str) -> KeyPair:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise CertificateError(f"{where}: the certificate and the key do not belong together")
    return KeyPair(cert, key)


def _read_bounded(path: Path) -> bytes:
    with path.open("rb") as f:
        data = f.read(MAX_PKI_FILE_BYTES + 1)
    if len(data) > MAX_PKI_FILE_BYTES:
        raise CertificateError(f"{path} is larger than {MAX_PKI_FILE_BYTES} bytes")
    return data


def _load_pair_files(cert_file: str, key_file: str, what: str) -> KeyPair | None:
    """The pair from files; None when neither file exists."""
    if not cert_file and not key_file:
        return None
    cert_path, key_path = Path(cert_file), Path(key_file)
    cert_there, key_there = cert_path.is_file(), key_path.is_file()
    if not cert_there and not key_there:
        return None
    if cert_there != key_there:
        present, absent = (cert_path, key_path) if cert_there else (key_path, cert_path)
        raise ConfigError(f"{what} certificate: {present} exists but {absent} does not")
    try:
        cert = parse_certificate(_read_bounded(cert_path), str(cert_path))
        key = parse_ec_key(_read_bounded(key_path), str(key_path))
    except OSError as exc:
        raise ConfigError(f"{what} certificate files cannot be read: {exc.strerror}") from None
    log.info("loaded the %s certificate from %s", what, cert_path)
    return _pair(cert, key, f"{what} files {cert_path}, {key_path}")
