"""Certificates and join against the real control plane, over real TLS on loopback.

cloudcore's CA and server certificate in Secrets (one CA however many replicas race), the join
token in kubeedge/tokensecret and `keadm gettoken`, the HTTPS certificate service, the edge
bootstrap and its refusals (CA hash mismatch, expired, forged, wrong CN), rotation without a
token, and `keadm join` end to end.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import logging
import stat
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pykubeedge.cloud.cloudhub.certs import (
    CA_SECRET,
    CLOUDCORE_SECRET,
    KUBEEDGE_NAMESPACE,
    TOKEN_SECRET,
    CloudHubPKI,
    TokenManager,
    ensure_ca_and_server_cert,
    new_server_cert,
)
from pykubeedge.cloud.cloudhub.httpserver import CertHTTPServer
from pykubeedge.core.config import CloudHub, EdgeCoreConfig
from pykubeedge.core.errors import CertificateError, ConfigError, NotFound
from pykubeedge.devcluster.cluster import DevCluster, free_port
from pykubeedge.edge.edgehub.certificate import CertRotator, bootstrap, make_csr
from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.resources import NAMESPACES, SECRETS, Resource
from pykubeedge.transport import certs, tls
from pykubeedge.transport.token import make_token, split_token, verify_jwt

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def hub_config(tmp_path: Path, *, ips: tuple[str, ...] = ("127.0.0.1",),
               dns: tuple[str, ...] = ("cloudcore.test",)) -> CloudHub:
    """Certificate files that do not exist: the PKI comes from Secrets."""
    missing = tmp_path / "cloud-nothing-here"
    return CloudHub(tlsCAFile=str(missing / "rootCA.crt"), tlsCAKeyFile=str(missing / "rootCA.key"),
                    tlsCertFile=str(missing / "server.crt"),
                    tlsPrivateKeyFile=str(missing / "server.key"),
                    advertiseAddress=list(ips), dnsNames=list(dns), edgeCertSigningDuration=30)


def edge_config(root: Path, port: int, token: str, node: str = "edge-1") -> EdgeCoreConfig:
    cfg = EdgeCoreConfig()
    hub = cfg.modules.edgeHub
    hub.httpServer = f"https://127.0.0.1:{port}"
    hub.token = token
    hub.tlsCaFile = str(root / "ca" / "rootCA.crt")
    hub.tlsCertFile = str(root / "certs" / "server.crt")
    hub.tlsPrivateKeyFile = str(root / "certs" / "server.key")
    cfg.modules.edged.tailoredKubeletFlag.hostnameOverride = node
    return cfg


async def secret_data(kube: KubeClient, ns: str, name: str) -> dict[str, bytes]:
    obj = await kube.get(SECRETS, name, namespace=ns)
    return {k: base64.b64decode(v) for k, v in obj["data"].items()}


# Small synchronous file helpers: local files in a temporary directory.
def mode(path: Path | str) -> int:
    return stat.S_IMODE(Path(path).stat().st_mode)


def exists(path: Path | str) -> bool:
    return Path(path).exists()


def read(path: Path | str) -> bytes:
    return Path(path).read_bytes()


def remove(path: Path | str) -> None:
    Path(path).unlink()


def listdir(path: Path) -> list[Path]:
    return list(path.iterdir())


def write_ca_files(cfg: CloudHub, ca: certs.KeyPair) -> None:
    Path(cfg.tlsCAFile).parent.mkdir(parents=True)
    Path(cfg.tlsCAFile).write_bytes(ca.cert_pem())
    Path(cfg.tlsCAKeyFile).write_bytes(ca.key_pem())


def common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


async def keadm(*args: str, timeout: float = 120) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from pykubeedge.keadm.cli import main; main()", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def pki(kube: KubeClient, ns: str, tmp_path: Path) -> CloudHubPKI:
    return await ensure_ca_and_server_cert(kube, hub_config(tmp_path), namespace=ns)


@pytest.fixture
async def server(pki: CloudHubPKI, tmp_path: Path) -> AsyncIterator[CertHTTPServer]:
    async with CertHTTPServer(pki, hub_config(tmp_path), host="127.0.0.1",
                              port=free_port()) as srv:
        yield srv


@pytest.fixture
def token(pki: CloudHubPKI) -> str:
    return make_token(pki.ca_der, pki.ca_key_der, refresh_hours=12)


# -- cloudcore's PKI --------------------------------------------------------------------------


async def test_pki_is_created_in_secrets_and_reloaded(kube: KubeClient, ns: str,
                                                      tmp_path: Path) -> None:
    first = await ensure_ca_and_server_cert(kube, hub_config(tmp_path), namespace=ns)
    assert first.ca_source == "generated"
    ca = await secret_data(kube, ns, CA_SECRET)
    assert ca == {"cadata": first.ca_der, "cakeydata": first.ca_key_der}
    server = await secret_data(kube, ns, CLOUDCORE_SECRET)
    assert server == {"cloudcoredata": first.server.cert_der(),
                      "cloudcorekeydata": first.server.key_der()}

    cert = first.server.cert
    assert common_name(cert) == "KubeEdge"
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] \
        == ["KubeEdge"]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["cloudcore.test"]
    cert.verify_directly_issued_by(first.ca.cert)
    assert first.ca.cert.not_valid_after_utc.year >= dt.datetime.now(dt.UTC).year + 99

    again = await ensure_ca_and_server_cert(kube, hub_config(tmp_path), namespace=ns)
    assert again.ca_source == "secret"
    assert again.ca_der == first.ca_der and again.server.cert_der() == first.server.cert_der()


async def test_the_namespace_is_created_when_missing(kube: KubeClient, tmp_path: Path) -> None:
    ns = f"ke-{uuid.uuid4().hex[:10]}"
    with pytest.raises(NotFound):
        await kube.get(NAMESPACES, ns)
    pki = await ensure_ca_and_server_cert(kube, hub_config(tmp_path), namespace=ns)
    await kube.get(NAMESPACES, ns)
    assert (await secret_data(kube, ns, CA_SECRET))["cadata"] == pki.ca_der


class RacingKube:
    """Every replica sees 'not found' before any of them creates: the race of upstream #5922,
    made certain rather than left to scheduling luck."""

    def __init__(self, kube: KubeClient, barrier: asyncio.Barrier) -> None:
        self._kube = kube
        self._barrier = barrier

    async def get(self, res: Resource, name: str, **kw: Any) -> dict[str, Any]:
        try:
            return await self._kube.get(res, name, **kw)
        except NotFound:
            if res is SECRETS:
                await self._barrier.wait()
            raise

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._kube, attr)


async def test_racing_replicas_end_with_one_ca(kube: KubeClient, ns: str, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    replicas = 4
    barrier = asyncio.Barrier(replicas)
    caplog.set_level(logging.INFO, logger="pykubeedge.cloud.cloudhub.certs")
    results = await asyncio.gather(*(
        ensure_ca_and_server_cert(RacingKube(kube, barrier), hub_config(tmp_path),  # type: ignore[arg-type]
                                  namespace=ns)
        for _ in range(replicas)))
    assert len({r.ca_der for r in results}) == 1
    assert len({r.server.cert_der() for r in results}) == 1
    stored = await secret_data(kube, ns, CA_SECRET)
    assert stored["cadata"] == results[0].ca_der
    lost = [r for r in caplog.records if "another cloudcore created secret" in r.getMessage()]
    assert len(lost) == 2 * (replicas - 1)  # CA and server certificate, each lost by 3


async def test_concurrent_replicas_without_help(kube: KubeClient, ns: str,
                                                tmp_path: Path) -> None:
    results = await asyncio.gather(*(
        ensure_ca_and_server_cert(kube, hub_config(tmp_path), namespace=ns) for _ in range(5)))
    assert len({r.ca_der for r in results}) == 1


async def test_pki_from_files_is_stored_in_the_secret(kube: KubeClient, ns: str,
                                                      tmp_path: Path) -> None:
    ca = certs.new_ca("my-ca")
    cfg = hub_config(tmp_path)
    write_ca_files(cfg, ca)
    pki = await ensure_ca_and_server_cert(kube, cfg, namespace=ns)
    assert pki.ca_source == "files" and pki.ca_der == ca.cert_der()
    assert (await secret_data(kube, ns, CA_SECRET))["cadata"] == ca.cert_der()
    pki.server.cert.verify_directly_issued_by(ca.cert)

    remove(cfg.tlsCAKeyFile)
    with pytest.raises(ConfigError, match=r"exists but .* does not"):
        await ensure_ca_and_server_cert(kube, cfg, namespace=ns)


async def test_server_cert_missing_a_new_address_is_reissued(kube: KubeClient, ns: str,
                                                             tmp_path: Path) -> None:
    old = await ensure_ca_and_server_cert(kube, hub_config(tmp_path), namespace=ns)
    # advertiseAddress gained an IP (upstream #2905/#4418: edges then fail TLS verification).
    new = await ensure_ca_and_server_cert(kube, hub_config(tmp_path, ips=("127.0.0.1", "10.1.2.3")),
                                          namespace=ns)
    assert new.ca_der == old.ca_der and new.server.cert_der() != old.server.cert_der()
    san = new.server.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(i) for i in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.1.2.3"}
    stored = await secret_data(kube, ns, CLOUDCORE_SECRET)
    assert stored["cloudcoredata"] == new.server.cert_der()
    assert new_server_cert(new.ca, ["127.0.0.1"], []).cert.issuer == new.ca.cert.subject


# -- the token and `keadm gettoken` -----------------------------------------------------------


async def test_token_secret_refresh_and_gettoken(kube: KubeClient, cluster: DevCluster,
                                                 tmp_path: Path) -> None:
    with_kubeconfig = ("gettoken", "--kube-config", str(cluster.kubeconfig))
    with contextlib.suppress(NotFound):
        await kube.delete(SECRETS, TOKEN_SECRET, namespace=KUBEEDGE_NAMESPACE)
    pki = await ensure_ca_and_server_cert(kube, hub_config(tmp_path))
    code, out, err = await keadm(*with_kubeconfig)
    assert code == 1 and out == ""
    assert err.strip() == ("keadm gettoken: error: cloudcore has not created a token yet "
                           "(secret kubeedge/tokensecret not found)")

    now = [time.time()]
    sleeps: list[float] = []

    class Stop(Exception):
        pass

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds
        if len(sleeps) == 2:
            raise Stop

    manager = TokenManager(kube, pki, refresh_hours=12, clock=lambda: now[0], sleep=fake_sleep)
    first = await manager.refresh()
    code, out, err = await keadm(*with_kubeconfig)
    assert (code, err) == (0, "") and out.strip() == first
    _, jwt_part = split_token(out.strip())
    assert verify_jwt(jwt_part, pki.ca_key_der)["exp"] == int(now[0] + 24 * 3600)

    with pytest.raises(Stop):
        await manager.run()  # token already fresh: sleep 12 h, refresh, sleep 12 h
    assert sleeps == [12 * 3600, 12 * 3600]
    stored = (await secret_data(kube, KUBEEDGE_NAMESPACE, TOKEN_SECRET))["tokendata"].decode()
    assert stored == manager.token != first
    assert verify_jwt(split_token(stored)[1], pki.ca_key_der, now=now[0])


async def test_gettoken_errors_are_one_line(tmp_path: Path) -> None:
    code, _, err = await keadm("gettoken", "--kube-config", str(tmp_path / "missing"))
    assert code == 1 and err.count("\n") == 1 and "does not exist" in err
    unreachable = tmp_path / "kubeconfig"
    unreachable.write_text(yaml.safe_dump({
        "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}],
        "users": [{"name": "u", "user": {"token": "x"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}))
    code, _, err = await keadm("gettoken", "--kube-config", str(unreachable))
    assert code == 1 and err.count("\n") == 1 and "cannot reach the API server" in err


# -- the edge: join, refusals, rotation -------------------------------------------------------


async def test_join_with_a_fresh_token(server: CertHTTPServer, pki: CloudHubPKI, token: str,
                                       tmp_path: Path) -> None:
    cfg = edge_config(tmp_path / "edge", server.port, token)
    paths = await bootstrap(cfg)
    assert paths.cert == Path(cfg.modules.edgeHub.tlsCertFile)
    assert mode(paths.cert) == 0o600 and mode(paths.key) == 0o600
    assert mode(paths.cert.parent) == 0o700 and mode(paths.ca.parent) == 0o755
    assert paths.key.read_bytes().startswith(b"-----BEGIN EC PRIVATE KEY-----")
    assert paths.ca.read_bytes() == pki.ca.cert_pem()

    cert = x509.load_pem_x509_certificate(paths.cert.read_bytes())
    cert.verify_directly_issued_by(pki.ca.cert)
    assert common_name(cert) == "system:node:edge-1"
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] \
        == ["system:nodes"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=30) <= lifetime <= dt.timedelta(days=30, minutes=10)

    # The certificate works for mutual TLS with the CA it came with.
    tls.client_context(paths.ca.read_bytes(), paths.cert.read_bytes(), paths.key.read_bytes())

    # A good certificate is kept: bootstrap again is a no-op, even with the token gone.
    cfg.modules.edgeHub.token = ""
    before = paths.cert.read_bytes()
    await bootstrap(cfg)
    assert paths.cert.read_bytes() == before


async def test_ca_hash_mismatch_is_refused(server: CertHTTPServer, pki: CloudHubPKI,
                                           tmp_path: Path) -> None:
    other = certs.new_ca("KubeEdge")  # a man in the middle's CA
    _, jwt_part = split_token(make_token(pki.ca_der, pki.ca_key_der, 12))
    token = f"{split_token(make_token(other.cert_der(), other.key_der(), 12))[0]}.{jwt_part}"
    cfg = edge_config(tmp_path / "edge", server.port, token)
    with pytest.raises(CertificateError,
                       match="failed to validate CA certificate: hash mismatch"):
        await bootstrap(cfg)
    assert not exists(cfg.modules.edgeHub.tlsCaFile)
    assert not exists(cfg.modules.edgeHub.tlsCertFile)


async def test_expired_token_is_refused(server: CertHTTPServer, pki: CloudHubPKI,
                                        tmp_path: Path, caplog: pytest.LogCaptureFixture
                                        ) -> None:
    token = make_token(pki.ca_der, pki.ca_key_der, 12, now=time.time() - 3 * 86400)
    cfg = edge_config(tmp_path / "edge", server.port, token)
    with pytest.raises(CertificateError, match=r"HTTP 401.*invalid token: the token expired"):
        await bootstrap(cfg)
    assert not exists(cfg.modules.edgeHub.tlsCertFile)
    assert any("refused an edge certificate" in r.getMessage() for r in caplog.records)


async def test_forged_token_is_refused(server: CertHTTPServer, pki: CloudHubPKI,
                                       tmp_path: Path) -> None:
    forger = certs.new_ca("KubeEdge")
    # The real CA's hash (public), but a JWT signed with a key that is not the CA's.
    token = make_token(pki.ca_der, forger.key_der(), 12)
    cfg = edge_config(tmp_path / "edge", server.port, token)
    with pytest.raises(CertificateError, match=r"HTTP 401.*signature does not match"):
        await bootstrap(cfg)
    assert not exists(cfg.modules.edgeHub.tlsCertFile)


async def test_bad_requests_are_refused_with_clear_errors(server: CertHTTPServer,
                                                          pki: CloudHubPKI, token: str) -> None:
    jwt_part = split_token(token)[1]
    _, csr_edge1 = make_csr("edge-1")
    _, csr_other = make_csr("other")
    auth = {"Authorization": f"Bearer {jwt_part}"}
    cases: list[tuple[dict[str, str], bytes, int, str]] = [
        ({**auth, "NodeName": "edge-1"}, csr_other, 403,
         "the CSR is for CN 'system:node:other', but node 'edge-1' may only get CN "
         "'system:node:edge-1'"),
        ({"NodeName": "edge-1"}, csr_edge1, 401, "no token"),
        ({"NodeName": "edge-1", "Authorization": "Bearer garbage"}, csr_edge1, 401,
         "invalid token: the token is malformed"),
        ({**auth, "NodeName": "edge-1"}, b"not a csr", 400,
         "the body is not a DER certificate signing request"),
        ({**auth, "NodeName": "edge-1"}, b"", 400, "the request has no body"),
        ({**auth, "NodeName": "edge-1"}, b"x" * 20_000, 413, "the CSR is larger than"),
        ({**auth}, csr_edge1, 400, "the NodeName header is missing"),
        ({**auth, "NodeName": "Edge_1"}, csr_edge1, 400, "is not a valid node name"),
        ({**auth, "NodeName": "edge-1", "ExtKeyUsages": "[9]"}, csr_edge1, 400,
         "unsupported ExtKeyUsages [9]"),
    ]
    ctx = tls.client_context(pki.ca.cert_pem())
    url = f"https://127.0.0.1:{server.port}/edge.crt"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        for headers, body, status, text in cases:
            async with http.get(url, headers=headers, data=body, ssl=ctx) as resp:
                got = await resp.text()
                assert (resp.status, text in got) == (status, True), (headers, got)
                assert got.count("\n") == 1  # one line
        # /ca.crt is the CA's DER; a valid request with serverAuth asked for gets both usages.
        async with http.get(f"https://127.0.0.1:{server.port}/ca.crt", ssl=False) as resp:
            assert await resp.read() == pki.ca_der
        async with http.get(url, data=csr_edge1, ssl=ctx, headers={
                **auth, "NodeName": "edge-1", "ExtKeyUsages": "[1, 2]"}) as resp:
            assert resp.status == 200
            cert = x509.load_der_x509_certificate(await resp.read())
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}


async def test_rotation_presents_the_current_certificate(server: CertHTTPServer, token: str,
                                                         tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    cfg = edge_config(tmp_path / "edge", server.port, token)
    paths = await bootstrap(cfg)
    old = x509.load_pem_x509_certificate(paths.cert.read_bytes())
    old_key = paths.key.read_bytes()
    cfg.modules.edgeHub.token = ""  # as after `keadm join`: rotation must not need it
    caplog.set_level(logging.INFO, logger="pykubeedge.cloud.cloudhub.httpserver")
    new = await CertRotator(cfg).rotate()
    assert new.serial_number != old.serial_number and common_name(new) == "system:node:edge-1"
    assert x509.load_pem_x509_certificate(paths.cert.read_bytes()) == new
    assert paths.key.read_bytes() != old_key
    assert mode(paths.cert) == 0o600 and mode(paths.key) == 0o600
    assert any("rotation with its current certificate" in r.getMessage()
               for r in caplog.records)


async def test_rotation_with_another_nodes_certificate_is_refused(
        server: CertHTTPServer, token: str, tmp_path: Path) -> None:
    edge1 = edge_config(tmp_path / "edge", server.port, token, node="edge-1")
    await bootstrap(edge1)
    # edge-2 shows edge-1's certificate and asks for its own: no.
    edge2 = edge_config(tmp_path / "edge", server.port, "", node="edge-2")
    with pytest.raises(CertificateError,
                       match=r"HTTP 403.*client certificate is for CN 'system:node:edge-1', "
                             r"not 'system:node:edge-2'"):
        await CertRotator(edge2).rotate()


# -- keadm join end to end --------------------------------------------------------------------


async def test_keadm_join_end_to_end(server: CertHTTPServer, pki: CloudHubPKI, token: str,
                                     tmp_path: Path) -> None:
    config_dir = tmp_path / "kubeedge"
    code, out, err = await keadm(
        "join", "--cloudcore-ipport=127.0.0.1:10000", f"--token={token}",
        "--edgenode-name=edge-join", f"--certport={server.port}",
        f"--config-dir={config_dir}", "--labels=zone=a,tier=edge", "--no-start")
    assert code == 0, err
    config_file = config_dir / "config" / "edgecore.yaml"
    assert err.strip() == (f"node edge-join joined: config {config_file}, certificate "
                           f"{config_dir / 'certs' / 'server.crt'}")
    assert mode(config_file) == 0o600
    doc = yaml.safe_load(config_file.read_text())
    assert doc["apiVersion"] == "edgecore.config.kubeedge.io/v1alpha2"
    assert doc["kind"] == "EdgeCore"
    hub = doc["modules"]["edgeHub"]
    assert hub["websocket"]["server"] == "127.0.0.1:10000"
    assert hub["httpServer"] == f"https://127.0.0.1:{server.port}"
    assert hub["token"] == ""  # cleared once the certificate is there
    assert hub["tlsCaFile"] == str(config_dir / "ca" / "rootCA.crt")
    assert hub["tlsCertFile"] == str(config_dir / "certs" / "server.crt")
    assert hub["tlsPrivateKeyFile"] == str(config_dir / "certs" / "server.key")
    flags = doc["modules"]["edged"]["tailoredKubeletFlag"]
    assert flags["hostnameOverride"] == "edge-join"
    assert flags["nodeLabels"] == {"zone": "a", "tier": "edge"}
    cert = x509.load_pem_x509_certificate(read(hub["tlsCertFile"]))
    assert common_name(cert) == "system:node:edge-join"
    assert mode(hub["tlsCertFile"]) == 0o600 and mode(hub["tlsPrivateKeyFile"]) == 0o600

    # Joining again keeps the certificate; --print-unit prints a systemd unit.
    code, out, err = await keadm(
        "join", "-e", "127.0.0.1:10000", "-t", token, "-i", "edge-join", "-s", str(server.port),
        "--config-dir", str(config_dir), "--print-unit")
    assert code == 0, err
    assert "[Service]" in out and f"--config {config_file}" in out and "ExecStart=" in out
    assert x509.load_pem_x509_certificate(read(hub["tlsCertFile"])) == cert

    code, _, err = await keadm("reset", f"--config-dir={config_dir}", "--force")
    assert code == 0, err
    assert not config_file.exists() and not exists(hub["tlsCertFile"])
    assert not exists(hub["tlsPrivateKeyFile"])


async def test_keadm_join_refused_by_cloudcore_is_one_line(server: CertHTTPServer,
                                                           pki: CloudHubPKI,
                                                           tmp_path: Path) -> None:
    expired = make_token(pki.ca_der, pki.ca_key_der, 1, now=time.time() - 86400)
    code, _, err = await keadm("join", "-e", "127.0.0.1:10000", "-t", expired, "-i", "edge-x",
                               "-s", str(server.port), "--config-dir", str(tmp_path / "ke"),
                               "--no-start")
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("keadm join: error: cloudcore refused the certificate request")
    assert "expired" in err


@pytest.mark.parametrize(("args", "message"), [
    (["-e", "127.0.0.1", "-t", "x", "-i", "n"], "--cloudcore-ipport '127.0.0.1' must be HOST:PORT"),
    (["-e", "127.0.0.1:99999", "-t", "x", "-i", "n"], "must be HOST:PORT"),
    (["-e", "bad host:1", "-t", "x", "-i", "n"], "is neither an IP address nor a host name"),
    (["-e", "127.0.0.1:10000", "-t", "", "-i", "n"], "--token is empty"),
    (["-e", "127.0.0.1:10000", "-t", "abc", "-i", "n"], "the token is malformed"),
    (["-e", "127.0.0.1:10000", "-t", "a" * 64 + ".b.c.d", "-i", "Edge_1"],
     "--edgenode-name 'Edge_1' is not a valid node name"),
    (["-e", "127.0.0.1:10000", "-t", "a" * 64 + ".b.c.d", "-i", "n", "-l", "novalue"],
     "--labels: 'novalue' is not a valid key=value label"),
])
async def test_keadm_join_bad_arguments(args: list[str], message: str, tmp_path: Path) -> None:
    code, out, err = await keadm("join", *args, "--config-dir", str(tmp_path), "--no-start")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("keadm join: error: ") and message in err
    assert not listdir(tmp_path)  # nothing written for bad arguments
