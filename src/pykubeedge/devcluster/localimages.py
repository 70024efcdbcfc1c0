"""Container images made on this machine, for machines that reach no image registry.

One OCI image archive holds a busybox image (a rootfs of the static ``/bin/busybox`` and its
applet links) and a pause image on the same layer (``sleep`` as its entrypoint), built with
plain ``tarfile`` and JSON, then imported with ``ctr images import``::

    names = await build_local_images(Path("/tmp/images.tar"))
    await import_images(Path("/tmp/images.tar"), address="/run/pke/containerd.sock")
    # names == ["docker.io/library/busybox:latest", ..., "docker.io/kubeedge/pause:3.6"]
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import platform
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pykubeedge.edge.edged.runtime import ContainerRuntimeError

BUSYBOX_BINARY: Final = Path("/bin/busybox")
BUSYBOX_IMAGES: Final = ("docker.io/library/busybox:latest", "docker.io/library/busybox:1.35")
PAUSE_IMAGE: Final = "docker.io/kubeedge/pause:3.6"
"""The sandbox image: KubeEdge's ``kubeedge/pause:3.6``, made locally."""

IMPORT_TIMEOUT: Final = 120.0
_MAX_CTR_OUTPUT: Final = 64 * 1024
_EPOCH: Final = 1_704_067_200  # 2024-01-01T00:00:00Z: same input, same digests
_CREATED: Final = "2024-01-01T00:00:00Z"
_PATH_ENV: Final = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_MANIFEST_TYPE: Final = "application/vnd.oci.image.manifest.v1+json"
_CONFIG_TYPE: Final = "application/vnd.oci.image.config.v1+json"
_LAYER_TYPE: Final = "application/vnd.oci.image.layer.v1.tar"
_GO_ARCH: Final = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
                   "armv7l": "arm", "armv6l": "arm", "i686": "386", "riscv64": "riscv64",
                   "ppc64le": "ppc64le", "s390x": "s390x"}


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """How one image built on the busybox layer runs."""

    names: tuple[str, ...]
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)


def default_images() -> list[ImageConfig]:
    """busybox (``sh`` by default) and the pause image (sleeps until killed)."""
    return [
        ImageConfig(names=BUSYBOX_IMAGES, cmd=("sh",)),
        ImageConfig(names=(PAUSE_IMAGE,), entrypoint=("/bin/sleep", "2147483647")),
    ]


def go_arch(machine: str | None = None) -> str:
    """The OCI ``architecture`` of this machine.

    >>> go_arch("x86_64"), go_arch("aarch64")
    ('amd64', 'arm64')
    """
    machine = (machine if machine is not None else platform.machine()).lower()
    return _GO_ARCH.get(machine, machine)


