"""Join credentials (sans-IO): the edge join token and the node identity it buys.

KubeEdge's token is ``hex(sha256(CA DER)) + "." + JWT``. The JWT is HS256 with the CA private
key (SEC1 DER) as the HMAC secret and one claim, ``exp`` = now + 2 x tokenRefreshDuration, so a
token read at any time stays valid for at least one refresh period. The hash prefix lets a new
edge check the CA it downloads over an unverified connection; the JWT part is what it shows
cloudcore to get its certificate signed.

    >>> token = make_token(ca.cert_der(), ca.key_der(), refresh_hours=12)
    >>> hash_part, jwt_part = split_token(token)
    >>> verify_jwt(jwt_part, ca.key_der())["exp"] > time.time()
    True
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from typing import Any

import jwt

from pykubeedge.core.errors import CertificateError, TokenError

# A real token is ~64 + 1 + ~130 characters; anything much longer is not one.
MAX_TOKEN_LENGTH = 4096
HMAC_ALGORITHMS = ["HS256", "HS384", "HS512"]  # upstream accepts any HMAC method
NODE_CN_PREFIX = "system:node:"
NODES_ORGANIZATION = "system:nodes"

_HASH_RE = re.compile(r"^[0-9a-f]{64}$")
_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_RE = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")


def ca_hash(ca_der: bytes) -> str:
    """The hex sha256 of the CA certificate's DER bytes: ``ca_hash(ca.cert_der())``."""
    return hashlib.sha256(ca_der).hexdigest()


def make_token(ca_der: bytes, ca_key_der: bytes, refresh_hours: float,
               now: float | None = None) -> str:
    """A join token valid for ``2 * refresh_hours`` from ``now`` (epoch seconds).

        token = make_token(pki.ca_der, pki.ca_key_der, refresh_hours=12)
    """
    if refresh_hours <= 0:
        raise ValueError(f"refresh_hours must be positive, not {refresh_hours}")
    issued = time.time() if now is None else now
    exp = int(issued + 2 * refresh_hours * 3600)
    signed = jwt.encode({"exp": exp}, ca_key_der, algorithm="HS256")
    return f"{ca_hash(ca_der)}.{signed}"


def split_token(token: str) -> tuple[str, str]:
    """``(ca_hash, jwt)`` of a join token; TokenError names what is wrong with a bad one.

        hash_part, jwt_part = split_token(token)
    """
    token = token.strip()
    if not token:
        raise TokenError("the token is empty")
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError(f"the token is {len(token)} characters long, more than a token can be")
    parts = token.split(".")
    if len(parts) != 4 or not all(parts):
        raise TokenError("the token is malformed: expected <ca-hash>.<header>.<claims>.<signature>"
                         " (as printed by `keadm gettoken`)")
    if not _HASH_RE.match(parts[0]):
        raise TokenError("the token is malformed: its first part is not a hex sha256 CA hash")
    return parts[0], ".".join(parts[1:])


def check_ca(token: str, ca_der: bytes) -> str:
    """Check a downloaded CA against the token's hash; return the JWT part.

    Raises CertificateError on a mismatch (the CA is not the one the token was made for), and
    TokenError when the token itself is malformed.
    """
    expected, jwt_part = split_token(token)
    actual = ca_hash(ca_der)
    if not hmac.compare_digest(expected, actual):
        raise CertificateError("failed to validate CA certificate: hash mismatch (the token "
                               f"expects CA {expected[:12]}..., the server sent {actual[:12]}...)")
    return jwt_part


def verify_jwt(token_jwt: str, ca_key_der: bytes, *, now: float | None = None) -> dict[str, Any]:
    """Verify the JWT part of a token against the CA key; return its claims.

    Raises TokenError for a malformed, forged (other key) or expired token.

        claims = verify_jwt(jwt_part, pki.ca_key_der)
    """
    if not token_jwt or len(token_jwt) > MAX_TOKEN_LENGTH:
        raise TokenError("the token is empty or too long")
    try:
        # exp is checked below against the injectable clock, so tests need no sleeping.
        claims = jwt.decode(token_jwt, ca_key_der, algorithms=HMAC_ALGORITHMS,
                            options={"require": ["exp"], "verify_exp": False})
    except jwt.InvalidSignatureError:
        raise TokenError("the token's signature does not match this cloudcore's CA key "
                         "(forged, or issued by another cloudcore)") from None
    except jwt.InvalidAlgorithmError:
        raise TokenError("the token is not HMAC-signed") from None
    except jwt.MissingRequiredClaimError:
        raise TokenError("the token has no expiry (exp) claim") from None
    except jwt.PyJWTError as exc:
        raise TokenError(f"the token is malformed: {exc}") from None
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise TokenError("the token's expiry (exp) claim is not a number")
    current = time.time() if now is None else now
    if current >= exp:
        ago = int(current - exp)
        raise TokenError(f"the token expired {ago}s ago; get a fresh one with `keadm gettoken`")
    return claims


def is_valid_node_name(name: str) -> bool:
    """True for a valid Kubernetes node name (a DNS-1123 subdomain, at most 253 characters)."""
    return 0 < len(name) <= 253 and _DNS1123_SUBDOMAIN_RE.match(name) is not None


def node_common_name(node: str) -> str:
    """An edge node's certificate CN: ``node_common_name("edge-1") == "system:node:edge-1"``."""
    return f"{NODE_CN_PREFIX}{node}"
