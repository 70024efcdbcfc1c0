"""Running upstream KubeEdge as a test peer: its config files and its private mount namespace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pykubeedge.core.errors import ControlPlaneError
from pykubeedge.devcluster.kubeedge_config import (
    CloudPeer,
    EdgePeer,
    cloudcore_config,
    edgecore_config,
    set_key,
)
from pykubeedge.devcluster.kubeedge_mountns import (
    PrivateMounts,
    holder_script,
    mount_points,
    nested_mounts,
)

# The parts of `edgecore --defaultconfig` / `cloudcore --defaultconfig` (v1.23.1) we touch.
EDGE_DEFAULTS: dict[str, Any] = {
    "apiVersion": "edgecore.config.kubeedge.io/v1alpha2", "kind": "EdgeCore",
    "database": {"dataSource": "/var/lib/kubeedge/edgecore.db"},
    "modules": {
        "deviceTwin": {"dmiSockPath": "/etc/kubeedge/", "enable": True},
        "edgeHub": {"httpServer": "https://192.0.2.2:10002", "token": "",
                    "tlsCaFile": "/etc/kubeedge/ca/rootCA.crt",
                    "tlsCertFile": "/etc/kubeedge/certs/server.crt",
                    "tlsPrivateKeyFile": "/etc/kubeedge/certs/server.key",
                    "websocket": {"enable": True, "server": "192.0.2.2:10000"}},
        "edged": {"hostnameOverride": "vm", "podSandboxImage": "kubeedge/pause:3.6",
                  "rootDirectory": "/var/lib/kubelet",
                  "tailoredKubeletConfig": {"cgroupDriver": "cgroupfs", "cgroupsPerQOS": True,
                                            "enforceNodeAllocatable": ["pods"]}},
        "eventBus": {"mqttMode": 2, "mqttServerInternal": "tcp://127.0.0.1:1884"},
    },
}
CLOUD_DEFAULTS: dict[str, Any] = {
    "commonConfig": {"monitorServer": {"bindAddress": "127.0.0.1:9091"}},
    "kubeAPIConfig": {"kubeConfig": ""},
    "modules": {
        "cloudHub": {"advertiseAddress": ["192.0.2.2"], "https": {"port": 10002},
                     "quic": {"enable": False}, "unixsocket": {"enable": True},
                     "websocket": {"address": "0.0.0.0", "port": 10000}},
        "cloudStream": {"enable": False}, "router": {"enable": False},
        "iptablesManager": {"enable": True, "mode": "internal"},
    },
}


def _edge(tmp_path: Path) -> EdgePeer:
    return EdgePeer(node="edge-node", workdir=tmp_path, cloudhub="127.0.0.1:4000",
                    cert_server="https://127.0.0.1:4002", token="abc.def",
                    runtime_endpoint="unix:///tmp/c/containerd.sock",
                    sandbox_image="docker.io/kubeedge/pause:3.6", read_only_port=4350,
                    mqtt_port=4884, labels={"disktype": "test"})


def test_edgecore_config_points_everything_at_the_test(tmp_path: Path) -> None:
    doc = edgecore_config(EDGE_DEFAULTS, _edge(tmp_path))
    m = doc["modules"]
    assert doc["database"]["dataSource"] == str(tmp_path / "edgecore.db")
    assert m["edgeHub"]["websocket"]["server"] == "127.0.0.1:4000"
    assert m["edgeHub"]["httpServer"] == "https://127.0.0.1:4002"
    assert m["edgeHub"]["token"] == "abc.def"
    assert m["edgeHub"]["tlsCertFile"] == str(tmp_path / "certs" / "server.crt")
    edged = m["edged"]
    assert (edged["hostnameOverride"], edged["nodeIP"]) == ("edge-node", "127.0.0.1")
    assert edged["nodeLabels"] == {"disktype": "test"}
    assert edged["rootDirectory"] == str(tmp_path / "kubelet")
    kubelet = edged["tailoredKubeletConfig"]
    assert kubelet["containerRuntimeEndpoint"] == kubelet["imageServiceEndpoint"] == \
        "unix:///tmp/c/containerd.sock"
    assert (kubelet["cgroupsPerQOS"], kubelet["enforceNodeAllocatable"]) == (False, [])
    assert kubelet["makeIPTablesUtilChains"] is False
    assert kubelet["readOnlyPort"] == 4350
    assert m["eventBus"] == {"mqttMode": 0, "mqttServerInternal": "tcp://127.0.0.1:4884"}
    assert EDGE_DEFAULTS["modules"]["edged"]["rootDirectory"] == "/var/lib/kubelet"  # a copy


def test_cloudcore_config_turns_off_what_touches_the_host(tmp_path: Path) -> None:
    doc = cloudcore_config(CLOUD_DEFAULTS, CloudPeer(
        kubeconfig=tmp_path / "kubeconfig", websocket_port=4000, https_port=4002,
        monitor_port=4091))
    hub = doc["modules"]["cloudHub"]
    assert hub["advertiseAddress"] == ["127.0.0.1"]
    assert (hub["websocket"]["address"], hub["websocket"]["port"]) == ("127.0.0.1", 4000)
    assert hub["https"] == {"port": 4002, "address": "127.0.0.1"}
    assert hub["unixsocket"]["enable"] is False
    assert doc["modules"]["iptablesManager"]["enable"] is False
    assert doc["commonConfig"]["monitorServer"]["bindAddress"] == "127.0.0.1:4091"
    assert doc["kubeAPIConfig"]["kubeConfig"] == str(tmp_path / "kubeconfig")


def test_a_key_upstream_does_not_have_is_an_error() -> None:
    with pytest.raises(ControlPlaneError, match=r"no modules\.edgeHub \(setting"):
        set_key({"modules": {}}, "modules.edgeHub.token", "x")
    with pytest.raises(ControlPlaneError, match="is not a map"):
        set_key({"modules": {"edgeHub": "x"}}, "modules.edgeHub.token", "x")


MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
40 27 254:0 /x /etc/resolv.conf rw - ext4 /dev/vda rw
41 27 0:50 / /var/lib/my\\040data rw - tmpfs tmpfs rw
42 27 0:51 / /etcetera rw - tmpfs tmpfs rw
"""


