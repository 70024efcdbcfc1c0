"""A private mount namespace for upstream KubeEdge processes, so that what they write to their
fixed host paths (``/etc/kubeedge``, ``/var/lib/kubeedge``, ``/var/lib/kubelet``,
``/var/log/pods``, ...) stays inside a test's directory.

A holder process (``unshare --mount``) lays an overlay over ``/etc`` and ``/var``: everything
there stays readable, and every write lands in ``<base>/upper/``. Other processes join the
namespace with ``nsenter``, so an upstream edgecore and the containerd it drives see the same
mounts (the tmpfs volumes kubelet mounts must be visible to the runtime). When the last process
in it exits, the kernel drops the namespace and all its mounts::

    async with PrivateMounts(Path("/tmp/pke-ns")) as ns:
        proc = ManagedProcess("edgecore", ns.wrap([edgecore, "--config", cfg]), log_path)
        ...
        ns.upper("/etc/kubeedge/ca/rootCA.crt")   # where that write landed, seen from outside
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
from collections.abc import Sequence
from pathlib import Path

from pykubeedge.core.errors import ControlPlaneError
from pykubeedge.devcluster.process import ManagedProcess

OVERLAID = ("/etc", "/var")
READY_TIMEOUT_S = 10.0


def mount_points(mountinfo: str) -> list[str]:
    """The mount points listed in a ``/proc/<pid>/mountinfo`` text (octal escapes decoded)."""
    points: list[str] = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4:
            points.append(_unescape(fields[4]))
    return points


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape").encode("latin-1").decode()


def nested_mounts(points: Sequence[str], under: Sequence[str] = OVERLAID) -> list[str]:
    """Mounts strictly below one of ``under`` (an overlay there would hide them)."""
    return sorted({p for p in points for top in under if p.startswith(top.rstrip("/") + "/")})


def holder_script(base: Path, overlaid: Sequence[str], nested: Sequence[str]) -> str:
    """The shell run by the namespace's holder: keep nested mounts aside, lay the overlays,
    put the nested mounts back, say so, then sleep until killed."""
    q = shlex.quote
    lines = ["set -eu"]
    for i, point in enumerate(nested):
        lines.append(f"mount --rbind {q(point)} {q(str(base / 'keep' / str(i)))}")
    for top in overlaid:
        name = top.strip("/").replace("/", "_")
        upper, work = base / "upper" / name, base / "work" / name
        lines.append(f"mount -t overlay overlay -o lowerdir={q(top)},upperdir={q(str(upper))},"
                     f"workdir={q(str(work))} {q(top)}")
    for i, point in enumerate(nested):
        lines.append(f"mount --move {q(str(base / 'keep' / str(i)))} {q(point)}")
    lines.append(f"touch {q(str(base / 'ready'))}")
    lines.append("exec sleep infinity")
    return "\n".join(lines)


class PrivateMounts:
    """One private mount namespace, held open by a sleeping child."""

    def __init__(self, base: Path, overlaid: Sequence[str] = OVERLAID) -> None:
        self.base = base.absolute()
        self.overlaid = tuple(overlaid)
        self.holder: ManagedProcess | None = None

    async def __aenter__(self) -> PrivateMounts:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def ns_path(self) -> Path:
        assert self.holder is not None and self.holder.pid is not None
        return Path(f"/proc/{self.holder.pid}/ns/mnt")

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the namespace (absolute paths: nsenter starts it in ``/``)."""
        return ["nsenter", f"--mount={self.ns_path}", "--", *argv]

    def upper(self, path: str) -> Path:
        """Where a file written at ``path`` inside the namespace lies in the host's view."""
        for top in self.overlaid:
            if path == top or path.startswith(top.rstrip("/") + "/"):
                rel = path[len(top):].lstrip("/")
                return self.base / "upper" / top.strip("/").replace("/", "_") / rel
        return Path(path)  # not overlaid: shared with the host

    async def start(self) -> None:
        for tool in ("unshare", "nsenter", "mount"):
            if shutil.which(tool) is None:
                raise ControlPlaneError(f"{tool} not found (util-linux); it keeps upstream "
                                        "KubeEdge's writes private")
        points = mount_points(await asyncio.to_thread(Path("/proc/self/mountinfo").read_text))
        nested = nested_mounts(points, self.overlaid)
        await asyncio.to_thread(self._make_dirs, nested)
        self.holder = ManagedProcess(
            "mount namespace", ["unshare", "--mount", "--propagation", "private", "--",
                                "/bin/sh", "-c", holder_script(self.base, self.overlaid, nested)],
            self.base / "holder.log")
        await self.holder.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT_S
        while not (self.base / "ready").exists():
            if not self.holder.running:
                raise ControlPlaneError(
                    f"the private mount namespace could not be set up:\n{self.holder.log_tail()}")
            if loop.time() > deadline:
                raise ControlPlaneError(f"the private mount namespace was not ready in "
                                        f"{READY_TIMEOUT_S:g}s:\n{self.holder.log_tail()}")
            await asyncio.sleep(0.02)

    def _make_dirs(self, nested: Sequence[str]) -> None:
        for top in self.overlaid:
            name = top.strip("/").replace("/", "_")
            (self.base / "upper" / name).mkdir(parents=True, exist_ok=True)
            (self.base / "work" / name).mkdir(parents=True, exist_ok=True)
        for i, point in enumerate(nested):
            keep = self.base / "keep" / str(i)
            keep.parent.mkdir(parents=True, exist_ok=True)
            if Path(point).is_dir():
                keep.mkdir(exist_ok=True)
            else:
                keep.touch()
        (self.base / "ready").unlink(missing_ok=True)

    async def stop(self) -> None:
        """End the holder; the namespace goes when the processes that joined it are gone."""
        if self.holder is not None:
            await self.holder.stop()
