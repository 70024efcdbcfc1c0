"""The OCI archive of local images: a valid layout whose digests match, deterministic."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from pykubeedge.devcluster.localimages import (
    PAUSE_IMAGE,
    ImageConfig,
    busybox_layer,
    go_arch,
    oci_archive,
    write_local_images,
)
from pykubeedge.edge.edged.runtime import ContainerRuntimeError

APPLETS = ["bin/sh", "bin/sleep", "usr/bin/env", "sbin/ifconfig"]


@pytest.fixture
def fake_busybox(tmp_path: Path) -> Path:
    path = tmp_path / "busybox"
    path.write_bytes(b"\x7fELF not really busybox")
    return path


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def read(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read()


def blob(archive: bytes, digest: str) -> bytes:
    data = read(archive, "blobs/sha256/" + digest.removeprefix("sha256:"))
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    return data


def test_layer_has_busybox_its_applets_and_etc(fake_busybox: Path) -> None:
    layer = busybox_layer(fake_busybox, APPLETS)
    entries = members(layer)
    binary = entries["bin/busybox"]
    assert binary.isfile() and binary.mode == 0o755
    assert read(layer, "bin/busybox") == fake_busybox.read_bytes()
    for applet in APPLETS:
        assert entries[applet].issym()
        assert entries[applet].linkname == "/bin/busybox"
    assert entries["tmp"].mode == 0o1777
    assert b"root:x:0:0" in read(layer, "etc/passwd")
    assert {e.uid for e in entries.values()} == {0}
    assert busybox_layer(fake_busybox, APPLETS) == layer  # deterministic


def test_archive_is_an_oci_layout_with_matching_digests(fake_busybox: Path) -> None:
    layer = busybox_layer(fake_busybox, APPLETS)
    images = [ImageConfig(names=("docker.io/library/busybox:latest", "busybox:1"), cmd=("sh",)),
              ImageConfig(names=(PAUSE_IMAGE,), entrypoint=("/bin/sleep", "1000"))]
    archive = oci_archive(layer, images, arch="arm64")
    assert json.loads(read(archive, "oci-layout")) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(read(archive, "index.json"))
    names = [m["annotations"]["io.containerd.image.name"] for m in index["manifests"]]
    assert names == ["docker.io/library/busybox:latest", "busybox:1", PAUSE_IMAGE]
    configs: dict[str, Any] = {}
    for entry in index["manifests"]:
        assert entry["platform"] == {"architecture": "arm64", "os": "linux"}
        manifest = json.loads(blob(archive, entry["digest"]))
        assert len(blob(archive, entry["digest"])) == entry["size"]
        [layer_ref] = manifest["layers"]
        assert blob(archive, layer_ref["digest"]) == layer
        config = json.loads(blob(archive, manifest["config"]["digest"]))
        assert config["rootfs"]["diff_ids"] == [layer_ref["digest"]]  # uncompressed layer
        configs[entry["annotations"]["io.containerd.image.name"]] = config["config"]
    assert configs["busybox:1"]["Cmd"] == ["sh"]
    assert configs[PAUSE_IMAGE]["Entrypoint"] == ["/bin/sleep", "1000"]
    # one layer blob shared by both images
    assert sum(n.startswith("blobs/sha256/") for n in members(archive)) == 1 + 2 * 2


def test_write_local_images_returns_every_name(fake_busybox: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pykubeedge.devcluster.localimages.busybox_applets",
                        lambda _: APPLETS)
    dest = tmp_path / "out" / "images.tar"
    names = write_local_images(dest, busybox=fake_busybox)
    assert PAUSE_IMAGE in names
    assert "docker.io/library/busybox:latest" in names
    assert tarfile.is_tarfile(dest)
    assert not dest.with_name("images.tar.partial").exists()


def test_a_missing_busybox_is_a_clear_error(tmp_path: Path) -> None:
    from pykubeedge.devcluster.localimages import busybox_applets

    with pytest.raises(ContainerRuntimeError, match="cannot list the applets"):
        busybox_applets(tmp_path / "no-busybox")


def test_go_arch_names() -> None:
    assert go_arch("x86_64") == "amd64"
    assert go_arch("aarch64") == "arm64"
    assert go_arch("armv7l") == "arm"
