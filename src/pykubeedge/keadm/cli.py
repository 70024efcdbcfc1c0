"""``keadm``: install and run pykubeedge.

    keadm local-up                 # control plane (+ later: cloudcore, an edge node, a demo)
    keadm local-up --tier full     # with kube-scheduler and kube-controller-manager
    keadm gettoken --kube-config ~/.kube/config
    keadm join --cloudcore-ipport=192.168.1.10:10000 --token=$TOKEN --edgenode-name=edge-1
    keadm reset --force            # remove what `keadm join` wrote
    keadm ctl unhold-upgrade pod web -n default    # on an edge node: release a held pod
    keadm version
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import shutil
import signal
import socket
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from pykubeedge import __version__
from pykubeedge.cloud.cloudhub.certs import read_token
from pykubeedge.core.config import load_edgecore_config
from pykubeedge.core.errors import ConfigError, PyKubeEdgeError
from pykubeedge.edge.edgehub.certificate import bootstrap
from pykubeedge.keadm.ctl import ctl
from pykubeedge.keadm.join import edgecore_config_for_join, write_edgecore_config
from pykubeedge.keadm.localup import LocalUp
from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.config import load_kubeconfig
from pykubeedge.transport.token import is_valid_node_name, split_token

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="keadm: set up pykubeedge (KubeEdge in Python).")
console = Console(stderr=True)
app.add_typer(ctl, name="ctl")


@app.command()
def version() -> None:
    """Print keadm's version."""
    typer.echo(f"keadm {__version__}")


@app.command("local-up")
def local_up(
    tier: Annotated[str, typer.Option(help="minimal (etcd+apiserver) or full "
                                           "(+scheduler, controller-manager)")] = "full",
    bin_dir: Annotated[Path | None, typer.Option(
        help="use control-plane binaries from this directory instead of building them",
        envvar="PYKUBEEDGE_K8S_BIN_DIR")] = None,
    workdir: Annotated[Path | None, typer.Option(
        help="keep state and logs here (default: a temporary directory)")] = None,
    node: Annotated[str, typer.Option(help="the edge node's name")] = "edge-node",
    cloudhub_port: Annotated[int, typer.Option(help="CloudHub websocket port")] = 10000,
    https_port: Annotated[int, typer.Option(help="CloudHub certificate port")] = 10002,
    metaserver_port: Annotated[int, typer.Option(help="the edge's MetaServer port")] = 10550,
    mqtt_port: Annotated[int, typer.Option(
        help="port of the edge's internal MQTT broker (mosquitto)")] = 1884,
    stream_port: Annotated[int, typer.Option(
        help="CloudStream's kubelet-facing port (the edge node's kubelet endpoint)")] = 10003,
    tunnel_port: Annotated[int, typer.Option(help="CloudStream's tunnel port")] = 10004,
    kubelet_port: Annotated[int, typer.Option(
        help="Edged's kubelet server (read-only port) on 127.0.0.1")] = 10350,
    router_port: Annotated[int, typer.Option(
        help="the cloud Router's REST port for rules (docs/router.md)")] = 9443,
    servicebus_port: Annotated[int, typer.Option(
        help="the edge ServiceBus's port for local callers")] = 9060,
    demo: Annotated[bool, typer.Option(help="deploy the demo workload")] = True,
    runtime: Annotated[str, typer.Option(
        help="containerd (a private containerd runs the pods) or fake (in memory)")] =
        "containerd",
    run_for: Annotated[float | None, typer.Option(
        help="stop after this many seconds (smoke tests); default: until Ctrl-C")] = None,
) -> None:
    """Run the whole system on this machine until Ctrl-C: control plane, cloudcore, an edge
    node joined with a token (with its MQTT broker), a demo Deployment and a demo device."""
    if tier not in ("minimal", "full"):
        _fail("local-up", f"--tier must be 'minimal' or 'full', not {tier!r}", 2)
    if runtime not in ("containerd", "fake"):
        _fail("local-up", f"--runtime must be 'containerd' or 'fake', not {runtime!r}", 2)
    if not is_valid_node_name(node):
        _fail("local-up", f"--node {node!r} is not a valid node name", 2)
    for flag, port in (("--cloudhub-port", cloudhub_port), ("--https-port", https_port),
                       ("--metaserver-port", metaserver_port), ("--mqtt-port", mqtt_port),
                       ("--stream-port", stream_port), ("--tunnel-port", tunnel_port),
                       ("--kubelet-port", kubelet_port), ("--router-port", router_port),
                       ("--servicebus-port", servicebus_port)):
        if not 0 <= port < 65536:
            _fail("local-up", f"{flag} {port} is not a port number", 2)
    if workdir:
        workdir.mkdir(parents=True, exist_ok=True)
    up = LocalUp(tier=tier, workdir=workdir, bin_dir=bin_dir, node=node,  # type: ignore[arg-type]
                 demo=demo, runtime=runtime, ws_port=cloudhub_port, https_port=https_port,
                 metaserver_port=metaserver_port, mqtt_port=mqtt_port,
                 stream_port=stream_port, tunnel_port=tunnel_port, kubelet_port=kubelet_port,
                 router_port=router_port, servicebus_port=servicebus_port)
    try:
        asyncio.run(_local_up(up, run_for))
    except PyKubeEdgeError as exc:
        _fail("local-up", exc)
    except OSError as exc:
        _fail("local-up", f"{exc.strerror or exc} (is another local-up running? "
                          "choose other ports with --cloudhub-port etc.)")


