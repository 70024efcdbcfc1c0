"""The one error hierarchy of pykubeedge.

Bad input from the network, MQTT, CRDs or files becomes one of these: a typed error, a log line
and, where the protocol has one, a reply. Callers catch the narrowest class they can handle.
"""

from __future__ import annotations


class PyKubeEdgeError(Exception):
    """Base of every error raised on purpose by pykubeedge."""


class ConfigError(PyKubeEdgeError):
    """A configuration file or CLI argument is missing, unreadable or invalid."""


class ControlPlaneError(PyKubeEdgeError):
    """The local control plane (devcluster) could not be built, started or reached."""


class DecodeError(PyKubeEdgeError):
    """A frame, message or payload from the outside could not be decoded."""


class KubeError(PyKubeEdgeError):
    """The Kubernetes API answered with an error status (or could not be reached).

    ``status`` is the HTTP status code (0 when there was no answer), ``reason`` the API's
    ``Status.reason`` (e.g. ``NotFound``), ``body`` the decoded Status object if any.
    """

    def __init__(self, message: str, status: int = 0, reason: str = "",
                 body: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.body = body or {}


class KubeConnectionError(KubeError):
    """The API server could not be reached (refused, TLS failure, timeout)."""


class BadRequest(KubeError):
    """400: the request was malformed."""


class Unauthorized(KubeError):
    """401: the credentials were missing or rejected."""


class Forbidden(KubeError):
    """403: authenticated, but not allowed."""


class NotFound(KubeError):
    """404: the object or resource type does not exist."""


class Conflict(KubeError):
    """409: already exists, or a resourceVersion conflict on update."""


class Gone(KubeError):
    """410: the requested resourceVersion is too old; list again."""


class Invalid(KubeError):
    """422: the object failed validation (schema, admission)."""


class TooManyRequests(KubeError):
    """429: the API server asks the client to slow down."""


class ServerError(KubeError):
    """5xx: the API server failed."""


class StoreError(PyKubeEdgeError):
    """A database operation failed (SQLite error, unserializable value, database closed)."""


class StoreClosedError(StoreError):
    """The database, or the module's store on it, is closed."""


class TokenError(PyKubeEdgeError):
    """A join token is malformed, expired or not signed by this cloudcore's CA."""


class CertificateError(PyKubeEdgeError):
    """A certificate, key or CSR is missing, unparseable, untrusted or for the wrong identity."""


class NotAllowed(PyKubeEdgeError):
    """An edge node asked for something that is not its own (another node's status, a secret
    no pod of its uses). The request is refused, logged and answered with an error."""


class StreamError(PyKubeEdgeError):
    """A kubelet stream (logs, exec, attach, port-forward, metrics) through the CloudStream
    tunnel could not be opened or broke: no tunnel for the node, too many streams, the peer
    reset it, or its buffer stalled. ``code`` is the HTTP status the API server is answered
    with."""

    def __init__(self, message: str, code: int = 502) -> None:
        super().__init__(message)
        self.code = code
