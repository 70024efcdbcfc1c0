"""One pod, one task: kubelet's SyncPod loop, shrunk to what Edged needs.

A worker makes the runtime match the pod spec (sandbox, containers, restarts with back-off as
kubelet: 10 s doubling to 5 min), reports the pod status when it changes, and on deletion stops
the containers within the grace period::

    worker = PodWorker(pod, deps)
    task_group.create_task(worker.run())
    worker.update(newer_pod)            # an update from MetaManager
    worker.kill(grace=30, api_deleted=False)   # deletionTimestamp set: stop, report, confirm
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from pykubeedge.core.clock import Sleep, TimeSource
from pykubeedge.core.constants import Operation, ResourceType
from pykubeedge.core.objects import name_of, namespace_of, uid_of
from pykubeedge.core.resource import build_edge
from pykubeedge.edge.edged import podspec
from pykubeedge.edge.edged.metaclient import MetaClient, MetaRequestError
from pykubeedge.edge.edged.podstatus import (
    CRASH_LOOP_BACK_OFF,
    CREATE_CONTAINER_CONFIG_ERROR,
    CREATE_CONTAINER_ERROR,
    ERR_IMAGE_PULL,
    IMAGE_PULL_BACK_OFF,
    TERMINAL_PHASES,
    ContainerView,
    build_status,
    pod_phase,
    restart_policy,
    should_restart,
    status_patch,
)
from pykubeedge.edge.edged.runtime import (
    ContainerRuntimeError,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
    ImagePullError,
    PodSandboxStatus,
    Runtime,
    RuntimeVersion,
    SandboxConfig,
    SandboxState,
)

log = logging.getLogger(__name__)

DEFAULT_GRACE_SECONDS: Final = 30
BACKOFF_INITIAL: Final = 10.0
BACKOFF_CAP: Final = 300.0

ObjectFetcher = Callable[[podspec.ObjectRef], Awaitable[Mapping[str, Any] | None]]


@dataclass(frozen=True, slots=True)
class WorkerDeps:
    """What every pod worker shares: the runtime, MetaManager, time and host facts."""

    runtime: Runtime
    runtime_version: Callable[[], RuntimeVersion]
    meta: MetaClient
    fetch_object: ObjectFetcher
    host_ip: Callable[[], str]
    clock: TimeSource
    sleep: Sleep
    retry_interval: float = 10.0
    backoff_initial: float = BACKOFF_INITIAL
    backoff_cap: float = BACKOFF_CAP


@dataclass(slots=True)
class _Backoff:
    delay: float
    last_update: float


def grace_seconds(pod: Mapping[str, Any]) -> float:
    """``metadata.deletionGracePeriodSeconds``, else ``spec.terminationGracePeriodSeconds``,
    else 30.

    >>> grace_seconds({"metadata": {"deletionGracePeriodSeconds": 5}, "spec": {}})
    5.0
    """
    metadata = pod.get("metadata")
    spec = pod.get("spec")
    for source, key in (
        (metadata, "deletionGracePeriodSeconds"),
        (spec, "terminationGracePeriodSeconds"),
    ):
        if isinstance(source, dict):
            value = source.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                return float(value)
    return float(DEFAULT_GRACE_SECONDS)


def parse_time(value: Any) -> float | None:
    """Unix seconds of an RFC 3339 ``metav1.Time``; None if absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _newest(instances: Sequence[ContainerStatus]) -> tuple[ContainerStatus | None, ...]:
    ordered = sorted(instances, key=lambda c: (c.attempt, c.created_at))
    current = ordered[-1] if ordered else None
    previous = ordered[-2] if len(ordered) > 1 else None
    return current, previous