async def _local_up(up: LocalUp, run_for: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    status = console.status("preparing the control plane")

    def progress(msg: str) -> None:
        status.update(msg[:120])
        if not msg.startswith("go: "):
            console.log(msg)

    up.progress = up.cluster.progress = progress
    started = loop.time()
    with status:
        start = asyncio.create_task(up.start())
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({start, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not start.done():
            start.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await start
            await up.stop()
            console.print("interrupted; stopped")
            return
    try:
        start.result()
        _print_summary(up, loop.time() - started)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(run_for):
                await stop.wait()
    finally:
        console.print("stopping")
        await up.stop()


def _print_summary(up: LocalUp, seconds: float) -> None:
    kubeconfig = up.cluster.kubeconfig
    version = up.cluster.binaries.kube_version if up.cluster.binaries else "?"
    console.print(f"[green]pykubeedge is up[/] in {seconds:.0f}s (Kubernetes {version}, "
                  f"tier {up.tier})")
    console.print(f"  kubeconfig:  {kubeconfig}")
    console.print(f"  edge node:   {up.node} (CloudHub 127.0.0.1:{up.ws_port}, "
                  f"MetaServer {up.metaserver})")
    console.print(f"  rules:       Router http://127.0.0.1:{up.router_port}/<node>/<namespace>/"
                  f"<path>, ServiceBus 127.0.0.1:{up.servicebus_port} (docs/router.md)")
    console.print(f"  logs:        {up.workdir}/{{cloudcore,edgecore}}.log")
    console.print("  try:")
    console.print(f"    kubectl --kubeconfig {kubeconfig} get nodes")
    console.print(f"    kubectl --kubeconfig {kubeconfig} get pods -o wide")
    console.print(f"    kubectl --server {up.metaserver} get pods -A      # the edge's view")
    if up.demo:  # through CloudStream and the node's tunnel (docs/streams.md)
        demo = "deploy/demo" if up.tier == "full" else "pod/demo-0"
        console.print(f"    kubectl --kubeconfig {kubeconfig} logs {demo}")
        console.print(f"    kubectl --kubeconfig {kubeconfig} exec -it {demo} -- sh")
        console.print(f"    kubectl --kubeconfig {kubeconfig} port-forward {demo} 8080:8080")
    if up.metrics is not None:
        console.print(f"    kubectl --kubeconfig {kubeconfig} top pod    # after ~30 s: two "
                      "metrics-server scrapes")
    if up.demo:
        console.print(f"    kubectl --kubeconfig {kubeconfig} get devices,devicestatuses")
        console.print(f"    curl http://127.0.0.1:{up.mapper_http_port}/api/v1/device/default/"
                      "demo-thermometer/temperature   # the virtual mapper (docs/mappers.md)")
    console.print("  watch the edge's MQTT (the virtual mapper reports the demo device every "
                  "few seconds):")
    console.print(f"    {up.mosquitto_sub}")
    console.print("Press Ctrl-C to stop everything.")


# -- join / gettoken / reset ------------------------------------------------------------------

DEFAULT_CONFIG_DIR = Path("/etc/kubeedge")
DEFAULT_CERT_PORT = 10002
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*"
                          r"[A-Za-z0-9])?)*$")
_LABEL_KEY_RE = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*"
                           r"[A-Za-z0-9])?$")
_LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
EDGECORE_UNIT = """\
[Unit]
Description=edgecore.service
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={exe} --config {config}
Restart=always
RestartSec=10

[Install]
WantedBy=multi-user.target
"""


def _fail(command: str, message: object, code: int = 1) -> NoReturn:
    """One line on stderr and an exit code: 2 for bad arguments, 1 for failures."""
    text = " ".join(str(message).split()) or type(message).__name__
    typer.echo(f"keadm {command}: error: {text}", err=True)
    raise typer.Exit(code)


def parse_host_port(value: str, flag: str) -> tuple[str, int]:
    """``"10.0.0.1:10000"`` -> ``("10.0.0.1", 10000)``; ``[::1]:10000`` for IPv6."""
    host, sep, port_text = value.strip().rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{flag} {value!r} must be HOST:PORT, e.g. 192.168.1.10:10000")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"{flag} {value!r}: {host!r} is not an IPv6 address") from None
        return host, int(port_text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if len(host) > 253 or not _HOSTNAME_RE.match(host):
            raise ConfigError(f"{flag} {value!r}: {host!r} is neither an IP address nor a "
                              "host name") from None
    return host, int(port_text)


def parse_labels(value: str) -> dict[str, str]:
    """``"a=b,c=d"`` -> ``{"a": "b", "c": "d"}``, keys and values checked as Kubernetes does."""
    labels: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in value.split(","))):
        key, sep, val = item.partition("=")
        if not sep or not _LABEL_KEY_RE.match(key) or len(key.rpartition("/")[2]) > 63:
            raise ConfigError(f"--labels: {item!r} is not a valid key=value label")
        if len(val) > 63 or not _LABEL_VALUE_RE.match(val):
            raise ConfigError(f"--labels: the value of {key!r} is not a valid label value")
        labels[key] = val
    return labels


