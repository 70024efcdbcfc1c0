"""Edged's volume manager (kubelet's volume plugins for the types an edge node serves): lays out
a pod's volumes under ``<pods_dir>/<uid>/volumes/<plugin>/<volume>`` and tells each container
where its mounts come from on the node.

- ``hostPath``: the path itself, after kubelet's ``type`` checks (``DirectoryOrCreate`` makes
  it, ``File`` must be a regular file, ...); ``..`` is refused.
- ``emptyDir``: a 0777 directory; ``medium: Memory`` is a tmpfs of
  ``min(sizeLimit, the pod's memory limit, node memory)``.
- ``configMap``, ``secret``, ``downwardAPI``, ``projected`` (configMap, secret, downwardAPI,
  serviceAccountToken): files written by kubelet's atomic writer (a timestamped directory,
  ``..data`` swapped by one rename, user-visible symlinks), so a refresh is seen whole by the
  container; called again on every pod sync, it rewrites only when the content changed.
  Secret, downwardAPI and projected volumes sit on a tmpfs, as kubelet's.

Any other volume type is refused by :func:`unsupported_volume` before a pod is admitted.
The calls block (disk, mount): run them in a thread. ``pods_dir=None`` keeps nothing on disk
(the fake runtime: simulation at scale)::

    manager = VolumeManager("/var/lib/kubelet/pods")
    mounts = await asyncio.to_thread(manager.setup, pod, payloads)   # {volume: host path}
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Any, Final

from pykubeedge.core.errors import PyKubeEdgeError
from pykubeedge.core.objects import uid_of

log = logging.getLogger(__name__)

EMPTY_DIR: Final = "kubernetes.io~empty-dir"
CONFIGMAP: Final = "kubernetes.io~configmap"
SECRET: Final = "kubernetes.io~secret"
DOWNWARD_API: Final = "kubernetes.io~downward-api"
PROJECTED: Final = "kubernetes.io~projected"
PLUGINS: Final = {"configMap": CONFIGMAP, "secret": SECRET, "downwardAPI": DOWNWARD_API,
                  "projected": PROJECTED}
ON_TMPFS: Final = frozenset({SECRET, DOWNWARD_API, PROJECTED})
SERVED: Final = frozenset({"hostPath", "emptyDir", *PLUGINS})
"""The volume types Edged serves."""
DATA_DIR: Final = "..data"
MAX_PATH: Final = 4096
MAX_NAME: Final = 255

_MS_NOSUID: Final = 2
_MS_NODEV: Final = 4
_MNT_DETACH: Final = 2
_libc = ctypes.CDLL(None, use_errno=True)


class VolumeError(PyKubeEdgeError):
    """A volume could not be set up (kubelet's ``MountVolume.SetUp failed``)."""


@dataclass(frozen=True, slots=True)
class File:
    """One file of a configMap/secret/downwardAPI/projected volume."""

    data: bytes
    mode: int = 0o644


Payload = Mapping[str, File]
"""Relative path -> file: what a configMap/secret/... volume holds."""


def volume_type(volume: Mapping[str, Any]) -> str:
    """The volume source key (``hostPath``, ``persistentVolumeClaim``, ...); ``""`` if none.

    >>> volume_type({"name": "v", "emptyDir": {}})
    'emptyDir'
    """
    keys = [k for k in volume if k != "name"]
    return keys[0] if len(keys) == 1 else ""


def unsupported_volume(volume: Mapping[str, Any]) -> str:
    """Why Edged cannot serve ``volume`` (``""`` if it can).

    >>> unsupported_volume({"name": "data", "persistentVolumeClaim": {"claimName": "c"}})
    'volume "data": persistentVolumeClaim volumes are not supported by Edged'
    """
    kind = volume_type(volume)
    name = volume.get("name")
    if not kind:
        return f'volume "{name}" has no (or more than one) volume source'
    if kind not in SERVED:
        return f'volume "{name}": {kind} volumes are not supported by Edged'
    if kind == "emptyDir":
        medium = (volume.get("emptyDir") or {}).get("medium") or ""
        if medium not in ("", "Memory"):
            return f'volume "{name}": unknown storage medium "{medium}"'
    if kind == "projected":
        for source in (volume.get("projected") or {}).get("sources") or []:
            for key in source or {}:
                if key not in ("configMap", "secret", "downwardAPI", "serviceAccountToken"):
                    return (f'volume "{name}": projected {key} sources are not supported by '
                            "Edged")
    return ""


def _check_relative(path: str, what: str) -> PurePosixPath:
    pure = PurePosixPath(path)
    if (not path or pure.is_absolute() or ".." in pure.parts or path.startswith("..")
            or "\x00" in path or len(path) > MAX_PATH
            or any(len(p) > MAX_NAME for p in pure.parts)):
        raise VolumeError(f"invalid {what} {path!r}: must be a relative path without '..'")
    return pure


def _safe_component(value: str, what: str) -> str:
    if not value or value in (".", "..") or "/" in value or "\x00" in value:
        raise VolumeError(f"invalid {what} {value!r}")
    return value


# -- hostPath -----------------------------------------------------------------------------------


def check_host_path(path: str, kind: str) -> None:
    """kubelet's hostPath ``type`` checks (and creations); :class:`VolumeError` with its text.

    >>> check_host_path("/", "Directory")
    """
    if ".." in PurePosixPath(path).parts:
        raise VolumeError(f"invalid HostPath `{path}`: must not contain '..'")
    if not kind:
        return
    try:
        info = os.stat(path)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise VolumeError(f"hostPath type check failed: {path}: {exc.strerror}") from None
    if info is None:
        if kind == "DirectoryOrCreate":
            os.makedirs(path, 0o755, exist_ok=True)
            return
        if kind == "FileOrCreate":
            try:
                fd = os.open(path, os.O_CREAT | os.O_RDONLY, 0o644)
            except OSError as exc:
                raise VolumeError(f"hostPath type check failed: {path}: {exc.strerror}") \
                    from None
            os.close(fd)
            return
    checks = {
        "DirectoryOrCreate": (stat.S_ISDIR, "is not a directory"),
        "Directory": (stat.S_ISDIR, "is not a directory"),
        "FileOrCreate": (stat.S_ISREG, "is not a file"),
        "File": (stat.S_ISREG, "is not a file"),
        "Socket": (stat.S_ISSOCK, "is not a socket file"),
        "CharDevice": (stat.S_ISCHR, "is not a character device"),
        "BlockDevice": (stat.S_ISBLK, "is not a block device"),
    }
    if kind not in checks:
        raise VolumeError(f"{kind} is an invalid volume type")
    test, text = checks[kind]
    if info is None or not test(info.st_mode):
        raise VolumeError(f"hostPath type check failed: {path} {text}")


# -- the atomic writer --------------------------------------------------------------------------


def write_atomic(target: Path, payload: Payload, *, gid: int | None = None) -> bool:
    """kubelet's AtomicWriter: make ``target`` hold exactly ``payload``; False when nothing
    changed (nothing is written then)."""
    checked = {str(_check_relative(rel, "file path")): f for rel, f in payload.items()}
    target.mkdir(parents=True, exist_ok=True)
    data_link = target / DATA_DIR
    old_dir = os.readlink(data_link) if data_link.is_symlink() else ""
    if old_dir and _same(target / old_dir, checked):
        return False
    stamp = datetime.datetime.now(datetime.UTC).strftime("..%Y_%m_%d_%H_%M_%S.")
    new_dir = Path(tempfile.mkdtemp(prefix=stamp, dir=target))
    new_dir.chmod(0o755)
    for rel, f in checked.items():
        path = new_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f.data)
        path.chmod(f.mode)
        if gid is not None:
            with contextlib.suppress(OSError):
                os.chown(path, -1, gid)
    tmp_link = target / "..data_tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp_link.unlink()
    tmp_link.symlink_to(new_dir.name)
    os.rename(tmp_link, data_link)
    top = {PurePosixPath(rel).parts[0] for rel in checked}
    for name in top:
        link = target / name
        if not link.is_symlink():
            link.symlink_to(f"{DATA_DIR}/{name}")
    for entry in target.iterdir():
        if not entry.name.startswith("..") and entry.name not in top and entry.is_symlink():
            entry.unlink()
    if old_dir:
        shutil.rmtree(target / old_dir, ignore_errors=True)
    return True


