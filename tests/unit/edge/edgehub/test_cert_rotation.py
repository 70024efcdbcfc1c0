"""Certificate rotation timing: deadline at a jittered 70-90 % of the lifetime, backoff from
2 s then a 32 s poll. Clock, randomness and sleep are injected: nothing here waits."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from pykubeedge.core.config import EdgeCoreConfig
from pykubeedge.core.errors import CertificateError
from pykubeedge.edge.edgehub.certificate import CertRotator, EdgeCertPaths, write_key_and_cert
from pykubeedge.transport import certs

START = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
LIFETIME = dt.timedelta(days=100)
pytestmark = pytest.mark.timeout(10)


class Stop(Exception):
    pass


def edge_config(tmp_path: Path, *, rotate: bool = True) -> EdgeCoreConfig:
    cfg = EdgeCoreConfig()
    hub = cfg.modules.edgeHub
    hub.tlsCaFile = str(tmp_path / "ca" / "rootCA.crt")
    hub.tlsCertFile = str(tmp_path / "certs" / "server.crt")
    hub.tlsPrivateKeyFile = str(tmp_path / "certs" / "server.key")
    hub.httpServer = "https://127.0.0.1:1"
    hub.rotateCertificates = rotate
    cfg.modules.edged.tailoredKubeletFlag.hostnameOverride = "edge-1"
    return cfg


def node_cert(ca: certs.KeyPair, start: dt.datetime = START,
              lifetime: dt.timedelta = LIFETIME) -> certs.KeyPair:
    key = certs.new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "system:node:edge-1")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(ca.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + lifetime)
            .sign(ca.key, hashes.SHA256()))
    return certs.KeyPair(cert, key)


@pytest.fixture(scope="module")
def ca() -> certs.KeyPair:
    return certs.new_ca("KubeEdge")


@pytest.mark.parametrize(("draw", "fraction"), [(0.0, 0.7), (0.5, 0.8), (1.0, 0.9)])
def test_deadline_is_70_to_90_percent_of_lifetime(tmp_path: Path, ca: certs.KeyPair,
                                                  draw: float, fraction: float) -> None:
    rotator = CertRotator(edge_config(tmp_path), rand=lambda: draw)
    deadline = rotator.rotation_deadline(node_cert(ca).cert)
    expected = START + LIFETIME * fraction
    assert deadline == pytest.approx(expected.timestamp(), abs=1e-3)


def test_deadline_jitter_stays_in_range(tmp_path: Path, ca: certs.KeyPair) -> None:
    import random
    rng = random.Random(7)
    rotator = CertRotator(edge_config(tmp_path), rand=rng.random)
    cert = node_cert(ca).cert
    start, total = START.timestamp(), LIFETIME.total_seconds()
    fractions = [(rotator.rotation_deadline(cert) - start) / total for _ in range(500)]
    assert all(0.7 <= f <= 0.9 for f in fractions)
    assert max(fractions) - min(fractions) > 0.15  # it really is spread, not constant


class ScriptedRotator(CertRotator):
    """rotate() fails ``failures`` times, then succeeds; every call is counted."""

    def __init__(self, *args: object, failures: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.failures = failures
        self.calls = 0

    async def rotate(self) -> x509.Certificate:
        self.calls += 1
        if self.calls <= self.failures:
            raise CertificateError("cloudcore unreachable")
        return self.current()


def scripted(tmp_path: Path, ca: certs.KeyPair, *, now: float, failures: int,
             stop_after: int, **kw: object) -> tuple[ScriptedRotator, list[float]]:
    pair = node_cert(ca)
    write_key_and_cert(EdgeCertPaths.from_config(edge_config(tmp_path)), pair.key, pair.cert)
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) >= stop_after:
            raise Stop

    rotator = ScriptedRotator(edge_config(tmp_path), clock=lambda: now, rand=lambda: 0.5,
                              sleep=fake_sleep, failures=failures, **kw)
    return rotator, sleeps


async def test_run_sleeps_until_deadline_then_backs_off(tmp_path: Path,
                                                        ca: certs.KeyPair) -> None:
    now = (START + dt.timedelta(days=10)).timestamp()
    deadline = (START + LIFETIME * 0.8).timestamp()
    rotated: list[str] = []

    async def on_rotated() -> None:
        rotated.append("reconnect")

    rotator, sleeps = scripted(tmp_path, ca, now=now, failures=2, stop_after=4,
                               on_rotated=on_rotated)
    with pytest.raises(Stop):
        await rotator.run()
    # wait for the deadline, two failures backed off 2 s and 4 s (+10 % x 0.5 jitter), success,
    # the reconnect callback, then the wait for the next deadline.
    assert sleeps == pytest.approx([deadline - now, 2.1, 4.2, deadline - now])
    assert rotator.calls == 3
    assert rotated == ["reconnect"]


async def test_backoff_then_poll_every_32s(tmp_path: Path, ca: certs.KeyPair) -> None:
    now = (START + LIFETIME * 0.95).timestamp()  # past the deadline: rotate at once
    rotator, sleeps = scripted(tmp_path, ca, now=now, failures=100, stop_after=7)
    with pytest.raises(Stop):
        await rotator.run()
    assert sleeps == pytest.approx([2.1, 4.2, 8.4, 16.8, 32.0, 32.0, 32.0])
    assert rotator.calls == 7


async def test_a_new_certificate_already_due_does_not_spin(tmp_path: Path,
                                                          ca: certs.KeyPair) -> None:
    # The clock stays past the deadline, as with a tiny edgeCertSigningDuration: after one
    # rotation the rotator waits a poll interval instead of rotating in a tight loop.
    seen: list[int] = []
    now = (START + LIFETIME * 0.95).timestamp()
    rotator, sleeps = scripted(tmp_path, ca, now=now, failures=0, stop_after=2,
                               on_rotated=lambda: seen.append(1))
    with pytest.raises(Stop):
        await rotator.run()
    assert sleeps == [32.0, 32.0]
    assert seen == [1, 1] and rotator.calls == 2


async def test_disabled_rotation_returns(tmp_path: Path) -> None:
    disabled = CertRotator(edge_config(tmp_path, rotate=False), sleep=pytest.fail)
    await disabled.run()  # returns at once, never sleeps
