"""Edge certificate bootstrap without a network: when a new certificate is needed, the CSR's
subject, file modes, and clear errors before any request is made."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from pykubeedge.core.config import EdgeCoreConfig
from pykubeedge.core.errors import CertificateError, ConfigError, TokenError
from pykubeedge.edge.edgehub.certificate import (
    CertRotator,
    EdgeCertPaths,
    bootstrap,
    bootstrap_reason,
    make_csr,
    write_key_and_cert,
)
from pykubeedge.transport import certs

pytestmark = pytest.mark.timeout(10)


def edge_config(root: Path, token: str = "", node: str = "edge-1") -> EdgeCoreConfig:
    cfg = EdgeCoreConfig()
    hub = cfg.modules.edgeHub
    hub.tlsCaFile = str(root / "ca" / "rootCA.crt")
    hub.tlsCertFile = str(root / "certs" / "server.crt")
    hub.tlsPrivateKeyFile = str(root / "certs" / "server.key")
    hub.httpServer = "https://127.0.0.1:1"  # nothing listens: tests here never get that far
    hub.token = token
    cfg.modules.edged.tailoredKubeletFlag.hostnameOverride = node
    return cfg


@pytest.fixture(scope="module")
def ca() -> certs.KeyPair:
    return certs.new_ca("KubeEdge")


def install(root: Path, ca: certs.KeyPair, pair: certs.KeyPair) -> EdgeCertPaths:
    paths = EdgeCertPaths.from_config(edge_config(root))
    paths.ca.parent.mkdir(parents=True)
    paths.ca.write_bytes(ca.cert_pem())
    write_key_and_cert(paths, pair.key, pair.cert)
    return paths


def test_csr_subject_is_upstreams() -> None:
    key, der = make_csr("edge-1")
    csr = x509.load_der_x509_csr(der)
    assert csr.is_signature_valid
    attrs = {a.oid: a.value for a in csr.subject}
    assert attrs == {NameOID.COUNTRY_NAME: "CN", NameOID.ORGANIZATION_NAME: "system:nodes",
                     NameOID.LOCALITY_NAME: "Hangzhou", NameOID.STATE_OR_PROVINCE_NAME: "Zhejiang",
                     NameOID.COMMON_NAME: "system:node:edge-1"}
    assert csr.public_key() == key.public_key()


def test_files_are_private(tmp_path: Path, ca: certs.KeyPair) -> None:
    paths = install(tmp_path / "deep" / "er", ca, certs.issue(ca, "system:node:edge-1"))
    assert stat.S_IMODE(paths.cert.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.cert.parent.stat().st_mode) == 0o700
    assert paths.key.read_bytes().startswith(b"-----BEGIN EC PRIVATE KEY-----")
    assert not [p for p in paths.cert.parent.iterdir() if p.name.endswith(".tmp")]


def test_bootstrap_reason(tmp_path: Path, ca: certs.KeyPair) -> None:
    paths = EdgeCertPaths.from_config(edge_config(tmp_path))
    assert "no CA certificate" in (bootstrap_reason(paths, "edge-1") or "")

    good = certs.issue(ca, "system:node:edge-1", days=10)
    install(tmp_path, ca, good)
    assert bootstrap_reason(paths, "edge-1") is None
    assert "not 'system:node:edge-2'" in (bootstrap_reason(paths, "edge-2") or "")
    later = good.cert.not_valid_after_utc.timestamp() + 1
    assert "expired" in (bootstrap_reason(paths, "edge-1", now=later) or "")

    # A key that is not the certificate's.
    write_key_and_cert(paths, certs.new_key(), good.cert)
    assert "does not belong" in (bootstrap_reason(paths, "edge-1") or "")
    paths.cert.write_bytes(b"garbage")
    assert "not an X.509 certificate" in (bootstrap_reason(paths, "edge-1") or "")
    paths.key.unlink()
    assert "no certificate and key" in (bootstrap_reason(paths, "edge-1") or "")


async def test_bootstrap_is_a_no_op_with_a_good_certificate(tmp_path: Path,
                                                            ca: certs.KeyPair) -> None:
    install(tmp_path, ca, certs.issue(ca, "system:node:edge-1"))
    paths = await bootstrap(edge_config(tmp_path))  # no server listens: no request was made
    assert paths.cert == tmp_path / "certs" / "server.crt"


async def test_bootstrap_errors_before_any_request(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match=r"token is empty.*keadm gettoken"):
        await bootstrap(edge_config(tmp_path))
    with pytest.raises(TokenError, match="malformed"):
        await bootstrap(edge_config(tmp_path, token="not-a-token"))
    with pytest.raises(ConfigError, match="not valid"):
        await bootstrap(edge_config(tmp_path, node="Bad_Name"))
    cfg = edge_config(tmp_path, token="a" * 64 + ".b.c.d")
    cfg.modules.edgeHub.httpServer = "http://127.0.0.1:10002"
    with pytest.raises(ConfigError, match="must be https"):
        await bootstrap(cfg)


async def test_unreachable_server_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match=r"cannot get the CA from https://127\.0\.0\.1:1"):
        await bootstrap(edge_config(tmp_path, token="a" * 64 + ".b.c.d"), timeout=5)


def test_rotator_needs_a_valid_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        CertRotator(edge_config(tmp_path, node="-bad"))