def _same(directory: Path, payload: Mapping[str, File]) -> bool:
    found: dict[str, tuple[bytes, int]] = {}
    for root, _dirs, files in os.walk(directory):
        for name in files:
            path = Path(root, name)
            found[str(path.relative_to(directory))] = (path.read_bytes(),
                                                      stat.S_IMODE(path.stat().st_mode))
    return found == {rel: (f.data, f.mode) for rel, f in payload.items()}


# -- mounts -------------------------------------------------------------------------------------


def _mount_tmpfs(path: Path, size: int) -> None:
    options = f"size={size}".encode() if size > 0 else b""
    if _libc.mount(b"tmpfs", str(path).encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV,
                   options or None) != 0:
        errno = ctypes.get_errno()
        raise VolumeError(f"mount of a tmpfs at {path} failed: {os.strerror(errno)}")


def _is_mount(path: Path) -> bool:
    try:
        return os.path.ismount(path)
    except OSError:
        return False


def unmount_under(directory: Path) -> None:
    """Unmount everything mounted below ``directory`` (deepest first)."""
    prefix = str(directory).rstrip("/") + "/"
    points: list[str] = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4:
                point = fields[4].replace("\\040", " ")
                if point.startswith(prefix):
                    points.append(point)
    for point in sorted(points, key=len, reverse=True):
        _libc.umount2(point.encode(), _MNT_DETACH)


