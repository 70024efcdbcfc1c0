"""A pod's files on the node, laid out as kubelet lays them (kubelet's volume manager, for the
volume types Edged resolves itself):

- configMap/secret/projected files under ``<pods_dir>/<uid>/volumes/pykubeedge.io~files/<vol>``,
  mounted read-only; any other volume a container mounts is an emptyDir under
  ``volumes/kubernetes.io~empty-dir/<vol>``;
- container logs under ``<pod_logs_dir>/<namespace>_<name>_<uid>/<container>/<attempt>.log``.

Every name that becomes a path is checked (no ``..``, no ``/``, no NUL), and a subPath may not
leave its volume through a symlink the container planted. The calls block (disk): run them in a
thread::

    volumes = PodVolumes("/var/lib/kubelet/pods", "/var/log/pods")
    await asyncio.to_thread(volumes.prepare, sandbox_config)
    mounts = await asyncio.to_thread(volumes.mounts, uid, spec.mounts)
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from pykubeedge.edge.edged.runtime import ContainerRuntimeError, Mount, SandboxConfig

DEFAULT_PODS_DIR: Final = "/var/lib/kubelet/pods"
DEFAULT_POD_LOGS_DIR: Final = "/var/log/pods"
FILES_VOLUMES: Final = "pykubeedge.io~files"
"""Subdirectory of ``volumes/`` for configMap/secret/projected files (mounted read-only)."""
EMPTY_DIR_VOLUMES: Final = "kubernetes.io~empty-dir"


def pod_log_dir(logs_dir: str | Path, namespace: str, name: str, uid: str) -> Path:
    """``<logs_dir>/<namespace>_<name>_<uid>``, kubelet's pod log directory.

    >>> str(pod_log_dir("/var/log/pods", "default", "web", "u1"))
    '/var/log/pods/default_web_u1'
    """
    for value, what in ((namespace, "pod namespace"), (name, "pod name"), (uid, "pod UID")):
        safe_component(value, what)
    return Path(logs_dir) / f"{namespace}_{name}_{uid}"


def safe_component(value: str, what: str) -> str:
    """``value`` if it can be one path component; else :class:`ContainerRuntimeError`."""
    if not value or value in (".", "..") or "/" in value or "\x00" in value:
        raise ContainerRuntimeError(f"invalid {what} {value!r}")
    return value


def _safe_relative(value: str, what: str) -> PurePosixPath:
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts or "\x00" in value:
        raise ContainerRuntimeError(f"invalid {what} {value!r}: must be a relative path "
                                    "without '..'")
    return path


@dataclass(frozen=True, slots=True)
class HostMount:
    """Where a container's mount comes from on the node."""

    container_path: str
    host_path: str
    read_only: bool


class PodVolumes:
    """The pod directories under ``pods_dir`` and ``pod_logs_dir``."""

    def __init__(self, pods_dir: str | Path = DEFAULT_PODS_DIR,
                 pod_logs_dir: str | Path = DEFAULT_POD_LOGS_DIR) -> None:
        self.pods_dir = Path(pods_dir)
        self.pod_logs_dir = Path(pod_logs_dir)

    def pod_dir(self, uid: str) -> Path:
        return self.pods_dir / safe_component(uid, "pod UID")

    def log_dir(self, namespace: str, name: str, uid: str) -> Path:
        return pod_log_dir(self.pod_logs_dir, namespace, name, uid)

    def prepare(self, config: SandboxConfig) -> None:
        """Write the volume files (replacing what an earlier sandbox left) and make the log
        directory."""
        volumes = self.pod_dir(config.uid) / "volumes" / FILES_VOLUMES
        for name, files in config.volumes.items():
            target = volumes / safe_component(name, "volume name")
            checked = [(_safe_relative(rel, f"path in volume {name!r}"), data)
                       for rel, data in files.items()]
            staging = volumes / f".{name}.new"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True, mode=0o755)
            for rel, data in checked:
                path = staging / rel
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
                path.write_bytes(data)
                path.chmod(0o644)
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        self.log_dir(config.namespace, config.name, config.uid).mkdir(
            parents=True, exist_ok=True, mode=0o755)

    def mounts(self, uid: str, mounts: Iterable[Mount]) -> list[HostMount]:
        """The host side of a container's volume mounts (making emptyDirs as needed).

        A volume whose files Edged resolved (configMap, secret, projected) is mounted
        read-only from ``volumes/pykubeedge.io~files/<name>``; any other is an emptyDir.
        """
        volumes = self.pod_dir(uid) / "volumes"
        result = []
        for mount in mounts:
            name = safe_component(mount.volume, "volume name")
            files = volumes / FILES_VOLUMES / name
            read_only = mount.read_only
            if files.is_dir():
                source, read_only = files, True
            else:
                source = volumes / EMPTY_DIR_VOLUMES / name
                if not source.is_dir():
                    source.mkdir(parents=True)
                    source.chmod(0o777)  # as kubelet's emptyDir, whatever the umask
            if mount.sub_path:
                source = self._sub_path(source, name, mount.sub_path)
            result.append(HostMount(mount.path, str(source), read_only))
        return result

    @staticmethod
    def _sub_path(source: Path, volume: str, sub_path: str) -> Path:
        volume_root = source.resolve()
        source = source / _safe_relative(sub_path, "subPath")
        # A container may have planted a symlink in its volume (ln -s / x): a subPath through
        # it must not reach the host (kubelet's CVE-2017-1002101).
        if not source.resolve().is_relative_to(volume_root):
            raise ContainerRuntimeError(
                f"subPath {sub_path!r} of volume {volume!r} leaves the volume")
        if not source.exists():
            source.mkdir(parents=True, mode=0o777)
            if not source.resolve().is_relative_to(volume_root):
                raise ContainerRuntimeError(
                    f"subPath {sub_path!r} of volume {volume!r} leaves the volume")
        return source

    def remove(self, namespace: str, name: str, uid: str) -> None:
        """Remove the pod's volume files and logs (after its last sandbox is gone)."""
        try:
            dirs = (self.pod_dir(uid), self.log_dir(namespace, name, uid))
        except ContainerRuntimeError:
            return  # not a pod we laid out: its names would not be paths
        for directory in dirs:
            shutil.rmtree(directory, ignore_errors=True)