async def _gettoken(kube_config: Path | None) -> str:
    async with KubeClient(load_kubeconfig(kube_config), timeout=10) as kube:
        return await read_token(kube)


@app.command()
def gettoken(
    kube_config: Annotated[Path | None, typer.Option(
        "--kube-config", help="kubeconfig of the cluster cloudcore runs in "
                              "(default: $KUBECONFIG, then ~/.kube/config)")] = None,
) -> None:
    """Print the token edge nodes join with (from Secret kubeedge/tokensecret)."""
    try:
        token = asyncio.run(_gettoken(kube_config))
    except PyKubeEdgeError as exc:
        _fail("gettoken", exc)
    typer.echo(token)


@app.command()
def join(
    cloudcore_ipport: Annotated[str, typer.Option(
        "--cloudcore-ipport", "-e", help="CloudHub's websocket address, HOST:PORT "
                                         "(port 10000 by default)")] = "",
    token: Annotated[str, typer.Option(
        "--token", "-t", help="the token from `keadm gettoken`")] = "",
    edgenode_name: Annotated[str, typer.Option(
        "--edgenode-name", "-i", help="this node's name (default: the host name)")] = "",
    certport: Annotated[int, typer.Option(
        "--certport", "-s", help="CloudHub's HTTPS (certificate) port")] = DEFAULT_CERT_PORT,
    config_dir: Annotated[Path, typer.Option(
        "--config-dir", help="where config/, ca/ and certs/ go")] = DEFAULT_CONFIG_DIR,
    labels: Annotated[str, typer.Option(
        "--labels", "-l", help="node labels, key=value[,key=value]")] = "",
    print_unit: Annotated[bool, typer.Option(
        "--print-unit", help="print a systemd unit for edgecore instead of starting it")] = False,
    no_start: Annotated[bool, typer.Option(
        "--no-start", help="write the config and certificates only")] = False,
) -> None:
    """Join this machine to cloudcore: write edgecore.yaml, get certificates, start edgecore."""
    node = edgenode_name.strip() or socket.gethostname().lower()
    try:
        if not cloudcore_ipport.strip():
            raise ConfigError("--cloudcore-ipport is required (HOST:PORT of CloudHub)")
        host, port = parse_host_port(cloudcore_ipport, "--cloudcore-ipport")
        if not 0 < certport < 65536:
            raise ConfigError(f"--certport {certport} is not a port number")
        if not token.strip():
            raise ConfigError("--token is empty; get one on the cloud side with "
                              "`keadm gettoken`")
        split_token(token)
        if not is_valid_node_name(node):
            raise ConfigError(f"--edgenode-name {node!r} is not a valid node name (lower-case "
                              "letters, digits, '-' and '.', at most 253 characters)")
        node_labels = parse_labels(labels)
    except PyKubeEdgeError as exc:
        _fail("join", exc, 2)

    config_dir = config_dir.absolute()
    cfg = edgecore_config_for_join(host, port, certport, token.strip(), node, config_dir,
                                   node_labels)
    config_file = config_dir / "config" / "edgecore.yaml"
    try:
        write_edgecore_config(config_file, cfg)
        paths = asyncio.run(bootstrap(cfg))
        cfg.modules.edgeHub.token = ""  # the certificate replaces it; don't leave it lying around
        write_edgecore_config(config_file, cfg)
    except PyKubeEdgeError as exc:
        _fail("join", exc)
    except OSError as exc:
        _fail("join", f"cannot write under {config_dir}: {exc.strerror} ({exc.filename})")
    typer.echo(f"node {node} joined: config {config_file}, certificate {paths.cert}", err=True)

    exe = shutil.which("edgecore")
    if print_unit:
        typer.echo(EDGECORE_UNIT.format(exe=exe or "/usr/local/bin/edgecore",
                                        config=config_file), nl=False)
        return
    if no_start:
        return
    if exe is None:
        _fail("join", "edgecore is not on PATH; install pykubeedge or use --print-unit")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(exe, [exe, "--config", str(config_file)])


