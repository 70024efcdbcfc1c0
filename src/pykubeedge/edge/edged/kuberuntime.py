"""Starting and stopping one container as kubelet's ``kuberuntime`` does: the image, the
environment, mounts (volumes, subPath, the termination-log file, ``/etc/hosts``), cgroup
limits and security context, the Created/Started/Killing events, postStart and preStop
hooks, and the termination message read back when it exited::

    starter = ContainerStarter(deps, pod, sandbox)
    waiting = await starter.start(container, attempt, objects, volume_paths, field_path)
    await kill_container(deps, pod, container, status, grace, message="")
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from pykubeedge.core.clock import Sleep, TimeSource
from pykubeedge.core.objects import name_of, namespace_of, uid_of
from pykubeedge.edge.edged import containers as kc
from pykubeedge.edge.edged import podspec
from pykubeedge.edge.edged.events import NORMAL, WARNING, EventRecorder
from pykubeedge.edge.edged.images import ImageManager, with_default_tag
from pykubeedge.edge.edged.metaclient import MetaClient
from pykubeedge.edge.edged.prober import HookError, Target, run_hook
from pykubeedge.edge.edged.runtime import (
    ContainerRuntimeError,
    ContainerSpec,
    ContainerStatus,
    Mount,
    PodSandboxStatus,
    Runtime,
    RuntimeVersion,
)
from pykubeedge.edge.edged.volumemanager import VolumeManager

log = logging.getLogger(__name__)

CREATE_CONTAINER_CONFIG_ERROR: Final = "CreateContainerConfigError"
CREATE_CONTAINER_ERROR: Final = "CreateContainerError"
RUN_CONTAINER_ERROR: Final = "RunContainerError"
POST_START_HOOK_ERROR: Final = "PostStartHookError"
MIN_GRACE: Final = 2.0
MAX_TERMINATION_MESSAGE: Final = 4096
FALLBACK_LINES: Final = 80
FALLBACK_BYTES: Final = 2048
ETC_HOSTS: Final = "etc-hosts"
HOSTS_HEADER: Final = (
    "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
    "fe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
)

ObjectFetcher = Callable[[podspec.ObjectRef], Awaitable[Mapping[str, Any] | None]]


@dataclass(frozen=True, slots=True)
class WorkerDeps:
    """What every pod worker shares: the runtime, MetaManager, time, events, images,
    volumes and host facts."""

    runtime: Runtime
    runtime_version: Callable[[], RuntimeVersion]
    meta: MetaClient
    fetch_object: ObjectFetcher
    host_ip: Callable[[], str]
    clock: TimeSource
    sleep: Sleep
    recorder: EventRecorder
    images: ImageManager
    volumes: VolumeManager
    retry_interval: float = 10.0
    backoff_initial: float = 10.0
    backoff_cap: float = 300.0
    backoff_reset: float = 600.0
    fetch_token: Callable[[Mapping[str, Any], podspec.TokenKey], Awaitable[str | None]] | None \
        = None
    services: Callable[[str], Awaitable[list[dict[str, Any]]]] | None = None
    allocatable: Callable[[], dict[str, int]] = field(default=lambda: {})
    pod_logs_dir: Path | None = None
    cluster_dns: tuple[str, ...] = ()
    cluster_domain: str = "cluster.local"


def field_path(container: Mapping[str, Any], *, init: bool) -> str:
    """The event fieldPath of a container: ``spec.containers{app}``."""
    return f"spec.{'initContainers' if init else 'containers'}{{{container.get('name')}}}"


def pod_label(pod: Mapping[str, Any]) -> str:
    """``<name>_<namespace>(<uid>)``: how kubelet names a pod in messages."""
    meta = pod.get("metadata") or {}
    return f"{meta.get('name')}_{meta.get('namespace') or 'default'}({meta.get('uid')})"


def termination_log_path(volumes: VolumeManager, uid: str, name: str, attempt: int) -> Path:
    """Where the termination-log file of one container instance is on the node."""
    return volumes.pod_dir(uid) / "containers" / name / str(attempt)


def kill_grace(pod: Mapping[str, Any], probe: Mapping[str, Any] | None = None) -> float:
    """kubelet's ``setTerminationGracePeriod`` for a kill outside pod termination."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    deletion = meta.get("deletionGracePeriodSeconds")
    if isinstance(deletion, int):
        return float(deletion)
    value = spec.get("terminationGracePeriodSeconds")
    if isinstance(value, int):
        probe_grace = (probe or {}).get("terminationGracePeriodSeconds")
        return float(probe_grace if isinstance(probe_grace, int) else value)
    return MIN_GRACE


