"""CloudHub's HTTPS server (``modules.cloudHub.https``, port 10002): how edge nodes join.

- ``GET /ca.crt``: the CA certificate, DER. The edge checks it against its token's hash.
- ``GET /edge.crt``: a GET *with a body*, the CSR in DER. Headers ``NodeName: <node>`` and
  ``Authorization: Bearer <JWT part of the token>``, optionally ``ExtKeyUsages: [2]`` (Go
  ``x509.ExtKeyUsage`` numbers; clientAuth by default). The answer is the certificate, DER, for
  ``CN=system:node:<node>, O=system:nodes``, valid ``edgeCertSigningDuration`` days.
  An edge that presents its current certificate (rotation) needs no token, but that
  certificate must be ``CN=system:node:<node>`` for the same NodeName.

Unlike upstream, which signs whatever subject the CSR carries, a token buys a certificate for
the NodeName it is sent with only; the CSR's CN must say so. Refusals are 4xx with a one-line
text body, and a log line.

    server = CertHTTPServer(pki, cfg.modules.cloudHub)
    await server.start()
    ...
    await server.stop()
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time

from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pykubeedge.cloud.cloudhub.certs import CloudHubPKI
from pykubeedge.core.clock import TimeSource
from pykubeedge.core.config import CloudHub
from pykubeedge.core.errors import TokenError
from pykubeedge.transport import certs
from pykubeedge.transport.token import (
    NODES_ORGANIZATION,
    is_valid_node_name,
    node_common_name,
    verify_jwt,
)

log = logging.getLogger(__name__)

CA_URL = "/ca.crt"
CERT_URL = "/edge.crt"
# A P-256 CSR is ~250 bytes and an RSA-4096 one under 2 KiB.
MAX_CSR_BYTES = 16 * 1024
MAX_EXT_KEY_USAGES_HEADER = 128
MIN_RSA_BITS = 2048
# Go's x509.ExtKeyUsage numbers (ExtKeyUsageServerAuth = 1, ExtKeyUsageClientAuth = 2).
GO_EXT_KEY_USAGES = {1: ExtendedKeyUsageOID.SERVER_AUTH, 2: ExtendedKeyUsageOID.CLIENT_AUTH}
DER = "application/octet-stream"


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class CertHTTPServer:
    """The /ca.crt and /edge.crt endpoints over TLS >= 1.2 (client certificate optional).

        async with CertHTTPServer(pki, hub_cfg, host="127.0.0.1", port=0) as server:
            print(server.port)
    """

    def __init__(self, pki: CloudHubPKI, hub_cfg: CloudHub, *, host: str | None = None,
                 port: int | None = None, clock: TimeSource = time.time) -> None:
        self.pki = pki
        self.host = hub_cfg.https.address if host is None else host
        self._port = hub_cfg.https.port if port is None else port
        self.signing_days = hub_cfg.edgeCertSigningDuration
        self._clock = clock
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with ``port=0``)."""
        if self._runner is not None:
            for addr in self._runner.addresses:
                if isinstance(addr, tuple) and len(addr) >= 2:
                    return int(addr[1])
        return self._port

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_CSR_BYTES)
        app.router.add_get(CA_URL, self._ca_crt)
        app.router.add_get(CERT_URL, self._edge_crt)
        return app

    async def start(self) -> None:
        if self._runner is not None:
            return
        ctx = self.pki.server_ssl_context(require_client_cert=False)
        runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._port, ssl_context=ctx)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        log.info("CloudHub HTTPS server listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> CertHTTPServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- handlers -----------------------------------------------------------------------------

    async def _ca_crt(self, request: web.Request) -> web.Response:
        return web.Response(body=self.pki.ca_der, content_type=DER)

    async def _edge_crt(self, request: web.Request) -> web.Response:
        node = request.headers.get("NodeName", "").strip()
        try:
            cert, how = await self._sign_for(request, node)
        except _Refused as refusal:
            log.warning("refused an edge certificate for node %r from %s: %s", node[:64],
                        request.remote, refusal.reason)
            return web.Response(status=refusal.status, text=refusal.reason + "\n")
        log.info("issued an edge certificate for node %s (%s), valid %d days", node, how,
                 self.signing_days)
        return web.Response(body=cert, content_type=DER)

    async def _sign_for(self, request: web.Request, node: str) -> tuple[bytes, str]:
        if not node:
            raise _Refused(400, "the NodeName header is missing")
        if not is_valid_node_name(node):
            raise _Refused(400, f"NodeName {node[:64]!r} is not a valid node name")
        if request.content_length is not None and request.content_length > MAX_CSR_BYTES:
            raise _Refused(413, f"the CSR is larger than {MAX_CSR_BYTES} bytes")

        peer = _peer_certificate(request)
        if peer is not None:
            self._check_client_certificate(peer, node)
            how = "rotation with its current certificate"
        else:
            self._check_token(request.headers.get("Authorization", ""))
            how = "join token"

        usages = _ext_key_usages(request.headers.get("ExtKeyUsages"))
        csr = _parse_csr(await _read_bounded(request, MAX_CSR_BYTES))
        want = node_common_name(node)
        cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        cn = str(cns[0].value) if cns else ""
        if cn != want:
            raise _Refused(403, f"the CSR is for CN {cn[:80]!r}, but node {node!r} may only "
                                f"get CN {want!r}")
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, NODES_ORGANIZATION),
                             x509.NameAttribute(NameOID.COMMON_NAME, want)])
        cert = certs.sign_public_key(
            self.pki.ca, csr.public_key(), subject, days=self.signing_days,
            server=ExtendedKeyUsageOID.SERVER_AUTH in usages,
            client=ExtendedKeyUsageOID.CLIENT_AUTH in usages)
        return cert.public_bytes(serialization.Encoding.DER), how

    def _check_token(self, authorization: str) -> None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _Refused(401, "no token: send `Authorization: Bearer <token>` (from "
                                "`keadm gettoken`) or present the current edge certificate")
        try:
            verify_jwt(value.strip(), self.pki.ca_key_der, now=self._clock())
        except TokenError as exc:
            raise _Refused(401, f"invalid token: {exc}") from None

    def _check_client_certificate(self, der: bytes, node: str) -> None:
        try:
            cert = x509.load_der_x509_certificate(der)
            cert.verify_directly_issued_by(self.pki.ca.cert)
        except (ValueError, TypeError, InvalidSignature):
            raise _Refused(401, "the client certificate is not signed by this cloudcore's "
                                "CA") from None
        now = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
        if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
            raise _Refused(401, "the client certificate is not valid now (expired?)")
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            if ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
                raise _Refused(403, "the client certificate is not for client authentication")
        except x509.ExtensionNotFound:
            pass
        want = node_common_name(node)
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        orgs = {str(a.value) for a in
                cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)}
        cn = str(cns[0].value) if cns else ""
        if cn != want or NODES_ORGANIZATION not in orgs:
            raise _Refused(403, f"the client certificate is for CN {cn[:80]!r}, not {want!r} "
                                f"(O={NODES_ORGANIZATION})")