class PodWorker:
    """Keeps one pod (one UID) running as its spec says, and reports its status."""

    def __init__(self, pod: dict[str, Any], deps: WorkerDeps) -> None:
        self.uid: str = uid_of(pod)
        self.name: str = name_of(pod)
        self.namespace: str = namespace_of(pod)
        self.pod = pod
        self._deps = deps
        self._wake = asyncio.Event()
        self._wake.set()
        self.done = False
        self.terminal = False
        self.terminating = False
        self._api_deleted = False
        self._grace = float(DEFAULT_GRACE_SECONDS)
        self._killed = False
        self._final_reported = False
        self.unsynced = False
        self.last_sent: dict[str, Any] | None = None
        self.sent_count = 0
        status = pod.get("status") if isinstance(pod.get("status"), dict) else {}
        assert isinstance(status, dict)
        conditions = status.get("conditions")
        self._conditions: list[dict[str, Any]] = (
            [c for c in conditions if isinstance(c, dict)] if isinstance(conditions, list) else []
        )
        self._start_time = parse_time(status.get("startTime"))
        self._waiting: dict[str, tuple[str, str]] = {}
        self._crash_backoff: dict[str, _Backoff] = {}
        self._pull_backoff: dict[str, _Backoff] = {}
        self.refs: frozenset[podspec.ObjectKey] = frozenset(
            r.key for r in podspec.referenced_objects(pod)
        )
        spec = pod.get("spec")
        if isinstance(spec, dict) and spec.get("initContainers"):
            log.warning("%r: init containers are not supported yet; they are skipped", self)

    @property
    def resource(self) -> str:
        """``<ns>/pod/<name>``."""
        return build_edge(self.namespace, ResourceType.POD, self.name)

    def __repr__(self) -> str:
        return f"PodWorker({self.namespace}/{self.name} uid={self.uid})"

    # -- commands from Edged ------------------------------------------------------------------

    def update(self, pod: dict[str, Any]) -> None:
        """A newer version of the same pod (same UID)."""
        if self.terminating:
            return
        self.pod = pod
        self.refs = frozenset(r.key for r in podspec.referenced_objects(pod))
        self._check_cloud_status(pod)
        self.wake()

    def kill(self, grace: float, *, api_deleted: bool) -> None:
        """Stop the pod within ``grace`` seconds. ``api_deleted``: the Pod is gone from the API
        (no more status); otherwise report the final status and ask the API to delete it."""
        if self.terminating:
            self._grace = min(self._grace, grace)
            self._api_deleted = self._api_deleted or api_deleted
        else:
            self.terminating = True
            self._grace = grace
            self._api_deleted = api_deleted
        self.wake()

    def wake(self) -> None:
        """Sync again now."""
        self._wake.set()

    def resync(self) -> None:
        """The periodic status sync: report again if the last report did not go through."""
        if self.unsynced and not self.done:
            self.wake()

    def _check_cloud_status(self, pod: Mapping[str, Any]) -> None:
        """If the cloud's copy of our status disagrees with what we sent, send it again."""
        if self.last_sent is None:
            return
        status = pod.get("status")
        if not isinstance(status, dict):
            return
        if status.get("phase") != self.last_sent.get("phase") or _container_digest(
            status
        ) != _container_digest(self.last_sent):
            self.unsynced = True

    # -- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Sync until the pod is gone; errors are logged and retried, never raised."""
        while not self.done:
            self._wake.clear()
            delay: float | None
            try:
                delay = await self._sync()
            except asyncio.CancelledError:
                raise
            except ContainerRuntimeError as exc:
                log.warning("%r: runtime failed: %s; retrying in %g s", self, exc,
                            self._deps.retry_interval)
                delay = self._deps.retry_interval
            except Exception:
                log.exception("%r: sync failed; retrying in %g s", self, self._deps.retry_interval)
                delay = self._deps.retry_interval
            if self.done:
                return
            await self._wait(delay)

    async def _wait(self, delay: float | None) -> None:
        if self._wake.is_set():
            return
        if delay is None:
            await self._wake.wait()
            return
        waiter = asyncio.ensure_future(self._wake.wait())
        sleeper = asyncio.ensure_future(self._deps.sleep(max(delay, 0.0)))
        try:
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            sleeper.cancel()

    async def _sync(self) -> float | None:
        if self.terminating:
            return await self._sync_terminating()
        runtime = self._deps.runtime
        sandboxes = await runtime.list_pods(self.uid)
        if self.terminal:
            await self._report(sandboxes)
            return None
        if self._start_time is None:
            self._start_time = self._deps.clock()
        policy = restart_policy(self.pod)
        specs = podspec.containers(self.pod)
        instances = _instances_by_name(sandboxes)
        if self._all_done(specs, instances, policy):
            self.terminal = True
            await self._stop_sandboxes(sandboxes, grace=0)
            await self._report(await runtime.list_pods(self.uid))
            return None
        next_wake: float | None = None
        objects: dict[podspec.ObjectKey, Mapping[str, Any] | None] | None = None
        sandbox = _ready_sandbox(sandboxes)
        if sandbox is None:
            objects = await self._fetch_objects()
            try:
                volumes = podspec.resolve_volumes(self.pod, objects)
            except podspec.PodConfigError as exc:
                self._hold_all(specs, instances, CREATE_CONTAINER_CONFIG_ERROR, str(exc))
                await self._report(sandboxes)
                return self._deps.retry_interval
            sandbox = await self._create_sandbox(sandboxes, volumes)
            if sandbox is None:
                await self._report(sandboxes)
                return self._deps.retry_interval
        for spec in specs:
            name = spec["name"]
            current, _ = _newest(instances.get(name, ()))
            if (
                current is not None
                and current.state is ContainerState.RUNNING
                and _in_sandbox(sandbox, current)
            ):
                if current.image == spec["image"]:
                    self._waiting.pop(name, None)
                    continue
                log.info("%r: image of %s changed; restarting it", self, name)
                await runtime.stop_container(current.id, grace_seconds(self.pod))
                current = None  # fall through: start the next attempt
            elif (
                current is not None
                and current.state is not ContainerState.RUNNING
                and not should_restart(policy, current.exit_code)
            ):
                continue
            attempt = _next_attempt(instances.get(name, ()))
            if current is not None and current.state is ContainerState.EXITED:
                backoff = self._crash_wait(name, current)
                if backoff > 0:
                    next_wake = _earliest(next_wake, backoff)
                    continue
            if objects is None:
                objects = await self._fetch_objects()
            retry = await self._start_container(sandbox, spec, attempt, objects, instances)
            if retry is not None:
                next_wake = _earliest(next_wake, retry)
        sandboxes = await runtime.list_pods(self.uid)
        await self._remove_stale(sandboxes, sandbox.id)
        await self._report(await runtime.list_pods(self.uid))
        return next_wake

    # -- steps --------------------------------------------------------------------------------

    def _all_done(
        self,
        specs: list[dict[str, Any]],
        instances: Mapping[str, Sequence[ContainerStatus]],
        policy: str,
    ) -> bool:
        """True when no container runs and none will start again (Never/OnFailure)."""
        for spec in specs:
            current, _ = _newest(instances.get(spec["name"], ()))
            if current is None or current.state is not ContainerState.EXITED:
                return False
            if should_restart(policy, current.exit_code):
                return False
        return True

    async def _fetch_objects(self) -> dict[podspec.ObjectKey, Mapping[str, Any] | None]:
        objects: dict[podspec.ObjectKey, Mapping[str, Any] | None] = {}
        for ref in podspec.referenced_objects(self.pod):
            objects[ref.key] = await self._deps.fetch_object(ref)
        return objects

    def _hold_all(
        self,
        specs: list[dict[str, Any]],
        instances: Mapping[str, Sequence[ContainerStatus]],
        reason: str,
        message: str,
    ) -> None:
        for spec in specs:
            current, _ = _newest(instances.get(spec["name"], ()))
            if current is None or current.state is not ContainerState.RUNNING:
                self._waiting[spec["name"]] = (reason, message)
        log.warning("%r: %s: %s", self, reason, message)

    async def _create_sandbox(
        self, sandboxes: list[PodSandboxStatus], volumes: dict[str, dict[str, bytes]]
    ) -> PodSandboxStatus | None:
        metadata = self.pod.get("metadata", {})
        spec = self.pod.get("spec", {})
        labels = metadata.get("labels") if isinstance(metadata.get("labels"), dict) else {}
        config = SandboxConfig(
            uid=self.uid,
            name=self.name,
            namespace=self.namespace,
            attempt=max((s.attempt + 1 for s in sandboxes), default=0),
            host_network=bool(spec.get("hostNetwork")),
            hostname=str(spec.get("hostname") or self.name),
            labels={str(k): str(v) for k, v in (labels or {}).items()},
            volumes=volumes,
        )
        try:
            sandbox = await self._deps.runtime.run_pod_sandbox(config)
        except ContainerRuntimeError as exc:
            log.warning("%r: cannot create the pod sandbox: %s", self, exc)
            for container in podspec.containers(self.pod):
                self._waiting[container["name"]] = (
                    "ContainerCreating", f"failed to create pod sandbox: {exc}"
                )
            return None
        log.info("%r: sandbox %s, IP %s", self, sandbox.id[:12], sandbox.ip)
        return sandbox

    def _crash_wait(self, name: str, exited: ContainerStatus) -> float:
        """Seconds before ``name`` may restart (kubelet's CrashLoopBackOff); 0 = now."""
        now = self._deps.clock()
        entry = self._crash_backoff.get(name)
        if entry is None or exited.finished_at - entry.last_update > 2 * self._deps.backoff_cap:
            return 0.0
        remaining = exited.finished_at + entry.delay - now
        if remaining <= 0:
            return 0.0
        self._waiting[name] = (
            CRASH_LOOP_BACK_OFF,
            f"back-off {entry.delay:g}s restarting failed container={name} "
            f"pod={self.name}_{self.namespace}({self.uid})",
        )
        return remaining

    def _bump(self, table: dict[str, _Backoff], key: str, event_time: float) -> _Backoff:
        now = self._deps.clock()
        entry = table.get(key)
        if entry is None or event_time - entry.last_update > 2 * self._deps.backoff_cap:
            entry = _Backoff(self._deps.backoff_initial, now)
        else:
            entry = _Backoff(min(entry.delay * 2, self._deps.backoff_cap), now)
        table[key] = entry
        return entry

    async def _start_container(
        self,
        sandbox: PodSandboxStatus,
        spec: dict[str, Any],
        attempt: int,
        objects: Mapping[podspec.ObjectKey, Mapping[str, Any] | None],
        instances: Mapping[str, Sequence[ContainerStatus]],
    ) -> float | None:
        """Pull, create and start one container; the seconds until a retry, or None."""
        runtime = self._deps.runtime
        name, image = spec["name"], spec["image"]
        now = self._deps.clock()
        previous = instances.get(name, ())
        current, _ = _newest(previous)
        try:
            env = podspec.resolve_env(
                self.pod, spec, objects, pod_ip=sandbox.ip, host_ip=self._deps.host_ip()
            )
        except podspec.PodConfigError as exc:
            self._waiting[name] = (CREATE_CONTAINER_CONFIG_ERROR, str(exc))
            log.warning("%r: container %s: %s", self, name, exc)
            return self._deps.retry_interval
        pull = self._pull_backoff.get(image)
        if pull is not None and now < pull.last_update + pull.delay:
            self._waiting[name] = (IMAGE_PULL_BACK_OFF, f'Back-off pulling image "{image}"')
            return pull.last_update + pull.delay - now
        if spec.get("imagePullPolicy") != "Never":
            try:
                await runtime.pull_image(image)
            except ImagePullError as exc:
                entry = self._bump(self._pull_backoff, image, now)
                self._waiting[name] = (ERR_IMAGE_PULL, str(exc))
                log.warning("%r: %s", self, exc)
                return entry.delay
            self._pull_backoff.pop(image, None)
        container_spec = ContainerSpec(
            name=name,
            image=image,
            command=podspec.expand_args(_str_list(spec.get("command")), env),
            args=podspec.expand_args(_str_list(spec.get("args")), env),
            env=env,
            mounts=podspec.container_mounts(spec),
            working_dir=str(spec.get("workingDir") or ""),
            attempt=attempt,
        )
        try:
            container_id = await runtime.start_container(sandbox.id, container_spec)
        except ContainerRuntimeError as exc:
            self._waiting[name] = (CREATE_CONTAINER_ERROR, str(exc))
            log.warning("%r: cannot start container %s: %s", self, name, exc)
            return self._deps.retry_interval
        if current is not None and current.state is ContainerState.EXITED:
            self._bump(self._crash_backoff, name, current.finished_at)
        self._waiting.pop(name, None)
        log.info("%r: started container %s (attempt %d) as %s", self, name, attempt,
                 container_id[:12])
        # kubelet keeps one dead instance per container (for lastState); remove older ones
        keep = {current.id} if current is not None else set()
        for old in previous:
            if old.id not in keep and old.state is ContainerState.EXITED:
                await runtime.remove_container(old.id)
        return None

    async def _remove_stale(self, sandboxes: list[PodSandboxStatus], keep: str) -> None:
        """Keep the live sandbox and the newest dead one (its containers give ``lastState``);
        remove older dead ones, so reboots do not pile sandboxes up."""
        dead = sorted(
            (s for s in sandboxes if s.id != keep and s.state is not SandboxState.READY),
            key=lambda s: (s.attempt, s.created_at),
            reverse=True,
        )
        for sandbox in dead[1:]:
            await self._deps.runtime.remove_pod_sandbox(sandbox.id)

    async def _stop_sandboxes(self, sandboxes: list[PodSandboxStatus], grace: float) -> None:
        runtime = self._deps.runtime
        running = [
            c.id for s in sandboxes for c in s.containers if c.state is ContainerState.RUNNING
        ]
        if running:
            await asyncio.gather(*(runtime.stop_container(cid, grace) for cid in running))
        for sandbox in sandboxes:
            if sandbox.state is SandboxState.READY:
                await runtime.stop_pod_sandbox(sandbox.id)

    async def _sync_terminating(self) -> float | None:
        runtime = self._deps.runtime
        if not self._killed:
            sandboxes = await runtime.list_pods(self.uid)
            log.info("%r: stopping (grace %g s)", self, self._grace)
            await self._stop_sandboxes(sandboxes, self._grace)
            self._killed = True
        sandboxes = await runtime.list_pods(self.uid)
        if not self._api_deleted:
            if not self._final_reported:
                self.terminal = True
                if not await self._report(sandboxes, force=self.unsynced):
                    return self._deps.retry_interval
                self._final_reported = True
            if not await self._confirm_deletion():
                return self._deps.retry_interval
        for sandbox in sandboxes:
            await runtime.remove_pod_sandbox(sandbox.id)
        self.done = True
        log.info("%r: removed", self)
        return None

    async def _confirm_deletion(self) -> bool:
        """Ask the API server to delete the Pod now that it has stopped (kubelet's status
        manager does this with grace 0 and a UID precondition)."""
        options = {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}}
        try:
            await self._deps.meta.request(Operation.DELETE, self.resource, options)
        except MetaRequestError as exc:
            log.warning("%r: delete not confirmed yet: %s", self, exc)
            return False
        return True

    # -- status -------------------------------------------------------------------------------

    def compute_status(self, sandboxes: list[PodSandboxStatus]) -> dict[str, Any]:
        """The pod status now, from the runtime's view and the worker's memory."""
        instances = _instances_by_name(sandboxes)
        views = []
        try:
            specs = podspec.containers(self.pod)
        except podspec.PodSpecError:
            specs = []
        terminal = self.terminal or self.terminating
        for spec in specs:
            current, previous = _newest(instances.get(spec["name"], ()))
            waiting = self._waiting.get(spec["name"])
            if terminal or (current is not None and current.state is ContainerState.RUNNING):
                waiting = None
            views.append(ContainerView(spec["name"], spec["image"], current, previous, waiting))
        phase = pod_phase(restart_policy(self.pod), views, terminal=terminal)
        if terminal and phase not in TERMINAL_PHASES:
            phase = "Failed" if self.terminating else phase
        sandbox = _ready_sandbox(sandboxes) or (
            max(sandboxes, key=lambda s: s.created_at) if sandboxes else None
        )
        now = self._deps.clock()
        status = build_status(
            self.pod,
            views,
            phase=phase,
            host_ip=self._deps.host_ip(),
            pod_ip=sandbox.ip if sandbox is not None else "",
            start_time=self._start_time if self._start_time is not None else now,
            sandbox_ready=_ready_sandbox(sandboxes) is not None,
            now=now,
            runtime=self._deps.runtime_version(),
            previous_conditions=self._conditions,
        )
        return status

    async def _report(self, sandboxes: list[PodSandboxStatus], *, force: bool = False) -> bool:
        """Send the status if it changed (or ``force``); True when MetaManager took it."""
        if self.terminating and self._api_deleted:
            return True  # the Pod is gone from the API: nothing to report to
        status = self.compute_status(sandboxes)
        if status == self.last_sent and not self.unsynced and not force:
            return True
        self._conditions = status["conditions"]
        patch = status_patch(self.uid, status)
        resource = build_edge(self.namespace, ResourceType.POD_PATCH, self.name)
        try:
            await self._deps.meta.request(
                Operation.PATCH, resource, orjson.dumps(patch).decode()
            )
        except MetaRequestError as exc:
            self.unsynced = True
            log.warning("%r: status not reported: %s", self, exc)
            return False
        self.last_sent = status
        self.unsynced = False
        self.sent_count += 1
        log.debug("%r: reported phase %s", self, status["phase"])
        return True