class ContainerStarter:
    """Starts containers of one pod in one sandbox (kubelet's ``startContainer``)."""

    def __init__(self, deps: WorkerDeps, pod: Mapping[str, Any], sandbox: PodSandboxStatus,
                 pull_secrets: list[Mapping[str, Any]]) -> None:
        self.deps = deps
        self.pod = pod
        self.sandbox = sandbox
        self.pull_secrets = pull_secrets
        self.uid = uid_of(pod)

    def _event(self, kind: str, reason: str, message: str, path: str) -> None:
        self.deps.recorder.pod(self.pod, kind, reason, message, field_path=path)

    async def start(self, container: Mapping[str, Any], attempt: int,
                    objects: Mapping[podspec.ObjectKey, Mapping[str, Any] | None],
                    volume_paths: Mapping[str, str], *, init: bool,
                    services: Mapping[str, str]) -> tuple[str, tuple[str, str] | None]:
        """Pull, create and start one container, then run its postStart hook.

        ``(container id, None)`` when it runs, ``("", (reason, message))`` when it did not
        start (the waiting state to show); a failed postStart gives both.
        """
        deps = self.deps
        name = str(container.get("name"))
        path = field_path(container, init=init)
        ref, waiting = await deps.images.ensure_image(self.pod, container, self.pull_secrets,
                                                      path)
        if waiting is not None:
            self._event(WARNING, "Failed", f"Error: {waiting[0]}", path)
            return "", waiting
        try:
            env = podspec.resolve_env(self.pod, container, objects, pod_ip=self.sandbox.ip,
                                      host_ip=deps.host_ip(), allocatable=deps.allocatable(),
                                      services=services)
            security = kc.security_context(self.pod, container)
            image_user = await self._image_user(container)
            if security.run_as_user is None:
                # kubelet's determineEffectiveSecurityContext: the image's user
                security = replace(security, run_as_user=int(image_user) if image_user.isdigit()
                                   else None, run_as_username="" if image_user.isdigit()
                                   else image_user)
            problem = kc.run_as_non_root_error(self.pod, container, security, image_user)
            if problem:
                raise podspec.PodConfigError(problem)
            if deps.volumes.pods_dir is None:
                mounts = self._mounts(container, attempt, volume_paths, env)
            else:
                mounts = await asyncio.to_thread(self._mounts, container, attempt, volume_paths,
                                                 env)
        except (podspec.PodConfigError, ContainerRuntimeError, OSError) as exc:
            self._event(WARNING, "Failed", f"Error: {exc}", path)
            return "", (CREATE_CONTAINER_CONFIG_ERROR, str(exc))
        spec = ContainerSpec(
            name=name,
            image=str(container.get("image")),
            command=podspec.expand_args(_list(container.get("command")), env),
            args=podspec.expand_args(_list(container.get("args")), env),
            env=env,
            mounts=mounts,
            working_dir=str(container.get("workingDir") or ""),
            attempt=attempt,
            resources=kc.container_resources(self.pod, container,
                                             node_memory=deps.allocatable().get("memory", 0)),
            security=security,
            annotations=_annotations(container),
            stdin=bool(container.get("stdin")), stdin_once=bool(container.get("stdinOnce")),
            tty=bool(container.get("tty")),
        )
        try:
            container_id = await deps.runtime.start_container(self.sandbox.id, spec)
        except ContainerRuntimeError as exc:
            text = str(exc)
            reason = RUN_CONTAINER_ERROR if "StartContainer" in text else CREATE_CONTAINER_ERROR
            self._event(WARNING, "Failed", f"Error: {text}", path)
            return "", (reason, text)
        deps.images.used(ref.rsplit("@", 1)[-1] if "@" in ref else ref)
        self._event(NORMAL, "Created", f"Created container: {name}", path)
        self._event(NORMAL, "Started", f"Started container {name}", path)
        hook = ((container.get("lifecycle") or {}).get("postStart"))
        if isinstance(hook, dict):
            target = Target(deps.runtime, container_id, self.sandbox.ip, container, env)
            try:
                await run_hook(hook, target, pod_label=pod_label(self.pod), sleep=deps.sleep,
                               timeout=0)
            except HookError as exc:
                self._event(WARNING, "FailedPostStartHook", str(exc), path)
                await kill_container(deps, self.pod, container, container_id, self.sandbox.ip,
                                     kill_grace(self.pod), init=init,
                                     message="FailedPostStartHook", env=env)
                return container_id, (POST_START_HOOK_ERROR, str(exc))
        return container_id, None

    async def _image_user(self, container: Mapping[str, Any]) -> str:
        """The image's user (``"0"``, ``"1000"``, ``"nobody"``); ``""`` if unknown."""
        try:
            info = await self.deps.runtime.image_status(with_default_tag(str(
                container.get("image") or "")))
        except ContainerRuntimeError:
            return ""
        if info is None:
            return ""
        if info.uid is not None:
            return str(info.uid)
        return info.username

    def _mounts(self, container: Mapping[str, Any], attempt: int,
                volume_paths: Mapping[str, str], env: Mapping[str, str]) -> tuple[Mount, ...]:
        mounts: list[Mount] = []
        own_hosts = False
        for item in _list(container.get("volumeMounts")):
            item = item if isinstance(item, dict) else {}
            volume, target = str(item.get("name") or ""), str(item.get("mountPath") or "")
            if volume not in volume_paths:
                raise podspec.PodConfigError(f'volume "{volume}" not found in the pod')
            host = volume_paths[volume]
            sub = str(item.get("subPath") or "")
            if item.get("subPathExpr"):
                sub = podspec.expand_args([item["subPathExpr"]], env)[0]
            if sub and self.deps.volumes.pods_dir is not None:
                host = str(_sub_path(Path(host), volume, sub))
            if target == "/etc/hosts":
                own_hosts = True
            mounts.append(Mount(volume, target, bool(item.get("readOnly")), sub, host_path=host,
                                propagation=str(item.get("mountPropagation") or "")))
        if self.deps.volumes.pods_dir is None:
            return tuple(mounts)
        message_path = str(container.get("terminationMessagePath") or "")
        if message_path:
            log_file = termination_log_path(self.deps.volumes, self.uid,
                                            str(container.get("name")), attempt)
            log_file.parent.mkdir(parents=True, exist_ok=True)
            log_file.write_bytes(b"")
            log_file.chmod(0o666)
            mounts.append(Mount("termination-log", message_path, False, host_path=str(log_file)))
        hosts = self.deps.volumes.pod_dir(self.uid) / ETC_HOSTS
        if not own_hosts and hosts.is_file():
            mounts.append(Mount("k8s-managed-etc-hosts", "/etc/hosts", False,
                                host_path=str(hosts)))
        return tuple(mounts)