def busybox_applets(busybox: Path = BUSYBOX_BINARY) -> list[str]:
    """Paths (``bin/sh``, ``usr/bin/env``, ...) of the applets ``busybox`` provides.
    Blocking: it runs the binary."""
    try:
        out = subprocess.run(
            [str(busybox), "--list-full"], capture_output=True, check=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ContainerRuntimeError(f"cannot list the applets of {busybox}: {exc}") from exc
    applets = []
    for line in out.decode(errors="replace").splitlines():
        path = line.strip().lstrip("/")
        if path and ".." not in path.split("/") and path != "bin/busybox":
            applets.append(path)
    return sorted(set(applets))


def _info(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname = kind, mode, size, link
    info.mtime, info.uid, info.gid, info.uname, info.gname = _EPOCH, 0, 0, "", ""
    return info


_ROOT_DIRS: Final = {
    "bin": 0o755, "dev": 0o755, "etc": 0o755, "home": 0o755, "proc": 0o555, "root": 0o700,
    "sbin": 0o755, "sys": 0o555, "tmp": 0o1777, "usr": 0o755, "usr/bin": 0o755,
    "usr/sbin": 0o755, "var": 0o755,
}
_ETC_FILES: Final = {
    "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
    "etc/group": b"root:x:0:\nnobody:x:65534:\n",
}


def busybox_layer(busybox: Path = BUSYBOX_BINARY, applets: Sequence[str] | None = None) -> bytes:
    """An uncompressed layer tar: ``/bin/busybox``, its applet symlinks, a minimal ``/etc``.
    Deterministic (fixed times and owners, sorted). Blocking: reads the binary."""
    binary = busybox.read_bytes()
    if applets is None:
        applets = busybox_applets(busybox)
    dirs = dict(_ROOT_DIRS)
    for applet in applets:
        parent = applet.rpartition("/")[0]
        while parent and parent not in dirs:
            dirs[parent] = 0o755
            parent = parent.rpartition("/")[0]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(dirs):
            tar.addfile(_info(name, tarfile.DIRTYPE, dirs[name]))
        tar.addfile(_info("bin/busybox", tarfile.REGTYPE, 0o755, len(binary)),
                    io.BytesIO(binary))
        for name, content in sorted(_ETC_FILES.items()):
            tar.addfile(_info(name, tarfile.REGTYPE, 0o644, len(content)), io.BytesIO(content))
        for applet in applets:
            tar.addfile(_info(applet, tarfile.SYMTYPE, 0o777, link="/bin/busybox"))
    return buffer.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def oci_archive(layer: bytes, images: Sequence[ImageConfig], *, arch: str | None = None) -> bytes:
    """An OCI image-layout archive (``oci-layout``, ``index.json``, ``blobs/``) with one
    manifest per image, all on ``layer``; every name is an ``io.containerd.image.name``."""
    arch = arch or go_arch()
    layer_digest = _digest(layer)
    blobs: dict[str, bytes] = {layer_digest: layer}
    index: list[dict[str, Any]] = []
    for image in images:
        container_config: dict[str, Any] = {"Env": [_PATH_ENV], "WorkingDir": "/"}
        if image.entrypoint:
            container_config["Entrypoint"] = list(image.entrypoint)
        if image.cmd:
            container_config["Cmd"] = list(image.cmd)
        if image.labels:
            container_config["Labels"] = dict(image.labels)
        config = _json({
            "architecture": arch,
            "os": "linux",
            "created": _CREATED,
            "config": container_config,
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            "history": [{"created": _CREATED, "created_by": "pykubeedge localimages"}],
        })
        config_digest = _digest(config)
        blobs[config_digest] = config
        manifest = _json({
            "schemaVersion": 2,
            "mediaType": _MANIFEST_TYPE,
            "config": {"mediaType": _CONFIG_TYPE, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": _LAYER_TYPE, "digest": layer_digest, "size": len(layer)}],
        })
        manifest_digest = _digest(manifest)
        blobs[manifest_digest] = manifest
        for name in image.names:
            index.append({
                "mediaType": _MANIFEST_TYPE,
                "digest": manifest_digest,
                "size": len(manifest),
                "platform": {"architecture": arch, "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rpartition(":")[2],
                },
            })
    files = {
        "oci-layout": _json({"imageLayoutVersion": "1.0.0"}),
        "index.json": _json({"schemaVersion": 2, "manifests": index}),
    }
    for digest, data in blobs.items():
        files["blobs/sha256/" + digest.removeprefix("sha256:")] = data
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_info("blobs", tarfile.DIRTYPE, 0o755))
        tar.addfile(_info("blobs/sha256", tarfile.DIRTYPE, 0o755))
        for name, data in sorted(files.items()):
            tar.addfile(_info(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    return buffer.getvalue()


def write_local_images(
    dest: Path,
    *,
    busybox: Path = BUSYBOX_BINARY,
    images: Sequence[ImageConfig] | None = None,
) -> list[str]:
    """Write the archive to ``dest``; return the image names in it. Blocking."""
    images = list(images) if images is not None else default_images()
    data = oci_archive(busybox_layer(busybox), images)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    partial.write_bytes(data)
    partial.replace(dest)
    return [name for image in images for name in image.names]


async def build_local_images(
    dest: Path,
    *,
    busybox: Path = BUSYBOX_BINARY,
    images: Sequence[ImageConfig] | None = None,
) -> list[str]:
    """:func:`write_local_images` in a thread."""
    return await asyncio.to_thread(write_local_images, dest, busybox=busybox, images=images)


async def import_images(
    archive: Path,
    *,
    address: str,
    namespace: str = "k8s.io",
    snapshotter: str = "overlayfs",
    ctr: str = "ctr",
    timeout: float = IMPORT_TIMEOUT,
) -> None:
    """``ctr --address ADDRESS -n NAMESPACE images import ARCHIVE`` (unpacked for
    ``snapshotter``, so CRI can use the images at once)."""
    argv = [ctr, "--address", address.removeprefix("unix://"), "--namespace", namespace,
            "images", "import", "--snapshotter", snapshotter, str(archive)]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
    except OSError as exc:
        raise ContainerRuntimeError(f"cannot run {ctr}: {exc}") from exc
    try:
        async with asyncio.timeout(timeout):
            output = await _tail(proc)
    except BaseException as exc:  # a timeout, or Ctrl-C: ctr must not run on
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await asyncio.shield(proc.wait())
        if isinstance(exc, TimeoutError):
            raise ContainerRuntimeError(
                f"importing {archive} into {address} took more than {timeout:g}s") from None
        raise
    if proc.returncode != 0:
        text = output.decode(errors="replace").strip().replace("\n", "; ")
        raise ContainerRuntimeError(f"ctr images import {archive} failed: {text[-500:]}")


async def _tail(proc: asyncio.subprocess.Process) -> bytes:
    """Read the output to its end, keeping only its last bytes; then wait for the exit."""
    assert proc.stdout is not None
    output = b""
    while chunk := await proc.stdout.read(8192):
        output = (output + chunk)[-_MAX_CTR_OUTPUT:]
    await proc.wait()
    return output