class VolumeManager:
    """The volumes of the pods under ``pods_dir`` (None: in memory only)."""

    def __init__(self, pods_dir: str | Path | None) -> None:
        self.pods_dir = Path(pods_dir) if pods_dir is not None else None

    def pod_dir(self, uid: str) -> Path:
        base = self.pods_dir if self.pods_dir is not None else Path("/nonexistent/pods")
        return base / _safe_component(uid, "pod UID")

    def volume_dir(self, uid: str, plugin: str, name: str) -> Path:
        return self.pod_dir(uid) / "volumes" / plugin / _safe_component(name, "volume name")

    def setup(self, pod: Mapping[str, Any], payloads: Mapping[str, Payload], *,
              memory_limit: int = 0, gid: int | None = None) -> dict[str, str]:
        """Set up (or refresh) every volume of ``pod``; the host path of each.

        ``payloads``: the files of each configMap/secret/downwardAPI/projected volume.
        ``memory_limit``: the ceiling of a memory-backed emptyDir (bytes, 0: none).
        """
        uid = uid_of(pod)
        paths: dict[str, str] = {}
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            name = str(volume.get("name") or "")
            kind = volume_type(volume)
            try:
                paths[name] = self._setup_one(uid, name, kind, volume, payloads, memory_limit,
                                              gid)
            except VolumeError as exc:
                raise VolumeError(f'MountVolume.SetUp failed for volume "{name}" : {exc}') \
                    from None
            except OSError as exc:
                raise VolumeError(f'MountVolume.SetUp failed for volume "{name}" : '
                                  f"{exc.strerror or exc}") from None
        return paths

    def _setup_one(self, uid: str, name: str, kind: str, volume: Mapping[str, Any],
                   payloads: Mapping[str, Payload], memory_limit: int,
                   gid: int | None) -> str:
        if kind == "hostPath":
            source = volume.get("hostPath") or {}
            path = str(source.get("path") or "")
            if self.pods_dir is not None:
                check_host_path(path, str(source.get("type") or ""))
            return path
        if kind == "emptyDir":
            target = self.volume_dir(uid, EMPTY_DIR, name)
            if self.pods_dir is None:
                return str(target)
            source = volume.get("emptyDir") or {}
            fresh = not target.is_dir()
            target.mkdir(parents=True, exist_ok=True)
            if source.get("medium") == "Memory" and not _is_mount(target):
                limit = parse_quantity(str(source.get("sizeLimit") or "0"))
                sizes = [s for s in (limit, memory_limit) if s > 0]
                _mount_tmpfs(target, min(sizes) if sizes else 0)
                fresh = True
            if fresh:
                target.chmod(0o777)
                if gid is not None:
                    with contextlib.suppress(OSError):
                        os.chown(target, -1, gid)
                        target.chmod(0o2777)
            return str(target)
        plugin = PLUGINS[kind]
        target = self.volume_dir(uid, plugin, name)
        if self.pods_dir is None:
            return str(target)
        if plugin in ON_TMPFS and not _is_mount(target):
            target.mkdir(parents=True, exist_ok=True)
            _mount_tmpfs(target, 0)
        write_atomic(target, payloads.get(name, {}), gid=gid)
        return str(target)

    def usage(self, uid: str, name: str) -> int:
        """Bytes used by an emptyDir (the sizeLimit check)."""
        total = 0
        for root, _dirs, files in os.walk(self.volume_dir(uid, EMPTY_DIR, name)):
            for file in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(root, file)).st_blocks * 512
        return total

    def remove(self, uid: str) -> None:
        """Unmount and remove the pod's directory: volumes, termination logs, /etc/hosts
        (after its containers are gone)."""
        if self.pods_dir is None:
            return
        try:
            directory = self.pod_dir(uid)
        except VolumeError:
            return
        if directory.is_dir():
            unmount_under(directory)
            shutil.rmtree(directory, ignore_errors=True)


# -- quantities ---------------------------------------------------------------------------------

_SUFFIXES: Final = {
    "Ki": Fraction(2**10), "Mi": Fraction(2**20), "Gi": Fraction(2**30), "Ti": Fraction(2**40),
    "Pi": Fraction(2**50), "Ei": Fraction(2**60), "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "k": Fraction(10**3),
    "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12), "P": Fraction(10**15),
    "E": Fraction(10**18),
}


def parse_quantity(text: str) -> int:
    """A resource quantity in whole units, rounded up (``"1Gi"`` -> 1073741824).

    >>> parse_quantity("64Mi"), parse_quantity("1.5"), parse_quantity("100m")
    (67108864, 2, 1)
    """
    return -(-parse_milli(text) // 1000)


def parse_milli(text: str) -> int:
    """A quantity in thousandths, rounded up (``"250m"`` -> 250, ``"2"`` -> 2000); a
    malformed one raises ValueError.

    >>> parse_milli("250m"), parse_milli("1Ki"), parse_milli("1e3")
    (250, 1024000, 1000000)
    """
    value = text.strip()
    if not value:
        return 0
    factor = Fraction(1)
    for suffix in ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"):
        if value.endswith(suffix):
            value, factor = value[:-2], _SUFFIXES[suffix]
            break
    else:
        if value[-1] in "numkMGTPE":
            value, factor = value[:-1], _SUFFIXES[value[-1]]
        elif "e" in value.lower():
            mantissa, _, exponent = value.lower().partition("e")
            value, factor = mantissa, Fraction(10) ** int(exponent)
    exact = Fraction(value) * factor * 1000
    return int(-(-exact.numerator // exact.denominator))