def _sub_path(source: Path, volume: str, sub_path: str) -> Path:
    if sub_path.startswith("/") or ".." in Path(sub_path).parts:
        raise podspec.PodConfigError(f"subPath {sub_path!r} of volume {volume!r} must be a "
                                     "relative path without '..'")
    root = source.resolve()
    target = source / sub_path
    # A container may have planted a symlink in its volume: a subPath through it must not
    # reach the host (kubelet's CVE-2017-1002101).
    if not target.resolve().is_relative_to(root):
        raise podspec.PodConfigError(f"subPath {sub_path!r} of volume {volume!r} leaves the "
                                     "volume")
    if not target.exists():
        target.mkdir(parents=True, mode=0o777)
    return target


def _annotations(container: Mapping[str, Any]) -> dict[str, str]:
    return {
        "io.kubernetes.container.terminationMessagePath":
            str(container.get("terminationMessagePath") or ""),
        "io.kubernetes.container.terminationMessagePolicy":
            str(container.get("terminationMessagePolicy") or "File"),
    }


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


async def kill_container(deps: WorkerDeps, pod: Mapping[str, Any],
                         container: Mapping[str, Any], container_id: str, pod_ip: str,
                         grace: float, *, init: bool, message: str = "",
                         env: Mapping[str, str] | None = None) -> None:
    """kubelet's ``killContainer``: the Killing event, preStop within the grace period, then
    CRI ``StopContainer`` with what is left of it (at least 2 s)."""
    name = str(container.get("name"))
    path = field_path(container, init=init)
    deps.recorder.pod(pod, NORMAL, "Killing", message or f"Stopping container {name}",
                      field_path=path)
    hook = (container.get("lifecycle") or {}).get("preStop")
    if isinstance(hook, dict) and grace > 0:
        target = Target(deps.runtime, container_id, pod_ip, container, env or static_env(
            container))
        started = time.monotonic()
        try:
            async with asyncio.timeout(grace):
                await run_hook(
                    hook, target, pod_label=pod_label(pod), sleep=deps.sleep, timeout=grace)
        except (HookError, TimeoutError) as exc:
            log.info("preStop of %s in %s: %s", name, pod_label(pod), exc)
            deps.recorder.pod(pod, WARNING, "FailedPreStopHook", "PreStopHook failed",
                              field_path=path)
        grace -= int(time.monotonic() - started)
    grace = max(grace, MIN_GRACE)
    await deps.runtime.stop_container(container_id, grace)