def _instances_by_name(sandboxes: Sequence[PodSandboxStatus]) -> dict[str, list[ContainerStatus]]:
    found: dict[str, list[ContainerStatus]] = {}
    for sandbox in sandboxes:
        for container in sandbox.containers:
            found.setdefault(container.name, []).append(container)
    return found


def _ready_sandbox(sandboxes: Sequence[PodSandboxStatus]) -> PodSandboxStatus | None:
    ready = [s for s in sandboxes if s.state is SandboxState.READY]
    return max(ready, key=lambda s: (s.attempt, s.created_at)) if ready else None


def _in_sandbox(sandbox: PodSandboxStatus, container: ContainerStatus) -> bool:
    return any(c.id == container.id for c in sandbox.containers)


def _next_attempt(instances: Sequence[ContainerStatus]) -> int:
    return max((c.attempt for c in instances), default=-1) + 1


def _earliest(current: float | None, candidate: float) -> float:
    return candidate if current is None else min(current, candidate)


def _str_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _container_digest(status: Mapping[str, Any]) -> list[tuple[Any, Any, Any]]:
    statuses = status.get("containerStatuses")
    if not isinstance(statuses, list):
        return []
    return sorted(
        (s.get("name"), s.get("ready"), s.get("restartCount"))
        for s in statuses
        if isinstance(s, dict)
    )