def test_mounts_below_the_overlaid_trees_are_kept() -> None:
    points = mount_points(MOUNTINFO)
    assert points == ["/proc", "/", "/etc/resolv.conf", "/var/lib/my data", "/etcetera"]
    assert nested_mounts(points) == ["/etc/resolv.conf", "/var/lib/my data"]


def test_the_holder_lays_overlays_and_puts_nested_mounts_back(tmp_path: Path) -> None:
    script = holder_script(tmp_path, ("/etc", "/var"), ["/etc/resolv.conf"]).splitlines()
    assert script[0] == "set -eu"
    assert script[1] == f"mount --rbind /etc/resolv.conf {tmp_path}/keep/0"
    assert script[2] == (f"mount -t overlay overlay -o lowerdir=/etc,upperdir={tmp_path}/upper/"
                         f"etc,workdir={tmp_path}/work/etc /etc")
    assert script[4] == f"mount --move {tmp_path}/keep/0 /etc/resolv.conf"
    assert script[-2:] == [f"touch {tmp_path}/ready", "exec sleep infinity"]


def test_where_a_private_write_lands(tmp_path: Path) -> None:
    ns = PrivateMounts(tmp_path)
    assert ns.upper("/etc/kubeedge/ca/rootCA.crt") == tmp_path / "upper/etc/kubeedge/ca/rootCA.crt"
    assert ns.upper("/var/lib/kubelet") == tmp_path / "upper/var/lib/kubelet"
    assert ns.upper("/tmp/x") == Path("/tmp/x")  # not overlaid
    assert ns.upper("/etcetera") == Path("/etcetera")
