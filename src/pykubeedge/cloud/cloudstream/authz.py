"""Who may call the kubelet endpoint CloudStream serves, decided as kubelet decides it:
the caller's client certificate (CN = user, O = groups) must be signed by the stream CA,
and a SubjectAccessReview must allow it the verb on ``nodes/<subresource>`` of that node
(kubelet's ``--authorization-mode=Webhook``). The API server's kubelet client identity
passes; metrics-server passes for ``nodes/metrics``; anyone else gets kubelet's 403::

    authz = SubjectAccessAuthorizer(kube)
    ok, why = await authz.allowed(identity_of(der), attributes("GET", "/stats/summary"), "edge-1")

Decisions are cached as kubelet caches them: 5 minutes for an allow, 30 s for a deny
(bounded; failures of the review itself are not cached).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from cryptography import x509
from cryptography.x509.oid import NameOID

from pykubeedge.core.errors import KubeError
from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.resources import Resource

log = logging.getLogger(__name__)

SUBJECT_ACCESS_REVIEWS: Final = Resource("authorization.k8s.io", "v1", "subjectaccessreviews",
                                         "SubjectAccessReview", namespaced=False)
ALLOW_TTL: Final = 300.0
DENY_TTL: Final = 30.0
MAX_DECISIONS: Final = 4096
_VERBS: Final = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update",
                 "PATCH": "patch", "DELETE": "delete"}


@dataclass(frozen=True, slots=True)
class Identity:
    user: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Attributes:
    verb: str
    subresource: str


def identity_of(der: bytes | None) -> Identity | None:
    """The user and groups of a client certificate, as the API server reads them."""
    if not der:
        return None
    cert = x509.load_der_x509_certificate(der)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        return None
    groups = tuple(str(o.value) for o in
                   cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
    return Identity(str(names[0].value), groups)


def attributes(method: str, path: str) -> Attributes:
    """Kubelet's ``GetRequestAttributes``: the verb from the method, the subresource from the
    path (``stats``, ``metrics``, ``log``, ``checkpoint``, else ``proxy``).

    >>> attributes("POST", "/exec/default/web/c")
    Attributes(verb='create', subresource='proxy')
    >>> attributes("GET", "/metrics/resource")
    Attributes(verb='get', subresource='metrics')
    """
    verb = _VERBS.get(method.upper(), method.lower())
    for prefix, sub in (("/stats", "stats"), ("/metrics", "metrics"), ("/logs", "log"),
                        ("/checkpoint", "checkpoint")):
        if path == prefix or path.startswith(prefix + "/"):
            return Attributes(verb, sub)
    return Attributes(verb, "proxy")


def forbidden_message(who: Identity, attrs: Attributes) -> str:
    """Kubelet's 403 text."""
    return (f"Forbidden (user={who.user}, verb={attrs.verb}, resource=nodes, "
            f"subresource(s)=[{attrs.subresource}])")


class Authorizer(Protocol):
    async def allowed(self, who: Identity, attrs: Attributes, node: str) -> tuple[bool, str]:
        """Whether ``who`` may ``attrs`` on node ``node``, and why not."""
        ...


class SubjectAccessAuthorizer:
    """An :class:`Authorizer` asking the API server (see the module doc)."""

    def __init__(self, kube: KubeClient, *, allow_ttl: float = ALLOW_TTL,
                 deny_ttl: float = DENY_TTL, max_decisions: int = MAX_DECISIONS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.allow_ttl = allow_ttl
        self.deny_ttl = deny_ttl
        self.max_decisions = max_decisions
        self._clock = clock
        self._decisions: OrderedDict[tuple[Identity, Attributes, str],
                                     tuple[float, bool, str]] = OrderedDict()
        self.reviews = 0

    async def allowed(self, who: Identity, attrs: Attributes, node: str) -> tuple[bool, str]:
        key = (who, attrs, node)
        now = self._clock()
        cached = self._decisions.get(key)
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        review = {
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": who.user, "groups": list(who.groups),
                     "resourceAttributes": {"verb": attrs.verb, "resource": "nodes",
                                            "subresource": attrs.subresource,
                                            "name": node}},
        }
        try:
            self.reviews += 1
            answer = await self.kube.create(SUBJECT_ACCESS_REVIEWS, review)
        except KubeError as exc:
            log.warning("cloudstream: SubjectAccessReview for %s failed: %s", who.user, exc)
            return False, f"authorization could not be checked: {exc}"
        status = answer.get("status") or {}
        ok = bool(status.get("allowed"))
        why = str(status.get("reason") or "")
        self._decisions[key] = (now + (self.allow_ttl if ok else self.deny_ttl), ok, why)
        self._decisions.move_to_end(key)
        while len(self._decisions) > self.max_decisions:
            self._decisions.popitem(last=False)
        return ok, why