def _peer_certificate(request: web.Request) -> bytes | None:
    transport = request.transport
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return bytes(der) if der else None


def _ext_key_usages(header: str | None) -> set[x509.ObjectIdentifier]:
    if header is None or not header.strip():
        return {ExtendedKeyUsageOID.CLIENT_AUTH}
    if len(header) > MAX_EXT_KEY_USAGES_HEADER:
        raise _Refused(400, "the ExtKeyUsages header is too long")
    try:
        numbers = json.loads(header)
    except ValueError:
        raise _Refused(400, "the ExtKeyUsages header is not a JSON array") from None
    if not isinstance(numbers, list) or not all(type(n) is int for n in numbers):
        raise _Refused(400, "the ExtKeyUsages header must be a JSON array of integers")
    unknown = [n for n in numbers if n not in GO_EXT_KEY_USAGES]
    if unknown:
        raise _Refused(400, f"unsupported ExtKeyUsages {unknown}: only 1 (serverAuth) and "
                            "2 (clientAuth)")
    return {GO_EXT_KEY_USAGES[n] for n in numbers} or {ExtendedKeyUsageOID.CLIENT_AUTH}


async def _read_bounded(request: web.Request, limit: int) -> bytes:
    buf = bytearray()
    async for chunk in request.content.iter_any():
        buf += chunk
        if len(buf) > limit:
            raise _Refused(413, f"the CSR is larger than {limit} bytes")
    return bytes(buf)


def _parse_csr(body: bytes) -> x509.CertificateSigningRequest:
    if not body:
        raise _Refused(400, "the request has no body: send the CSR, DER-encoded")
    try:
        csr = x509.load_der_x509_csr(body)
        valid = csr.is_signature_valid
        key = csr.public_key()
    except (ValueError, TypeError):
        raise _Refused(400, "the body is not a DER certificate signing request") from None
    if not valid:
        raise _Refused(400, "the CSR's signature does not verify")
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise _Refused(400, f"the CSR's RSA key is shorter than {MIN_RSA_BITS} bits")
    elif not isinstance(key, ec.EllipticCurvePublicKey):
        raise _Refused(400, "the CSR's key is neither EC nor RSA")
    return csr
