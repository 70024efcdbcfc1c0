"""Edged's image manager (kubelet's ``images`` and ``credentialprovider`` packages): the pull
policy, pull secrets matched to the image's registry, pull back-off (``ErrImagePull``, then
``ImagePullBackOff`` 10 s doubling to 5 min), the events kubelet records, and image garbage
collection between ``imageGCHighThresholdPercent`` and ``LowThresholdPercent``::

    images = ImageManager(runtime, recorder, clock=time.time)
    ref, waiting = await images.ensure_image(pod, container, pull_secrets)
    if waiting: ...      # ("ImagePullBackOff", 'Back-off pulling image "x": ...')
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import fnmatch
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from pykubeedge.core.clock import TimeSource
from pykubeedge.core.objects import uid_of
from pykubeedge.edge.edged.events import NORMAL, WARNING, EventRecorder
from pykubeedge.edge.edged.runtime import (
    AuthConfig,
    ContainerRuntimeError,
    ImagePullError,
    Runtime,
)

log = logging.getLogger(__name__)

ERR_IMAGE_PULL: Final = "ErrImagePull"
IMAGE_PULL_BACK_OFF: Final = "ImagePullBackOff"
ERR_IMAGE_NEVER_PULL: Final = "ErrImageNeverPull"
INVALID_IMAGE_NAME: Final = "InvalidImageName"
IMAGE_INSPECT_ERROR: Final = "ImageInspectError"
BACKOFF_INITIAL: Final = 10.0
BACKOFF_CAP: Final = 300.0
DEFAULT_REGISTRY: Final = "docker.io"
GC_HIGH: Final = 85
GC_LOW: Final = 80
GC_MIN_AGE: Final = 120.0
MAX_BACKOFF_ENTRIES: Final = 4096


@dataclass(slots=True)
class _Backoff:
    delay: float
    last_update: float
    reason: str
    message: str


def with_default_tag(image: str) -> str:
    """``busybox`` -> ``busybox:latest`` (kubelet's ``applyDefaultImageTag``).

    >>> with_default_tag("busybox"), with_default_tag("127.0.0.1:5000/app")
    ('busybox:latest', '127.0.0.1:5000/app:latest')
    """
    if "@" in image:
        return image
    last = image.rsplit("/", 1)[-1]
    return image if ":" in last else image + ":latest"


def pull_policy(container: Mapping[str, Any]) -> str:
    """``imagePullPolicy``, defaulted as the API server does (``:latest`` or no tag: Always)."""
    policy = container.get("imagePullPolicy")
    if policy in ("Always", "IfNotPresent", "Never"):
        return str(policy)
    image = str(container.get("image") or "")
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    return "Always" if ":" not in last or last.endswith(":latest") else "IfNotPresent"


def repository(image: str) -> str:
    """The normalized repository to match credentials on (``docker.io/library/nginx``).

    >>> repository("nginx:1.27"), repository("127.0.0.1:5000/team/app:2")
    ('docker.io/library/nginx', '127.0.0.1:5000/team/app')
    """
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    first, _, rest = name.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        name = f"{DEFAULT_REGISTRY}/{name}"
        if "/" not in name[len(DEFAULT_REGISTRY) + 1:]:
            name = f"{DEFAULT_REGISTRY}/library/{name[len(DEFAULT_REGISTRY) + 1:]}"
    return name


# -- credentials --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credential:
    key: str
    auth: AuthConfig


def keyring(secrets: Iterable[Mapping[str, Any]]) -> list[Credential]:
    """The registry credentials of ``kubernetes.io/dockerconfigjson`` (and ``dockercfg``)
    Secrets, as kubelet's ``MakeDockerKeyring`` reads them."""
    creds: list[Credential] = []
    for secret in secrets:
        kind = secret.get("type")
        data = secret.get("data") if isinstance(secret.get("data"), dict) else {}
        assert isinstance(data, dict)
        key = ".dockerconfigjson" if kind == "kubernetes.io/dockerconfigjson" else \
            ".dockercfg" if kind == "kubernetes.io/dockercfg" else ""
        if not key or not data.get(key):
            continue
        try:
            doc = orjson.loads(base64.b64decode(str(data[key])))
        except (binascii.Error, ValueError, orjson.JSONDecodeError):
            log.warning("pull secret %s: %s is not valid JSON", _name(secret), key)
            continue
        auths = doc.get("auths", {}) if key == ".dockerconfigjson" else doc
        if not isinstance(auths, dict):
            continue
        for registry, entry in auths.items():
            if isinstance(entry, dict):
                creds.append(Credential(_registry_key(str(registry)), _auth(entry)))
    return sorted(creds, key=lambda c: c.key, reverse=True)


def _name(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    return str(meta.get("name")) if isinstance(meta, dict) else "?"


def _auth(entry: Mapping[str, Any]) -> AuthConfig:
    user, password = str(entry.get("username") or ""), str(entry.get("password") or "")
    encoded = str(entry.get("auth") or "")
    if encoded:
        padded = encoded + "=" * (-len(encoded) % 4)
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            user, _, password = base64.b64decode(padded).decode().partition(":")
    return AuthConfig(user, password)


def _registry_key(registry: str) -> str:
    value = registry.split("://", 1)[-1]
    host, _, path = value.partition("/")
    path = "/" + path if path else ""
    for prefix in ("/v2/", "/v1/", "/v2", "/v1"):
        if path.startswith(prefix):
            path = path[len(prefix) - (1 if prefix.endswith("/") else 0):]
            break
    path = path.rstrip("/")
    return host + path if path not in ("", "/") else host


def _urls_match(key: str, repo: str) -> bool:
    key_host, _, key_path = key.partition("/")
    repo_host, _, repo_path = repo.partition("/")
    key_name, _, key_port = key_host.partition(":")
    repo_name, _, repo_port = repo_host.partition(":")
    if key_port != repo_port:
        return False
    key_labels, repo_labels = key_name.split("."), repo_name.split(".")
    if len(key_labels) != len(repo_labels):
        return False
    if not all(fnmatch.fnmatchcase(r, k) for k, r in zip(key_labels, repo_labels, strict=True)):
        return False
    return repo_path.startswith(key_path)


def credentials_for(image: str, creds: Iterable[Credential]) -> list[AuthConfig]:
    """Every credential that matches the image's registry (tried in turn by the pull).

    >>> c = [Credential("127.0.0.1:5000", AuthConfig("u", "p"))]
    >>> credentials_for("127.0.0.1:5000/app:1", c)
    [AuthConfig(username='u', password='p')]
    """
    repo = repository(image)
    found = [c.auth for c in creds if _urls_match(c.key, repo)]
    if not found and repo.startswith(DEFAULT_REGISTRY + "/"):
        found = [c.auth for c in creds if c.key == "index.docker.io"]
    return found


# -- the manager --------------------------------------------------------------------------------


class ImageManager:
    """Pulls images for containers and collects the unused ones."""

    def __init__(self, runtime: Runtime, recorder: EventRecorder, *, clock: TimeSource,
                 backoff_initial: float = BACKOFF_INITIAL, backoff_cap: float = BACKOFF_CAP,
                 high_threshold: int = GC_HIGH, low_threshold: int = GC_LOW,
                 minimum_age: float = GC_MIN_AGE, pinned: Iterable[str] = ()) -> None:
        self.runtime = runtime
        self.recorder = recorder
        self._clock = clock
        self.backoff_initial = backoff_initial
        self.backoff_cap = backoff_cap
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.minimum_age = minimum_age
        self.pinned = set(pinned)
        self._backoff: dict[str, _Backoff] = {}
        self._pull_lock = asyncio.Lock()  # serializeImagePulls: true
        self._first_seen: dict[str, float] = {}
        self._last_used: dict[str, float] = {}

    async def ensure_image(self, pod: Mapping[str, Any], container: Mapping[str, Any],
                           pull_secrets: list[Mapping[str, Any]],
                           field_path: str) -> tuple[str, tuple[str, str] | None]:
        """kubelet's ``EnsureImageExists``: ``(image ref, None)`` or ``("", (reason, msg))``."""
        image = str(container.get("image") or "")
        spec_image = with_default_tag(image)
        policy = pull_policy(container)

        def event(kind: str, reason: str, message: str) -> None:
            self.recorder.pod(pod, kind, reason, message, field_path=field_path)

        try:
            present = await self.runtime.image_status(spec_image)
        except ContainerRuntimeError as exc:
            event(WARNING, "InspectFailed", f'Failed to inspect image "{image}": {exc}')
            return "", (IMAGE_INSPECT_ERROR, f'Failed to inspect image "{image}": {exc}')
        if present is not None and policy != "Always":
            event(NORMAL, "Pulled", f'Container image "{image}" already present on machine')
            self.used(present.id)
            return (present.digests[0] if present.digests else present.id), None
        if policy == "Never":
            message = f'Container image "{image}" is not present with pull policy of Never'
            event(WARNING, ERR_IMAGE_NEVER_PULL, message)
            return "", (ERR_IMAGE_NEVER_PULL, message)
        key = f"{uid_of(pod)}_{spec_image}"
        now = self._clock()
        entry = self._backoff.get(key)
        if entry is not None and now - entry.last_update < entry.delay:
            event(NORMAL, "BackOff", f'Back-off pulling image "{image}"')
            return "", (IMAGE_PULL_BACK_OFF, f'Back-off pulling image "{image}": '
                                             f"{entry.reason}: {entry.message}")
        event(NORMAL, "Pulling", f'Pulling image "{image}"')
        started = time.monotonic()
        async with self._pull_lock:
            waited = time.monotonic()
            ref, error = await self._pull(spec_image, credentials_for(
                spec_image, keyring(pull_secrets)))
        if error:
            event(WARNING, "Failed", f'Failed to pull image "{image}": {error}')
            self._bump(key, ERR_IMAGE_PULL, error, now)
            return "", (ERR_IMAGE_PULL, error)
        self._backoff.pop(key, None)
        done = time.monotonic()
        info = await self._status_quietly(spec_image)
        size = info.size if info is not None else 0
        event(NORMAL, "Pulled", f'Successfully pulled image "{image}" in '
                                f"{_duration(done - waited)} ({_duration(done - started)} "
                                f"including waiting). Image size: {size} bytes.")
        if info is not None:
            self.used(info.id)
        return ref, None

    async def _status_quietly(self, image: str) -> Any:
        try:
            return await self.runtime.image_status(image)
        except ContainerRuntimeError:
            return None

    async def _pull(self, image: str, auths: list[AuthConfig]) -> tuple[str, str]:
        errors = []
        tries: list[AuthConfig | None] = list(auths) or [None]
        for auth in tries:
            try:
                return await self.runtime.pull_image(image, auth), ""
            except ImagePullError as exc:
                errors.append(str(exc))
            except ContainerRuntimeError as exc:
                errors.append(str(exc))
        return "", "; ".join(errors) if len(errors) > 1 else errors[0]

    def _bump(self, key: str, reason: str, message: str, now: float) -> None:
        entry = self._backoff.get(key)
        if entry is None or now - entry.last_update > 2 * self.backoff_cap:
            delay = self.backoff_initial
        else:
            delay = min(entry.delay * 2, self.backoff_cap)
        self._backoff[key] = _Backoff(delay, now, reason, message)
        while len(self._backoff) > MAX_BACKOFF_ENTRIES:
            self._backoff.pop(next(iter(self._backoff)))

    def backoff_left(self, pod: Mapping[str, Any], image: str) -> float:
        """Seconds until the pull back-off of ``image`` for ``pod`` ends (0: none)."""
        entry = self._backoff.get(f"{uid_of(pod)}_{with_default_tag(image)}")
        if entry is None:
            return 0.0
        return max(entry.last_update + entry.delay - self._clock(), 0.0)

    def forget_pod(self, uid: str) -> None:
        """Drop the pull back-off of a pod that is gone."""
        for key in [k for k in self._backoff if k.startswith(uid + "_")]:
            del self._backoff[key]

    def used(self, image_id: str) -> None:
        """An image was used by a container now (image GC frees the least recently used)."""
        now = self._clock()
        self._first_seen.setdefault(image_id, now)
        self._last_used[image_id] = now

    # -- image GC --------------------------------------------------------------------------

    async def garbage_collect(self, in_use: set[str]) -> int:
        """Free images when the image filesystem is over the high threshold; bytes freed.

        ``in_use``: image ids and references of every container of the runtime.
        """
        mountpoint, _used = await self.runtime.image_fs_info()
        try:
            fs = await asyncio.to_thread(os.statvfs, mountpoint or "/")
        except OSError as exc:
            log.warning("image GC: cannot stat %s: %s", mountpoint, exc)
            return 0
        capacity, available = fs.f_blocks * fs.f_frsize, fs.f_bavail * fs.f_frsize
        if capacity == 0:
            self.recorder.node(WARNING, "InvalidDiskCapacity",
                               "invalid capacity 0 on image filesystem")
            return 0
        usage = 100 - available * 100 // capacity
        now = self._clock()
        images = await self.runtime.list_images()
        for image in images:
            self._first_seen.setdefault(image.id, now)
        if usage < self.high_threshold:
            return 0
        goal = capacity * (100 - self.low_threshold) // 100 - available
        candidates = [
            i for i in images
            if i.id not in in_use and not (set(i.digests) & in_use) and not (set(i.tags) & in_use)
            and not i.pinned and not (set(i.tags) & self.pinned)
            and now - self._first_seen.get(i.id, now) >= self.minimum_age
        ]
        candidates.sort(key=lambda i: self._last_used.get(i.id, 0.0))
        freed = 0
        for image in candidates:
            if freed >= goal:
                break
            try:
                await self.runtime.remove_image(image.id)
            except ContainerRuntimeError as exc:
                self.recorder.node(WARNING, "ImageGCFailed", str(exc))
                continue
            log.info("image GC: removed %s (%d bytes)", image.tags or image.id, image.size)
            freed += image.size
            self._first_seen.pop(image.id, None)
            self._last_used.pop(image.id, None)
        if freed < goal:
            self.recorder.node(WARNING, "FreeDiskSpaceFailed",
                               "Failed to garbage collect required amount of images. "
                               f"Attempted to free {goal} bytes, but only found {freed} bytes "
                               "eligible to free.")
        return freed


def _duration(seconds: float) -> str:
    """Go's ``time.Duration.String`` truncated to ms (``1.234s``, ``850ms``)."""
    ms = int(seconds * 1000)
    if ms < 1000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms / 1000:g}s"
    minutes, rest = divmod(ms, 60_000)
    return f"{minutes}m{rest / 1000:g}s"
