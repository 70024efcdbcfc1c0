"""PrivateContainerd's files: the config keeps everything private and has the two settings
these machines need."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from pykubeedge.devcluster.containerd import PrivateContainerd, _is_our_shim
from pykubeedge.edge.edged.runtime import ContainerRuntimeError


def test_config_points_every_path_into_the_private_directory(tmp_path: Path) -> None:
    ctd = PrivateContainerd(tmp_path, sandbox_image="example.org/pause:1")
    config = tomllib.loads(ctd.config())
    assert config["version"] == 2
    assert config["root"] == str(tmp_path / "root")
    assert config["state"] == str(tmp_path / "state")
    assert config["grpc"]["address"] == str(tmp_path / "containerd.sock")
    plugins = config["plugins"]
    assert plugins["io.containerd.internal.v1.opt"]["path"] == str(tmp_path / "opt")
    assert plugins["io.containerd.runtime.v1.linux"]["runtime_root"].startswith(str(tmp_path))
    cri = plugins["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["sandbox_image"] == "example.org/pause:1"
    assert cri["stream_server_port"] == "0"  # two private containerds never fight for a port
    assert cri["cni"]["conf_dir"] == str(tmp_path / "cni" / "net.d")
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"]["Root"] == str(tmp_path / "runc")
    assert ctd.endpoint == f"unix://{tmp_path}/containerd.sock"


def test_cni_config_per_network_mode(tmp_path: Path) -> None:
    assert PrivateContainerd(tmp_path, network="none").cni_config() is None
    loopback = PrivateContainerd(tmp_path, network="loopback").cni_config()
    assert loopback is not None
    assert [p["type"] for p in loopback["plugins"]] == ["loopback"]  # type: ignore[index]
    bridge = PrivateContainerd(tmp_path, network="bridge", pod_subnet="10.99.0.0/24",
                               bridge="pketest0").cni_config()
    text = json.dumps(bridge)
    assert '"bridge": "pketest0"' in text
    assert "10.99.0.0/24" in text
    assert str(tmp_path / "cni" / "ipam") in text


def test_a_socket_path_too_long_for_unix_sockets_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ContainerRuntimeError, match="longer than 107 bytes"):
        PrivateContainerd(tmp_path / ("x" * 120))


def test_shims_are_recognised_by_our_socket() -> None:
    argv = ["/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", "abc",
            "-address", "/tmp/pke/containerd.sock"]
    assert _is_our_shim(argv, "/tmp/pke/containerd.sock")
    assert not _is_our_shim(argv, "/run/containerd/containerd.sock")
    assert not _is_our_shim(["/usr/bin/containerd", "-address", "/tmp/pke/containerd.sock"],
                            "/tmp/pke/containerd.sock")


def test_shim_socket_path_is_containerds() -> None:
    # as containerd 1.6 named it for this address, namespace and sandbox id
    ctd = PrivateContainerd(Path("/tmp/pke-crash"))
    sandbox_id = "bd423c9a3821bdafc599d5a6f0bcf9653b1b9a2360c468880720298ab9b55225"
    assert ctd.shim_socket(sandbox_id) == Path(
        "/run/containerd/s/41d431b232c869c3f7b625ba2ae7183da450e6aae1e8663043d1c14a82b1d9a5")