@app.command()
def reset(
    config_dir: Annotated[Path, typer.Option(
        "--config-dir", help="the --config-dir given to `keadm join`")] = DEFAULT_CONFIG_DIR,
    force: Annotated[bool, typer.Option("--force", help="do not ask")] = False,
) -> None:
    """Remove what `keadm join` wrote on this node: edgecore.yaml, the CA and the certificate."""
    config_dir = config_dir.absolute()
    config_file = config_dir / "config" / "edgecore.yaml"
    files = [config_file, config_dir / "ca" / "rootCA.crt", config_dir / "certs" / "server.crt",
             config_dir / "certs" / "server.key"]
    with contextlib.suppress(PyKubeEdgeError):
        hub = load_edgecore_config(config_file).modules.edgeHub
        # Only files inside --config-dir: a config file is no licence to delete elsewhere.
        for name in (hub.tlsCaFile, hub.tlsCertFile, hub.tlsPrivateKeyFile):
            p = Path(name).absolute()
            if p.is_relative_to(config_dir) and p not in files:
                files.append(p)
    existing = [f for f in files if f.is_file() or f.is_symlink()]
    if not existing:
        typer.echo(f"nothing to reset under {config_dir}", err=True)
        return
    if not force:
        typer.confirm("remove " + ", ".join(map(str, existing)) + "?", abort=True)
    try:
        for f in existing:
            f.unlink(missing_ok=True)
        for d in {f.parent for f in existing}:
            with contextlib.suppress(OSError):  # only if now empty
                d.rmdir()
    except OSError as exc:
        _fail("reset", f"{exc.filename}: {exc.strerror}")
    typer.echo(f"removed {len(existing)} file(s) under {config_dir}", err=True)


def main() -> None:
    sys.exit(app())