def static_env(container: Mapping[str, Any]) -> dict[str, str]:
    """The container's plain ``env`` values (what probe and hook commands may expand)."""
    env = {}
    for var in _list(container.get("env")):
        if isinstance(var, dict) and "value" in var and var.get("name"):
            env[str(var["name"])] = str(var["value"])
    return env


def termination_message(deps: WorkerDeps, pod: Mapping[str, Any],
                        container: Mapping[str, Any], status: ContainerStatus) -> str:
    """The message of an exited container: its termination-log file (last 4096 bytes), or
    with ``FallbackToLogsOnError`` after a failure, the end of its log. Blocking (disk)."""
    if deps.volumes.pods_dir is None:
        return status.message
    uid = uid_of(pod)
    text = ""
    if container.get("terminationMessagePath"):
        path = termination_log_path(deps.volumes, uid, status.name, status.attempt)
        with contextlib.suppress(OSError), open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - MAX_TERMINATION_MESSAGE))
            text = f.read().decode(errors="replace")
    policy = container.get("terminationMessagePolicy") or "File"
    if (not text and policy == "FallbackToLogsOnError" and status.exit_code != 0
            and deps.pod_logs_dir is not None):
        log_file = (deps.pod_logs_dir / f"{namespace_of(pod)}_{name_of(pod)}_{uid}"
                    / status.name / f"{status.attempt}.log")
        with contextlib.suppress(OSError):
            lines = log_file.read_text(errors="replace").splitlines()[-FALLBACK_LINES:]
            text = "\n".join(_cri_log_text(line) for line in lines)[-FALLBACK_BYTES:]
    if status.message and status.reason == "OOMKilled" and text:
        return f"{status.message}: {text}"
    return text or status.message


def _cri_log_text(line: str) -> str:
    parts = line.split(" ", 3)
    return parts[3] if len(parts) == 4 else line


def hosts_file(pod: Mapping[str, Any], pod_ip: str, *, cluster_domain: str,
               host_network: bool) -> str:
    """kubelet's managed ``/etc/hosts`` for a pod."""
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    aliases = ""
    for alias in _list(spec.get("hostAliases")):
        if isinstance(alias, dict) and alias.get("ip"):
            aliases += f"{alias['ip']}\t" + "\t".join(str(h) for h in _list(
                alias.get("hostnames"))) + "\n"
    if aliases:
        aliases = "\n# Entries added by HostAliases.\n" + aliases
    if host_network:
        try:
            node_hosts = Path("/etc/hosts").read_text()
        except OSError:
            node_hosts = ""
        return "# Kubernetes-managed hosts file (host network).\n" + node_hosts + aliases
    hostname = str(spec.get("hostname") or meta.get("name") or "")[:63].rstrip("-.")
    subdomain = spec.get("subdomain")
    line = f"{pod_ip}\t{hostname}\n"
    if subdomain:
        domain = f"{subdomain}.{meta.get('namespace') or 'default'}.svc.{cluster_domain}"
        line = f"{pod_ip}\t{hostname}.{domain}\t{hostname}\n"
    return HOSTS_HEADER + (line if pod_ip else "") + aliases
