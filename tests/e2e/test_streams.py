"""kubectl logs, exec, attach, port-forward and top on edge pods (issue 12), with kubectl as the
client against the real control plane, containerd, cloudcore, edgecore and metrics-server,
and no iptables: the API server dials the edge node's own loopback address, which lands on
CloudStream (docs/streams.md).

Also: node isolation on the tunnel, callers other than the API server refused, bad frames
and unknown objects answered clearly, and killed `kubectl exec -it` / `logs -f` (one and
fifty) leaving no stream, task or file descriptor behind on either side.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import os
import re
import select
import signal
import ssl
import struct
import subprocess
import termios
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType

from pykubeedge.cloud.cloudhub.certs import CA_DATA, CA_KEY_DATA, CA_SECRET, KUBEEDGE_NAMESPACE
from pykubeedge.core.errors import NotFound
from pykubeedge.core.stream import Frame, MessageType, encode_frame
from pykubeedge.devcluster.kubeletaccess import KUBELET_CLIENT, METRICS_CLIENT
from pykubeedge.devcluster.process import free_port
from pykubeedge.keadm.localup import LocalUp
from pykubeedge.kube.resources import PODS, SECRETS
from pykubeedge.transport import certs, tls
from tests.conftest import eventually

pytestmark = [pytest.mark.integration, pytest.mark.full, pytest.mark.timeout(600)]

TALKER = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "talker", "namespace": "default"},
    "spec": {"containers": [
        {"name": "talk", "image": "busybox:1.35", "command": [
            "sh", "-c", 'i=0; while true; do echo "line $i"; echo "oops $i" >&2; '
                        "i=$((i+1)); sleep 0.5; done"]},
        {"name": "side", "image": "busybox:1.35", "command": [
            "sh", "-c", "while true; do echo side; sleep 1; done"]}]},
}
RESTARTER = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "restarter", "namespace": "default"},
    "spec": {"containers": [{"name": "once", "image": "busybox:1.35", "command": [
        "sh", "-c", 'echo "run $(cat /proc/sys/kernel/random/uuid)"; sleep 2; exit 1']}]},
}


@pytest.fixture(scope="module")
async def up(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalUp]:
    async with LocalUp(tier="full", workdir=tmp_path_factory.mktemp("streams"),
                       runtime="containerd", network="bridge", bridge="pkest0",
                       pod_subnet="10.254.82.0/24") as local:
        assert local.kube is not None
        for pod in (TALKER, RESTARTER):
            spec = {**pod, "spec": {**pod["spec"], "nodeName": local.node}}  # type: ignore[dict-item]
            await local.kube.create(PODS, spec, namespace="default")
        await eventually(lambda: running(local, "talker"), timeout=60, what="talker Running")
        yield local


async def running(up: LocalUp, name: str) -> bool:
    assert up.kube is not None
    pod = await up.kube.get(PODS, name, namespace="default")
    return (pod.get("status") or {}).get("phase") == "Running"


def run(up: LocalUp, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", str(up.cluster.kubeconfig), *args],
                          capture_output=True, text=True, timeout=timeout)


async def k(up: LocalUp, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run, up, *args, timeout=timeout)


async def ok(up: LocalUp, *args: str) -> str:
    out = await k(up, *args)
    assert out.returncode == 0, out.stderr
    return out.stdout


async def demo_pod(up: LocalUp) -> str:
    return (await ok(up, "get", "pods", "-l", "app=pykubeedge-demo", "-o",
                     "jsonpath={.items[0].metadata.name}")).strip()


# -- counters on both sides -------------------------------------------------------------------


def client_ssl(up: LocalUp, name: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # as the API server without --kubelet-certificate-authority
    ctx.load_cert_chain(up.cluster.pki_file(f"{name}.crt"), up.cluster.pki_file(f"{name}.key"))
    return ctx


async def cloud_vars(up: LocalUp) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(
            f"https://127.0.0.1:{up.stream_port}/debug/vars",
            ssl=client_ssl(up, KUBELET_CLIENT)) as resp:
        assert resp.status == 200, await resp.text()
        doc: dict[str, Any] = orjson.loads(await resp.read())
        return doc


async def edge_vars(up: LocalUp) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{up.kubelet_port}/debug/vars") as resp:
        doc: dict[str, Any] = orjson.loads(await resp.read())
        return doc


async def streams_in_use(up: LocalUp) -> dict[str, int]:
    cloud, edge = await cloud_vars(up), await edge_vars(up)
    server = cloud["cloudstream"]["stream_server"]
    tunnel = server["tunnels"].get(up.node, {})
    edged = edge[f"edged-server:{up.node}"]
    stream = edge[f"edgestream:{up.node}"]
    return {"cloud_streams": server["open_streams"], "cloud_tunnel": tunnel.get("streams", 0),
            "edge_streams": stream["open_streams"], "edge_handlers": stream["handlers"],
            "edge_logs": edged["open_logs"], "edge_relays": edged["open_relays"]}


def fds(pid: int | None) -> int:
    assert pid is not None
    return len(os.listdir(f"/proc/{pid}/fd"))


class Usage(NamedTuple):
    """File descriptors and tasks of cloudcore and edgecore, and what the tasks are."""

    cloud_fds: int
    edge_fds: int
    cloud_tasks: int
    edge_tasks: int
    kinds: dict[str, dict[str, int]]

    def counts(self) -> tuple[int, int, int, int]:
        return self.cloud_fds, self.edge_fds, self.cloud_tasks, self.edge_tasks


async def baseline(up: LocalUp) -> Usage:
    """What cloudcore and edgecore hold once no stream is open (what an earlier test ended
    may still be closing)."""
    async def idle() -> bool:
        return not any((await streams_in_use(up)).values())

    await eventually(idle, timeout=30, interval=0.2, what="no stream open")
    cloud, edge = await cloud_vars(up), await edge_vars(up)
    return Usage(fds(up.cloudcore.pid), fds(up.edgecore.pid), cloud["tasks"], edge["tasks"],  # type: ignore[union-attr]
                 {"cloudcore": cloud["task_kinds"], "edgecore": edge["task_kinds"]})


async def back_to(up: LocalUp, before: Usage) -> None:
    """Nothing left open: no stream on either side, and no more file descriptors or tasks
    than before (a few seconds are allowed for the sockets to close). On failure, says
    which tasks are new."""
    last: list[Usage] = [before]

    async def clean() -> bool:
        last[0] = await baseline(up)
        return all(now <= was for now, was in zip(last[0].counts(), before.counts(),
                                                  strict=True))

    try:
        await eventually(clean, timeout=30, interval=0.2, what="streams, tasks and fds freed")
    except AssertionError as exc:
        names = ("cloudcore fds", "edgecore fds", "cloudcore tasks", "edgecore tasks")
        counts = ", ".join(f"{n} {was} -> {now}" for n, was, now in
                           zip(names, before.counts(), last[0].counts(), strict=True))
        grown = {proc: {k: n for k, n in kinds.items() if n > before.kinds[proc].get(k, 0)}
                 for proc, kinds in last[0].kinds.items()}
        raise AssertionError(f"{exc}: {counts}; more tasks: {grown}") from None


# -- a terminal for kubectl -it ---------------------------------------------------------------


class Terminal:
    """kubectl on a real pty (40 rows x 100 columns), read and written by the test."""

    def __init__(self, argv: list[str]) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                     start_new_session=True, close_fds=True)
        os.close(slave)
        self.master = master
        self.seen = b""

    def expect(self, pattern: bytes, timeout: float = 20.0) -> bytes:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.seen):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{pattern!r} not seen; got {self.seen[-400:]!r}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    data = b""
                if not data:
                    raise AssertionError(f"{pattern!r} not seen before EOF: {self.seen!r}")
                self.seen += data
        return self.seen

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait(10)
        os.close(self.master)


# -- the tests --------------------------------------------------------------------------------


async def test_logs_with_tail_timestamps_since_and_container(up: LocalUp) -> None:
    # five seconds of lines (four a second), so that --since=2s is a part of them
    await eventually(lambda: _lines(run(up, "logs", "talker", "-c", "talk").stdout) >= 20,
                     timeout=30, interval=0.5, what="twenty lines logged")
    tail = (await ok(up, "logs", "talker", "-c", "talk", "--tail=2")).splitlines()
    assert len(tail) == 2 and all(re.fullmatch(r"(line|oops) \d+", t) for t in tail)
    stamped = (await ok(up, "logs", "talker", "-c", "talk", "--tail=1", "--timestamps"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (line|oops) \d+\n", stamped)
    recent = (await ok(up, "logs", "talker", "-c", "talk", "--since=2s")).splitlines()
    everything = (await ok(up, "logs", "talker", "-c", "talk")).splitlines()
    assert 0 < len(recent) < len(everything)
    assert set((await ok(up, "logs", "talker", "-c", "side", "--tail=3")).split()) == {"side"}
    assert (await ok(up, "logs", "talker", "-c", "talk", "--limit-bytes=4")) in ("line", "oops")


def _lines(text: str) -> int:
    return len(text.splitlines())


async def test_logs_follow_streams_new_lines(up: LocalUp) -> None:
    proc = await asyncio.create_subprocess_exec(
        "kubectl", "--kubeconfig", str(up.cluster.kubeconfig), "logs", "-f", "talker",
        "-c", "talk", "--tail=1", stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        seen = [await asyncio.wait_for(proc.stdout.readline(), 20) for _ in range(4)]
        numbers = [int(line.split()[1]) for line in seen]
        assert numbers == sorted(numbers) and numbers[-1] > numbers[0]
    finally:
        proc.kill()
        await proc.wait()


async def test_logs_previous_after_a_restart(up: LocalUp) -> None:
    assert up.kube is not None

    async def restarted() -> bool:
        pod = await up.kube.get(PODS, "restarter", namespace="default")  # type: ignore[union-attr]
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        return bool(statuses) and statuses[0].get("restartCount", 0) >= 1

    await eventually(restarted, timeout=60, what="restarter restarted")
    previous = await ok(up, "logs", "restarter", "--previous")
    assert re.fullmatch(r"run [0-9a-f-]{36}\n", previous)
    current = await k(up, "logs", "restarter")
    assert current.returncode == 0 and previous not in current.stdout
    await no_crashlooping_pod(up)


async def no_crashlooping_pod(up: LocalUp) -> None:
    """The restarter gone, before a leak check: a pod in CrashLoopBackOff changes edgecore's
    task count as it goes between running and backing off."""
    assert up.kube is not None
    with contextlib.suppress(NotFound):
        await up.kube.delete(PODS, "restarter", namespace="default", grace_period_seconds=0)

    async def gone() -> bool:
        try:
            await up.kube.get(PODS, "restarter", namespace="default")  # type: ignore[union-attr]
        except NotFound:
            return True
        return False

    await eventually(gone, timeout=60, what="the restarter deleted")


async def test_exec_propagates_output_and_exit_code(up: LocalUp) -> None:
    out = await k(up, "exec", "talker", "-c", "talk", "--", "sh", "-c",
                  "echo out; echo err >&2; exit 3")
    assert out.returncode == 3
    assert out.stdout == "out\n" and "err" in out.stderr
    assert (await ok(up, "exec", "talker", "-c", "side", "--", "cat", "/proc/1/cmdline")
            ).startswith("sh")


async def test_exec_with_a_terminal(up: LocalUp) -> None:
    term = Terminal(["kubectl", "--kubeconfig", str(up.cluster.kubeconfig), "exec", "-it",
                     "talker", "-c", "talk", "--", "sh"])
    try:
        await asyncio.to_thread(term.expect, rb"/ # ")
        term.send("echo tty-$((6*7)); tty\r")
        seen = await asyncio.to_thread(term.expect, rb"tty-42\r\n/dev/pts/\d+")
        assert b"tty-42" in seen
        term.send("stty size\r")
        await asyncio.to_thread(term.expect, rb"40 100")
        term.send("exit 7\r")
        code = await asyncio.to_thread(term.proc.wait, 20)
        assert code == 7
    finally:
        term.close()


async def test_attach_shows_the_main_process_output(up: LocalUp) -> None:
    proc = await asyncio.create_subprocess_exec(
        "kubectl", "--kubeconfig", str(up.cluster.kubeconfig), "attach", "talker", "-c", "side",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        lines = [await asyncio.wait_for(proc.stdout.readline(), 20) for _ in range(2)]
        assert lines == [b"side\n", b"side\n"]
    finally:
        proc.kill()
        await proc.wait()


async def test_port_forward_to_the_demo_httpd(up: LocalUp) -> None:
    pod = await demo_pod(up)
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        "kubectl", "--kubeconfig", str(up.cluster.kubeconfig), "port-forward", f"pod/{pod}",
        f"{port}:8080", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        assert b"Forwarding from" in await asyncio.wait_for(proc.stdout.readline(), 20)
        async with aiohttp.ClientSession() as http:
            for _ in range(3):  # each request: a new stream on the same SPDY connection
                async with http.get(f"http://127.0.0.1:{port}/etc/demo/greeting") as resp:
                    assert resp.status == 200
                    assert await resp.text() == "hello from the cloud"
    finally:
        proc.kill()
        await proc.wait()
    assert "response:200" in await ok(up, "logs", pod, "--tail=5")


async def test_killed_exec_and_follow_leave_nothing_behind(up: LocalUp) -> None:
    await no_crashlooping_pod(up)
    before = await baseline(up)
    term = Terminal(["kubectl", "--kubeconfig", str(up.cluster.kubeconfig), "exec", "-it",
                     "talker", "-c", "talk", "--", "sh"])
    follow = await asyncio.create_subprocess_exec(
        "kubectl", "--kubeconfig", str(up.cluster.kubeconfig), "logs", "-f", "talker",
        "-c", "talk", stdout=asyncio.subprocess.PIPE)
    try:
        await asyncio.to_thread(term.expect, rb"/ # ")
        assert follow.stdout is not None
        await asyncio.wait_for(follow.stdout.readline(), 20)
        live = await streams_in_use(up)
        # (a metrics-server scrape may be in flight too)
        assert live["cloud_streams"] >= 2 and live["edge_relays"] == 1
        assert live["edge_logs"] == 1
    finally:
        os.killpg(term.proc.pid, signal.SIGKILL)
        follow.kill()
        await follow.wait()
        term.close()
    await back_to(up, before)


async def test_fifty_concurrent_follows_on_one_node(up: LocalUp) -> None:
    await no_crashlooping_pod(up)
    before = await baseline(up)
    procs = [await asyncio.create_subprocess_exec(
        "kubectl", "--kubeconfig", str(up.cluster.kubeconfig), "logs", "-f", "talker",
        "-c", "talk", "--tail=1", stdout=asyncio.subprocess.PIPE)
        for _ in range(50)]
    try:
        async def two_lines(proc: asyncio.subprocess.Process) -> list[bytes]:
            assert proc.stdout is not None
            return [await proc.stdout.readline() for _ in range(2)]

        got = await asyncio.wait_for(asyncio.gather(*(two_lines(p) for p in procs)), 120)
        assert all(re.fullmatch(rb"(line|oops) \d+\n", line) for pair in got for line in pair)
        live = await streams_in_use(up)
        assert live["cloud_streams"] >= 50 and live["edge_logs"] == 50
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await asyncio.gather(*(p.wait() for p in procs))
    await back_to(up, before)


# -- isolation and refusals --------------------------------------------------------------------


async def node_identity(up: LocalUp, node: str) -> tuple[bytes, certs.KeyPair]:
    """The CloudHub CA and a certificate it signed for ``node`` (as a joining node gets)."""
    assert up.kube is not None
    secret = await up.kube.get(SECRETS, CA_SECRET, namespace=KUBEEDGE_NAMESPACE)
    ca = certs.KeyPair(certs.parse_certificate(base64.b64decode(secret["data"][CA_DATA]), "ca"),
                       certs.parse_ec_key(base64.b64decode(secret["data"][CA_KEY_DATA]), "key"))
    return ca.cert_pem(), certs.issue(ca, f"system:node:{node}", orgs=["system:nodes"],
                                      client=True)


async def dial_tunnel(up: LocalUp, ca_pem: bytes, pair: certs.KeyPair, node: str,
                      http: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
    ctx = tls.client_context(ca_pem, pair.cert_pem(), pair.key_pem())
    return await http.ws_connect(
        f"wss://127.0.0.1:{up.tunnel_port}/v1/kubeedge/connect", ssl=ctx, autoping=False,
        decode_text=False, headers={"SessionHostNameOverride": node,
                                    "SessionInternalIP": "127.0.0.9"})


def client_with(pair: certs.KeyPair, tmp: Path) -> ssl.SSLContext:
    """A client context for a certificate the server does not verify (blocking: files)."""
    (tmp / "c.crt").write_bytes(pair.cert_pem())
    (tmp / "c.key").write_bytes(pair.key_pem())
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.load_cert_chain(tmp / "c.crt", tmp / "c.key")
    return ctx


def cluster_ca(up: LocalUp) -> certs.KeyPair:
    return certs.KeyPair(
        certs.parse_certificate(up.cluster.pki_file("ca.crt").read_bytes(), "ca.crt"),
        certs.parse_ec_key(up.cluster.pki_file("ca.key").read_bytes(), "ca.key"))


async def test_a_tunnel_serves_only_its_own_node(up: LocalUp) -> None:
    ca_pem, pair = await node_identity(up, "edge-intruder")
    connects = (await edge_vars(up))[f"edgestream:{up.node}"]["connects"]
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await dial_tunnel(up, ca_pem, pair, up.node, http)
        assert refused.value.status == 403
        ws = await dial_tunnel(up, ca_pem, pair, "edge-intruder", http)
        try:
            assert (await ok(up, "logs", "talker", "-c", "side", "--tail=1")) == "side\n"
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.receive(), 1.0)  # nothing of edge-node's came here
        finally:
            await ws.close()
    assert (await edge_vars(up))[f"edgestream:{up.node}"]["connects"] == connects


async def test_only_the_api_server_may_call_the_kubelet_endpoint(up: LocalUp,
                                                                 tmp_path: Path) -> None:
    mallory = certs.issue(await asyncio.to_thread(cluster_ca, up), "mallory",
                          orgs=["developers"], client=True)
    ctx = await asyncio.to_thread(client_with, mallory, tmp_path)
    base = f"https://{up.node_ip}:{up.stream_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/metrics/resource", ssl=ctx) as resp:
            assert resp.status == 403
            assert await resp.text() == ("Forbidden (user=mallory, verb=get, resource=nodes, "
                                         "subresource(s)=[metrics])\n")
        # metrics-server's identity may read metrics, not logs
        async with http.get(f"{base}/metrics/resource",
                            ssl=client_ssl(up, METRICS_CLIENT)) as resp:
            assert resp.status == 200 and "node_cpu_usage_seconds_total" in await resp.text()
        async with http.get(f"{base}/containerLogs/default/talker/side",
                            ssl=client_ssl(up, METRICS_CLIENT)) as resp:
            assert resp.status == 403
        anonymous = ssl.create_default_context()
        anonymous.check_hostname, anonymous.verify_mode = False, ssl.CERT_NONE
        with pytest.raises(aiohttp.ClientError):
            async with http.get(f"{base}/healthz", ssl=anonymous) as resp:
                await resp.read()


async def test_bad_frames_and_unknown_objects_get_clear_errors(up: LocalUp) -> None:
    ca_pem, pair = await node_identity(up, "edge-fuzz")
    async with aiohttp.ClientSession() as http:
        ws = await dial_tunnel(up, ca_pem, pair, "edge-fuzz", http)
        try:
            for junk in (b"\xff" * 12, b"", bytes.fromhex("0907"),
                         encode_frame(Frame(77, MessageType.DATA, b"x" * (2 << 20))),
                         encode_frame(Frame(1, MessageType.EXEC_CONNECT, b"{not json")),
                         encode_frame(Frame(0, MessageType.CLOSE_CONNECT, b"junk"))):
                await ws.send_frame(junk, WSMsgType.TEXT)
            await ws.ping(b"still there?")
            pong = await asyncio.wait_for(ws.receive(), 10)
            while pong.type != WSMsgType.PONG:  # refusals of the frames that named a connection
                pong = await asyncio.wait_for(ws.receive(), 10)
            assert pong.data == b"still there?"
            tunnels = (await cloud_vars(up))["cloudstream"]["stream_server"]["tunnels"]
            assert tunnels["edge-fuzz"]["bad_frames"] >= 4
        finally:
            await ws.close()
    assert (await ok(up, "logs", "talker", "-c", "side", "--tail=1")) == "side\n"
    missing = await k(up, "logs", "no-such-pod")
    assert missing.returncode != 0 and 'pods "no-such-pod" not found' in missing.stderr
    never = await k(up, "logs", "talker", "-c", "side", "--previous")
    assert never.returncode != 0
    assert 'previous terminated container "side" in pod "talker" not found' in never.stderr


async def test_top_node_and_pod_through_metrics_server(up: LocalUp) -> None:
    async def top() -> bool:
        nodes, pods = await k(up, "top", "node"), await k(up, "top", "pod")
        return (nodes.returncode == 0 and up.node in nodes.stdout and pods.returncode == 0
                and "talker" in pods.stdout and "demo-" in pods.stdout)

    await eventually(top, timeout=120, interval=2, what="kubectl top answering")
    row = next(line for line in (await ok(up, "top", "pod")).splitlines()
               if line.startswith("talker"))
    _, cpu, memory = row.split()[:3]
    assert re.fullmatch(r"\d+m", cpu) and re.fullmatch(r"\d+Mi", memory)
    node_row = (await ok(up, "top", "node", up.node, "--no-headers")).split()
    assert node_row[0] == up.node and node_row[1].endswith("m")


async def test_the_node_points_the_api_server_at_cloudstream(up: LocalUp) -> None:
    address = await ok(up, "get", "node", up.node, "-o", "jsonpath={.status.addresses[?(@.type"
                       '=="InternalIP")].address} {.status.daemonEndpoints.kubeletEndpoint.Port}')
    assert address.split() == [up.node_ip, str(up.stream_port)]

