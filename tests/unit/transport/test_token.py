"""The join token: KubeEdge's format, and a typed error for every way it can be bad."""

from __future__ import annotations

import base64
import hashlib
import json

import jwt
import pytest

from pykubeedge.core.errors import CertificateError, TokenError
from pykubeedge.transport import certs
from pykubeedge.transport.token import (
    ca_hash,
    check_ca,
    is_valid_node_name,
    make_token,
    node_common_name,
    split_token,
    verify_jwt,
)

NOW = 1_700_000_000.0


@pytest.fixture(scope="module")
def ca() -> certs.KeyPair:
    return certs.new_ca("KubeEdge")


def test_ca_hash_is_hex_sha256_of_der(ca: certs.KeyPair) -> None:
    assert ca_hash(ca.cert_der()) == hashlib.sha256(ca.cert_der()).hexdigest()
    assert len(ca_hash(b"")) == 64


def test_token_format_and_claims(ca: certs.KeyPair) -> None:
    token = make_token(ca.cert_der(), ca.key_der(), refresh_hours=12, now=NOW)
    hash_part, jwt_part = split_token(token)
    assert hash_part == ca_hash(ca.cert_der())
    assert token == f"{hash_part}.{jwt_part}" and token.count(".") == 3
    header = json.loads(base64.urlsafe_b64decode(jwt_part.split(".")[0] + "=="))
    assert header["alg"] == "HS256"
    claims = verify_jwt(jwt_part, ca.key_der(), now=NOW)
    assert claims == {"exp": int(NOW + 2 * 12 * 3600)}
    # The HMAC secret is the CA private key DER, as upstream: PyJWT agrees independently.
    assert jwt.decode(jwt_part, ca.key_der(), algorithms=["HS256"],
                      options={"verify_exp": False})["exp"] == claims["exp"]


def test_token_valid_until_just_before_expiry(ca: certs.KeyPair) -> None:
    _, jwt_part = split_token(make_token(ca.cert_der(), ca.key_der(), 1, now=NOW))
    verify_jwt(jwt_part, ca.key_der(), now=NOW + 2 * 3600 - 1)
    with pytest.raises(TokenError, match="expired"):
        verify_jwt(jwt_part, ca.key_der(), now=NOW + 2 * 3600)


def test_expired_token(ca: certs.KeyPair) -> None:
    _, jwt_part = split_token(make_token(ca.cert_der(), ca.key_der(), 12, now=NOW - 3 * 86400))
    with pytest.raises(TokenError, match=r"expired \d+s ago"):
        verify_jwt(jwt_part, ca.key_der(), now=NOW)


def test_forged_token_signed_with_another_key(ca: certs.KeyPair) -> None:
    other = certs.new_ca("other")
    # The right CA hash, but a JWT keyed with someone else's key.
    _, jwt_part = split_token(make_token(ca.cert_der(), other.key_der(), 12, now=NOW))
    with pytest.raises(TokenError, match="signature does not match"):
        verify_jwt(jwt_part, ca.key_der(), now=NOW)


def test_token_without_exp_or_with_other_algorithm(ca: certs.KeyPair) -> None:
    no_exp = jwt.encode({"sub": "x"}, ca.key_der(), algorithm="HS256")
    with pytest.raises(TokenError, match="no expiry"):
        verify_jwt(no_exp, ca.key_der(), now=NOW)
    unsigned = jwt.encode({"exp": NOW + 100}, None, algorithm="none")
    with pytest.raises(TokenError):
        verify_jwt(unsigned, ca.key_der(), now=NOW)
    string_exp = jwt.encode({"exp": "soon"}, ca.key_der(), algorithm="HS256")
    with pytest.raises(TokenError):
        verify_jwt(string_exp, ca.key_der(), now=NOW)


@pytest.mark.parametrize("bad", [
    "", "   ", "nodots", "a.b.c", "a.b.c.d.e", "." * 3,
    "g" * 64 + ".a.b.c",           # not hex
    "a" * 63 + ".a.b.c",           # too short a hash
    "a" * 64 + ".a.b." + "c" * 5000,
])
def test_malformed_tokens(bad: str) -> None:
    with pytest.raises(TokenError):
        split_token(bad)


def test_verify_garbage_jwt(ca: certs.KeyPair) -> None:
    for bad in ("", "a.b.c", "x" * 5000):
        with pytest.raises(TokenError):
            verify_jwt(bad, ca.key_der(), now=NOW)


def test_check_ca(ca: certs.KeyPair) -> None:
    token = make_token(ca.cert_der(), ca.key_der(), 12, now=NOW)
    assert check_ca(token, ca.cert_der()) == split_token(token)[1]
    other = certs.new_ca("KubeEdge")
    with pytest.raises(CertificateError, match="failed to validate CA certificate: hash mismatch"):
        check_ca(token, other.cert_der())


def test_node_identity() -> None:
    assert node_common_name("edge-1") == "system:node:edge-1"
    assert is_valid_node_name("edge-1.example.com")
    for bad in ("", "Edge", "edge_1", "-edge", "edge-", "a..b", "a" * 254, "edge/1"):
        assert not is_valid_node_name(bad), bad
