"""The message fabric benchmark: one cloudcore process (real CloudHub, real mutual TLS on
loopback) and an edge simulator (many edge sessions from this process). It prints figures;
it asserts nothing about speed.

    python bench/fabric.py                      # 5,000 idle sessions, 100 edges x 200,000
                                                # messages, 1,000 edges reconnecting
    python bench/fabric.py --quick              # the same, small (well under a minute)
    python bench/fabric.py --phases throughput --messages 50000

Phases (each against a fresh cloudcore process, started with ``sys.executable``):

idle        ``--sessions`` lightweight edge clients (aiohttp ``ws_connect``: the EdgeHub URL,
            headers and client certificate; keepalive every 15 s; ACK "OK" to ACK messages)
            connect and stay idle; cloudcore's VmRSS before and after gives KB per session.
throughput  ``--edges`` real EdgeHub modules (each in its own Hive with an ACKing stand-in for
            MetaManager, an Outbox on SQLite) receive ``--messages`` pod updates; figures: time
            from the first push to the last ACK, ACK latency (controller hand-off to ACK,
            measured inside cloudcore) in bulk and at a paced rate; then the same with
            EdgeHub's default messageQPS 30 / burst 60, which throttles the edges' ACKs.
reconnect   ``--reconnect-edges`` real EdgeHubs with EdgeHub's own backoff (jitter on); the
            cloudcore process is killed (SIGKILL) and a new one started on the same port;
            figures: per edge, the time from the kill to its new session at CloudHub (and to
            EdgeHub's ``cloud_connected``).

The edge simulator shares the machine with cloudcore: the "CPU" figures tell which side was
the limit. SIGUSR1 dumps the simulator's asyncio tasks, SIGUSR2 every thread's stack.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import json
import logging
import os
import platform
import signal
import ssl
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import WSMsgType

from _benchutil import percentiles, raise_nofile
from pykubeedge.beehive import Hive, RestartPolicy
from pykubeedge.core import codec
from pykubeedge.core.config import DEFAULT_PROJECT_ID
from pykubeedge.core.constants import Content, Operation
from pykubeedge.core.message import new_message, response
from pykubeedge.edge.edgehub.hub import EdgeHub, EdgeHubSettings
from pykubeedge.edge.edgehub.outbox import Outbox
from pykubeedge.transport import certs
from pykubeedge.transport.tls import client_context

BENCH_DIR = Path(__file__).resolve().parent
CLOUD_SCRIPT = BENCH_DIR / "_cloudhub_proc.py"
ACK_OPS = frozenset({Operation.INSERT, Operation.UPDATE, Operation.DELETE})
CLK_TCK = os.sysconf("SC_CLK_TCK")
log = logging.getLogger("bench.fabric")


# -- small helpers -------------------------------------------------------------------------------

def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    after = stat[stat.rindex(")") + 2:].split()
    return (int(after[11]) + int(after[12])) / CLK_TCK  # utime + stime


def machine_busy() -> float:
    """CPU seconds all processes of the machine have used (from /proc/stat)."""
    fields_ = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields_[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def out(label: str, text: str) -> None:
    print(f"{label:<22} {text}", flush=True)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def dump_tasks() -> None:
    """SIGUSR1 (a debugging aid): the stack of every task of the edge simulator, to stderr."""
    for task in asyncio.all_tasks():
        task.print_stack(limit=8, file=sys.stderr)


def install_uvloop(disabled: bool) -> bool:
    if disabled:
        return False
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


# -- certificates --------------------------------------------------------------------------------

class BenchPKI:
    """A test CA, CloudHub's server certificate for 127.0.0.1, per-node client certificates
    (CN ``system:node:<name>``, O ``system:nodes``). One ECDSA key is shared by all node
    certificates: generating keys is not what is measured (the handshakes are the same)."""

    def __init__(self, workdir: Path) -> None:
        self.ca = certs.new_ca("KubeEdge")
        self.server = certs.issue(self.ca, "KubeEdge", orgs=["KubeEdge"], ips=["127.0.0.1"],
                                  server=True)
        self.node_key = certs.new_key()
        self.certdir = workdir / "cloud"
        self.certdir.mkdir(parents=True, exist_ok=True)
        for name, data in (("ca.crt", self.ca.cert_pem()), ("server.crt", self.server.cert_pem()),
                           ("server.key", self.server.key_pem())):
            (self.certdir / name).write_bytes(data)
        self._ca_pem = self.ca.cert_pem()
        self._key_pem = certs.key_pem(self.node_key)

    def node_cert_pem(self, node: str) -> bytes:
        pair = certs.issue(self.ca, f"system:node:{node}", orgs=["system:nodes"], client=True,
                           key=self.node_key)
        return pair.cert_pem()

    def client_ssl(self, node: str) -> ssl.SSLContext:
        return client_context(self._ca_pem, self.node_cert_pem(node), self._key_pem)

    def write_node_files(self, node: str, d: Path) -> tuple[Path, Path, Path]:
        d.mkdir(parents=True, exist_ok=True)
        paths = (d / "rootCA.crt", d / "server.crt", d / "server.key")
        for p, data in zip(paths, (self._ca_pem, self.node_cert_pem(node), self._key_pem),
                           strict=True):
            p.write_bytes(data)
        paths[2].chmod(0o600)
        return paths


# -- the cloudcore process -----------------------------------------------------------------------

class CloudProc:
    """cloudcore in a child process, driven over stdin/stdout JSON lines."""

    def __init__(self, pki: BenchPKI, workdir: Path, *, port: int = 0, node_limit: int,
                 no_uvloop: bool, log_name: str, profile: str = "") -> None:
        self.profile = profile
        self.pki = pki
        self.port = port
        self.node_limit = node_limit
        self.no_uvloop = no_uvloop
        self.stderr_path = workdir / f"{log_name}.stderr"
        self.proc: asyncio.subprocess.Process | None = None
        self.ready: dict[str, Any] = {}
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, timeout: float = 60) -> float:
        """Start and wait until CloudHub listens; returns the seconds that took."""
        began = time.perf_counter()
        cmd = [sys.executable, str(CLOUD_SCRIPT), "--certdir", str(self.pki.certdir),
               "--port", str(self.port), "--node-limit", str(self.node_limit)]
        if self.no_uvloop:
            cmd.append("--no-uvloop")
        if self.profile:
            cmd += ["--profile", self.profile]
        env = dict(os.environ)
        src = str(BENCH_DIR.parent / "src")
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
        with self.stderr_path.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=err, env=env, limit=1 << 20)
        try:
            self.ready = await self._read(timeout)
        except BaseException:
            await self.kill()
            raise
        if self.ready.get("event") != "ready":
            raise RuntimeError(f"cloudcore did not start: {self.ready}")
        self.port = int(self.ready["port"])
        return time.perf_counter() - began

    async def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"cloudcore exited (code {await self.proc.wait()}); "
                               f"stderr: {self.stderr_tail()}")
        result: dict[str, Any] = json.loads(line)
        return result

    async def call(self, op: str, timeout: float = 30, **kw: Any) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        async with self._lock:
            self.proc.stdin.write((json.dumps({"op": op, **kw}) + "\n").encode())
            await self.proc.stdin.drain()
            return await self._read(timeout)

    def rss_kb(self) -> int:
        return rss_kb(self.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def stderr_tail(self, n: int = 2000) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    async def kill(self) -> None:
        """SIGKILL, as a crash: the edges see their connections drop."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self, timeout: float = 30) -> None:
        """Ask it to quit (the hive closes every session); kill it if it does not."""
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            await self.call("quit", timeout=timeout)
            async with asyncio.timeout(timeout):
                await self.proc.wait()
        except (TimeoutError, RuntimeError, ConnectionError, json.JSONDecodeError):
            await self.kill()
        finally:
            await self.kill()


# -- lightweight edge client (idle sessions) -----------------------------------------------------

class LightEdge:
    """One edge session without the edgecore around it: the EdgeHub URL, headers and client
    certificate, a keepalive every ``heartbeat`` s, and ACKs (``response`` "OK", parent id)."""

    def __init__(self, node: str, ctx: ssl.SSLContext, heartbeat: float) -> None:
        self.node = node
        self.ctx = ctx
        self.heartbeat = heartbeat
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.task: asyncio.Task[None] | None = None
        self.received = 0

    async def connect(self, http: aiohttp.ClientSession, port: int) -> None:
        url = f"wss://127.0.0.1:{port}/{DEFAULT_PROJECT_ID}/{self.node}/events"
        headers = {"node_id": self.node, "project_id": DEFAULT_PROJECT_ID,
                   "ConnectionUse": "msg"}
        self.ws = await http.ws_connect(url, headers=headers, ssl=self.ctx,
                                        heartbeat=self.heartbeat * 2, autoping=True,
                                        max_msg_size=codec.MAX_MESSAGE_SIZE, decode_text=False)
        self.task = asyncio.create_task(self._run(self.ws), name=f"light-{self.node}")

    async def _run(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        keepalive = asyncio.create_task(self._keepalive(ws))
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                msg = codec.decode(frame.data)
                self.received += 1
                if msg.operation in ACK_OPS:
                    await ws.send_frame(codec.encode(response(msg, Content.ACK_OK)),
                                        WSMsgType.TEXT)
        except (ConnectionError, RuntimeError):
            pass
        finally:
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await keepalive

    async def _keepalive(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while not ws.closed:
            ping = new_message(source="websocket", group="resource", resource="node",
                               operation=Operation.KEEPALIVE, content=Content.KEEPALIVE_PING)
            await ws.send_frame(codec.encode(ping), WSMsgType.TEXT)
            await asyncio.sleep(self.heartbeat)

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    await self.ws.close()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


# -- real EdgeHub edges (throughput, reconnect) --------------------------------------------------

class AckingMeta:
    """Stands in for MetaManager: ACKs what needs an ACK as MetaManager does (``response`` "OK"
    to EdgeHub), and timestamps EdgeHub's cloud_connected / cloud_disconnected events."""

    name = "metamanager"
    group = "meta"
    restart_policy = RestartPolicy()

    def __init__(self) -> None:
        self.received = 0
        self.connected_at: list[float] = []
        self.disconnected_at: list[float] = []

    async def start(self, ctx: Any) -> None:
        while True:
            msg = await ctx.receive(self.name)
            if msg.operation in ACK_OPS:
                self.received += 1
                await ctx.send("websocket", response(msg, Content.ACK_OK))
            elif msg.content == Content.CLOUD_CONNECTED:
                self.connected_at.append(time.monotonic())
            elif msg.content == Content.CLOUD_DISCONNECTED:
                self.disconnected_at.append(time.monotonic())


class RealEdge:
    """An EdgeHub (the real module) in its own Hive with AckingMeta, an Outbox on SQLite."""

    def __init__(self, pki: BenchPKI, node: str, port: int, workdir: Path,
                 *, qps: float, burst: int,
                 reconnect_initial: float | None, reconnect_cap: float | None) -> None:
        self.node = node
        self.dir = workdir / node
        ca, cert, key = pki.write_node_files(node, self.dir)
        extra: dict[str, float] = {}
        if reconnect_initial is not None:
            extra["reconnect_initial"] = reconnect_initial
        if reconnect_cap is not None:
            extra["reconnect_cap"] = reconnect_cap
        self.settings = EdgeHubSettings(
            node_name=node, server=f"127.0.0.1:{port}", project_id=DEFAULT_PROJECT_ID,
            heartbeat=15, message_qps=qps, message_burst=burst, ca_file=ca, cert_file=cert,
            key_file=key, **extra)
        self.meta = AckingMeta()
        self.hub: EdgeHub | None = None
        self.hive: Hive | None = None
        self.outbox: Outbox | None = None

    async def start(self) -> None:
        # Each edge has its own edgecore.db, as on a real node; reads go to its writer thread
        # (readers=0), so the simulator runs one SQLite thread per edge, not two.
        self.outbox = await Outbox.open(self.dir / "edgecore.db", readers=0)
        self.hub = EdgeHub(self.settings, self.outbox)
        self.hive = Hive()
        self.hive.add_module(self.hub)
        self.hive.add_module(self.meta)
        await self.hive.__aenter__()

    async def stop(self) -> None:
        if self.hive is not None:
            hive, self.hive = self.hive, None
            await hive.__aexit__(None, None, None)
        if self.outbox is not None:
            box, self.outbox = self.outbox, None
            await box.close()


class EdgeFleet:
    """Many RealEdges in this process, started and stopped together."""

    def __init__(self, pki: BenchPKI, prefix: str, count: int, port: int, workdir: Path,
                 **edge_kw: Any) -> None:
        self.edges = [RealEdge(pki, f"{prefix}-{i:05d}", port, workdir, **edge_kw)
                      for i in range(count)]

    @property
    def nodes(self) -> list[str]:
        return [e.node for e in self.edges]

    async def start(self) -> None:
        for e in self.edges:
            await e.start()

    def connected(self, after: float = 0.0) -> int:
        return sum(1 for e in self.edges if any(t > after for t in e.meta.connected_at))

    async def wait_connected(self, timeout: float, after: float = 0.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.connected(after) == len(self.edges):
                return True
            await asyncio.sleep(0.01)
        return False

    async def stop(self) -> None:
        hubs = {id(e.hub) for e in self.edges if e.hub is not None}
        nudger = asyncio.create_task(_recancel_keepalives(hubs))
        try:
            for chunk in range(0, len(self.edges), 200):
                await asyncio.gather(*(e.stop() for e in self.edges[chunk:chunk + 200]),
                                     return_exceptions=True)
        finally:
            nudger.cancel()


async def _recancel_keepalives(hubs: set[int], period: float = 0.5, rounds: int = 600) -> None:
    """Work around an EdgeHub shutdown hang on Python 3.11 (reported, not fixed here):
    ``EdgeHub._write`` uses ``asyncio.wait_for``, which on 3.11 swallows a cancellation that
    lands as the write completes; ``_serve`` then waits forever for its keepalive task, which
    goes on pinging over the still-open connection. Cancelling such a task again ends it."""
    for _ in range(rounds):
        await asyncio.sleep(period)
        for task in asyncio.all_tasks():
            coro = task.get_coro()
            frame = getattr(coro, "cr_frame", None)
            if (getattr(coro, "__qualname__", "") == "EdgeHub._keepalive" and frame is not None
                    and id(frame.f_locals.get("self")) in hubs and task.cancelling()):
                task.cancel()


class CountingHandler(logging.Handler):
    """Counts EdgeHub's failed dials ("cannot connect to CloudHub") without printing them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.failed_dials = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("cannot connect"):
            self.failed_dials += 1


# -- phases --------------------------------------------------------------------------------------

async def phase_idle(args: argparse.Namespace, pki: BenchPKI, workdir: Path) -> None:
    n = args.sessions
    t0 = time.perf_counter()
    edges = [LightEdge(f"idle-{i:05d}", pki.client_ssl(f"idle-{i:05d}"), args.heartbeat)
             for i in range(n)]
    out("idle setup", f"{n} client certificates and TLS contexts in "
                      f"{time.perf_counter() - t0:.1f} s (not part of the figures)")
    cloud = CloudProc(pki, workdir, node_limit=n + 100, no_uvloop=args.no_uvloop,
                      log_name="cloud-idle")
    await cloud.start()
    connector = aiohttp.TCPConnector(limit=0)
    http = aiohttp.ClientSession(connector=connector,
                                 timeout=aiohttp.ClientTimeout(total=None, sock_connect=60))
    try:
        await asyncio.sleep(1.0)  # let it settle
        rss0 = cloud.rss_kb()
        cpu0 = cloud.cpu()
        sem = asyncio.Semaphore(args.connect_concurrency)
        failures: list[str] = []

        async def dial(e: LightEdge) -> None:
            async with sem:
                try:
                    await e.connect(http, cloud.port)
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    failures.append(f"{e.node}: {exc}")

        began = time.perf_counter()
        async with asyncio.timeout(args.phase_timeout):
            await asyncio.gather(*(dial(e) for e in edges))
        connect_s = time.perf_counter() - began
        cpu_connect = cloud.cpu() - cpu0
        stats = await cloud.call("stats")
        out("idle connect", f"{n - len(failures)}/{n} sessions connected in {connect_s:.2f} s "
                            f"({args.connect_concurrency} dials at a time; "
                            f"{(n - len(failures)) / connect_s:.0f} sessions/s); cloudcore CPU "
                            f"{cpu_connect:.1f} s = {cpu_connect / max(1, n) * 1e3:.2f} ms per "
                            f"TLS+WebSocket handshake")
        if failures:
            out("idle failures", f"{len(failures)}, e.g. {failures[0]}")
        await asyncio.sleep(args.idle_hold)  # keepalives flow; the cloud drops a silent node
        stats = await cloud.call("stats")
        rss1 = cloud.rss_kb()
        held = int(stats["sessions"])
        per = (rss1 - rss0) / max(1, held)
        out("idle sessions", f"{held} sessions held by one cloudcore process after "
                             f"{args.idle_hold:.0f} s idle (keepalive every "
                             f"{args.heartbeat:.0f} s, cloud timeout 30 s) (target >= 5000)")
        out("idle RSS", f"cloudcore VmRSS {rss0 / 1024:.1f} MiB before, {rss1 / 1024:.1f} MiB "
                        f"with {held} idle sessions -> {per:.1f} KB per session "
                        f"(target <= 50 KB)")
    finally:
        for chunk in range(0, len(edges), 500):
            await asyncio.gather(*(e.close() for e in edges[chunk:chunk + 500]),
                                 return_exceptions=True)
        await http.close()
        await cloud.stop()


async def phase_throughput(args: argparse.Namespace, pki: BenchPKI, workdir: Path) -> None:
    cloud = CloudProc(pki, workdir, node_limit=args.edges + 100, no_uvloop=args.no_uvloop,
                      log_name="cloud-throughput",
                      profile=str(args.profile_cloud.resolve()) if args.profile_cloud else "")
    await cloud.start()
    fleet = EdgeFleet(pki, "tp", args.edges, cloud.port, workdir / "tp", qps=args.edge_qps,
                      burst=int(args.edge_qps), reconnect_initial=0.2, reconnect_cap=2.0)
    try:
        await fleet.start()
        if not await fleet.wait_connected(args.phase_timeout):
            raise RuntimeError(f"only {fleet.connected()}/{args.edges} edges connected")
        nodes = fleet.nodes
        warm = await cloud.call("push", n=min(2000, args.messages), nodes=nodes, rate=0,
                                deadline=50, timeout=60)
        if warm["acked"] != warm["n"]:
            raise RuntimeError(f"warm-up: {warm}")
        cpu_cloud0, cpu_edge0, busy0 = cloud.cpu(), time.process_time(), machine_busy()
        prof = None
        if args.profile_edges:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        r = await cloud.call("push", n=args.messages, nodes=nodes, rate=0,
                             deadline=args.phase_timeout, timeout=args.phase_timeout + 10,
                             profile=bool(args.profile_cloud))
        if prof is not None:
            prof.disable()
            prof.dump_stats(str(args.profile_edges))
        cpu_cloud = cloud.cpu() - cpu_cloud0
        cpu_edge = time.process_time() - cpu_edge0
        cpu_other = max(0.0, machine_busy() - busy0 - cpu_cloud - cpu_edge)
        lat = r["latency"]
        rate = r["acked"] / r["elapsed"] if r["elapsed"] else 0.0
        out("throughput", f"{r['acked']}/{r['n']} pod updates ({r['msg_bytes']} B each) to "
                          f"{args.edges} real EdgeHubs, all ACKed, in {r['elapsed']:.2f} s -> "
                          f"{rate:,.0f} msg/s (target >= 10,000/s)")
        out("throughput detail", f"frames written by CloudHub {r['frames_written']} "
                                 f"(resends: {r['frames_written'] - r['acked']}); CPU: cloudcore "
                                 f"{cpu_cloud:.1f} s ({cpu_cloud / r['elapsed'] * 100:.0f}% of a "
                                 f"core, {cpu_cloud / max(1, r['acked']) * 1e6:.0f} us/msg), "
                                 f"edge simulator {cpu_edge:.1f} s "
                                 f"({cpu_edge / r['elapsed'] * 100:.0f}% of a core), other "
                                 f"processes {cpu_other / r['elapsed'] * 100:.0f}% of a core; "
                                 f"EdgeHub "
                                 f"messageQPS/Burst set to {args.edge_qps:g} (default 30/60)")
        out("ACK latency (bulk)", f"median {ms(lat['p50'])}, p90 {ms(lat['p90'])}, p99 "
                                  f"{ms(lat['p99'])}, max {ms(lat['max'])} (all {r['n']} "
                                  f"pushed at once: mostly queueing)")
        if args.paced_rate > 0:
            n = int(args.paced_rate * args.paced_seconds)
            p = await cloud.call("push", n=n, nodes=nodes, rate=args.paced_rate,
                                 deadline=args.paced_seconds + 50,
                                 timeout=args.paced_seconds + 60)
            pl = p["latency"]
            out("ACK latency (paced)", f"median {ms(pl['p50'])}, p90 {ms(pl['p90'])}, p99 "
                                       f"{ms(pl['p99'])}, max {ms(pl['max'])} at "
                                       f"{args.paced_rate:,.0f} msg/s offered for "
                                       f"{args.paced_seconds:g} s ({p['acked']}/{p['n']} ACKed)")
        if args.default_qps_messages > 0:
            await fleet.stop()
            await default_qps_run(args, pki, workdir, cloud)
    finally:
        await fleet.stop()
        await cloud.stop()


async def default_qps_run(args: argparse.Namespace, pki: BenchPKI, workdir: Path,
                          cloud: CloudProc) -> None:
    """The same push to edges with EdgeHub's default messageQPS 30 / messageBurst 60: the
    edges' ACKs are throttled (as upstream's), so this shows the resend rule at slow edges."""
    fleet = EdgeFleet(pki, "tq", args.edges, cloud.port, workdir / "tq", qps=30, burst=60,
                      reconnect_initial=0.2, reconnect_cap=2.0)
    try:
        await fleet.start()
        if not await fleet.wait_connected(args.phase_timeout):
            raise RuntimeError(f"only {fleet.connected()}/{args.edges} edges connected")
        n = args.default_qps_messages
        r = await cloud.call("push", n=n, nodes=fleet.nodes, rate=0,
                             deadline=args.phase_timeout, timeout=args.phase_timeout + 10)
        lat = r["latency"]
        ceiling = args.edges * 30
        out("throughput (QPS 30)", f"{r['acked']}/{n} ACKed by {args.edges} EdgeHubs with the "
                                   f"default messageQPS 30 / burst 60 in {r['elapsed']:.2f} s -> "
                                   f"{r['acked'] / r['elapsed']:,.0f} msg/s (ACKs are throttled "
                                   f"by the edges: ceiling about {ceiling:,}/s after the bursts); "
                                   f"frames written {r['frames_written']} (resends: "
                                   f"{r['frames_written'] - r['acked']}); ACK latency median "
                                   f"{ms(lat['p50'])}, p99 {ms(lat['p99'])}")
    finally:
        await fleet.stop()


async def phase_reconnect(args: argparse.Namespace, pki: BenchPKI, workdir: Path) -> None:
    n = args.reconnect_edges
    defaults = {f.name: f.default for f in fields(EdgeHubSettings)}
    initial = args.reconnect_initial or float(defaults["reconnect_initial"])  # type: ignore[arg-type]
    cap = args.reconnect_cap or float(defaults["reconnect_cap"])  # type: ignore[arg-type]
    counter = CountingHandler()
    hub_log = logging.getLogger("pykubeedge.edge.edgehub.hub")
    hub_log.setLevel(logging.WARNING)
    hub_log.addHandler(counter)
    hub_log.propagate = False
    cloud = CloudProc(pki, workdir, node_limit=n + 100, no_uvloop=args.no_uvloop,
                      log_name="cloud-reconnect-1")
    await cloud.start()
    fleet = EdgeFleet(pki, "rc", n, cloud.port, workdir / "rc", qps=30, burst=60,
                      reconnect_initial=initial, reconnect_cap=cap)
    cloud2: CloudProc | None = None
    try:
        began = time.perf_counter()
        await fleet.start()
        ok = await fleet.wait_connected(args.phase_timeout)
        first_connect = time.perf_counter() - began
        out("reconnect setup", f"{fleet.connected()}/{n} real EdgeHubs connected in "
                               f"{first_connect:.1f} s (start-up, dials at once)")
        if not ok:
            raise RuntimeError("not every edge connected")
        await asyncio.sleep(1.0)
        dials_before = counter.failed_dials
        port = cloud.port
        t_kill = time.monotonic()  # CLOCK_MONOTONIC: the same clock in the cloud process
        await cloud.kill()
        cloud2 = CloudProc(pki, workdir, port=port, node_limit=n + 100,
                           no_uvloop=args.no_uvloop, log_name="cloud-reconnect-2")
        cpu_edge0 = time.process_time()
        await cloud2.start()
        t_ready = time.monotonic() - t_kill
        cpu_cloud0 = cloud2.cpu()
        all_back = await fleet.wait_connected(args.phase_timeout, after=t_kill)
        t_all_edge = time.monotonic() - t_kill
        cpu_cloud, cpu_edge = cloud2.cpu() - cpu_cloud0, time.process_time() - cpu_edge0
        firsts = (await cloud2.call("connections", since=t_kill))["first_after"]
        cloud_side = [t - t_kill for t in firsts.values()]
        edge_side = [min(t for t in e.meta.connected_at if t > t_kill) - t_kill
                     for e in fleet.edges if any(t > t_kill for t in e.meta.connected_at)]
        noticed = [min(t for t in e.meta.disconnected_at if t > t_kill) - t_kill
                   for e in fleet.edges if any(t > t_kill for t in e.meta.disconnected_at)]
        stats = await cloud2.call("stats")
        d, de, nd = percentiles(cloud_side), percentiles(edge_side), percentiles(noticed)
        if not cloud_side:
            raise RuntimeError("no edge reconnected")
        out("reconnect", f"{len(cloud_side)}/{n} edges back on the new cloudcore; all back "
                         f"{d['max']:.2f} s after the kill (SIGKILL; the new process listened "
                         f"after {t_ready:.2f} s); per edge median {d['p50']:.2f} s, p90 "
                         f"{d['p90']:.2f} s, p99 {d['p99']:.2f} s (session start at CloudHub)")
        out("reconnect (edge view)", f"EdgeHub cloud_connected: median {de.get('p50', 0):.2f} s, "
                                     f"p99 {de.get('p99', 0):.2f} s, last "
                                     f"{t_all_edge if all_back else float('nan'):.2f} s; lost "
                                     f"connection noticed after median "
                                     f"{ms(nd.get('p50', 0))}, max {ms(nd.get('max', 0))}")
        out("reconnect detail", f"EdgeHub backoff reconnect_initial={initial:g} s "
                                f"reconnect_cap={cap:g} s, jitter on (delay uniform in [d/2, d], "
                                f"d doubling per failed dial); failed dials during the restart "
                                f"{counter.failed_dials - dials_before}; sessions on the new "
                                f"cloudcore {stats['sessions']}; CPU until all were back: "
                                f"cloudcore {cpu_cloud:.1f} s "
                                f"({cpu_cloud / max(1, len(cloud_side)) * 1e3:.2f} ms per "
                                f"session), edge simulator {cpu_edge:.1f} s")
    finally:
        await fleet.stop()
        await cloud.kill()
        if cloud2 is not None:
            await cloud2.stop()
        hub_log.removeHandler(counter)
        hub_log.propagate = True
        hub_log.setLevel(logging.NOTSET)


# -- main ----------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=5000, help="idle sessions (default 5000)")
    p.add_argument("--edges", type=int, default=100, help="edges for throughput (default 100)")
    p.add_argument("--messages", type=int, default=200_000, help="messages for throughput")
    p.add_argument("--reconnect-edges", type=int, default=1000)
    p.add_argument("--quick", action="store_true",
                   help="200 sessions, 20 edges, 5,000 messages, 100 reconnects, short holds")
    p.add_argument("--phases", default="idle,throughput,reconnect",
                   help="comma-separated subset of idle,throughput,reconnect")
    p.add_argument("--no-uvloop", action="store_true", help="stdlib asyncio in both processes")
    p.add_argument("--connect-concurrency", type=int, default=500)
    p.add_argument("--idle-hold", type=float, default=None,
                   help="seconds the idle sessions stay before RSS is read (default 35, quick 1)")
    p.add_argument("--heartbeat", type=float, default=15.0)
    p.add_argument("--edge-qps", type=float, default=1e6,
                   help="EdgeHub messageQPS/Burst of the throughput edges (ACKs are throttled)")
    p.add_argument("--paced-rate", type=float, default=2000.0,
                   help="msg/s for the paced ACK-latency run (0: skip)")
    p.add_argument("--paced-seconds", type=float, default=None)
    p.add_argument("--default-qps-messages", type=int, default=None,
                   help="messages for the run with EdgeHub's default QPS 30 (default 50000, "
                        "quick 1000; 0: skip)")
    p.add_argument("--reconnect-initial", type=float, default=None)
    p.add_argument("--reconnect-cap", type=float, default=None)
    p.add_argument("--phase-timeout", type=float, default=180.0)
    p.add_argument("--max-time", type=float, default=1200.0, help="bound on the whole run")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--profile-cloud", type=Path, default=None,
                   help="write a cProfile of cloudcore during the bulk push to this file")
    p.add_argument("--profile-edges", type=Path, default=None,
                   help="write a cProfile of the edge simulator during the bulk push")
    args = p.parse_args(argv)
    if args.quick:
        args.sessions, args.edges, args.messages, args.reconnect_edges = 200, 20, 5000, 100
        args.idle_hold = 1.0 if args.idle_hold is None else args.idle_hold
        args.paced_seconds = 1.0 if args.paced_seconds is None else args.paced_seconds
        if args.default_qps_messages is None:
            args.default_qps_messages = 1000
        args.phase_timeout = min(args.phase_timeout, 60.0)
    args.idle_hold = 35.0 if args.idle_hold is None else args.idle_hold
    args.paced_seconds = 3.0 if args.paced_seconds is None else args.paced_seconds
    if args.default_qps_messages is None:
        args.default_qps_messages = 50_000
    return args


async def run(args: argparse.Namespace, uvloop_used: bool) -> None:
    phases = [x.strip() for x in args.phases.split(",") if x.strip()]
    with tempfile.TemporaryDirectory(prefix="pykubeedge-bench-",
                                     dir=args.workdir) as tmp:
        workdir = Path(tmp)
        t0 = time.perf_counter()
        pki = BenchPKI(workdir)
        # Probe the cloud process for its uvloop use with a short start/stop.
        probe = CloudProc(pki, workdir, node_limit=10, no_uvloop=args.no_uvloop,
                          log_name="cloud-probe")
        start_s = await probe.start()
        await probe.stop()
        out("machine", f"nproc={len(os.sched_getaffinity(0))} python={platform.python_version()}"
                       f" uvloop: edge simulator={'yes' if uvloop_used else 'no'}, "
                       f"cloudcore={'yes' if probe.ready.get('uvloop') else 'no'}; "
                       f"aiohttp={aiohttp.__version__} {ssl.OPENSSL_VERSION}; "
                       f"nofile={raise_nofile()}/{probe.ready.get('nofile')}; load average "
                       f"{os.getloadavg()[0]:.2f}; "
                       f"cloudcore start-up {start_s:.2f} s")
        out("mode", ("quick" if args.quick else "full") + f": sessions={args.sessions} "
                    f"edges={args.edges} messages={args.messages} "
                    f"reconnect-edges={args.reconnect_edges} phases={','.join(phases)}")
        for name in phases:
            fn = {"idle": phase_idle, "throughput": phase_throughput,
                  "reconnect": phase_reconnect}[name]
            await fn(args, pki, workdir)
        out("done", f"in {time.perf_counter() - t0:.1f} s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_nofile()
    faulthandler.register(signal.SIGUSR2, all_threads=True)  # debugging aid: thread stacks
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr,
                        format="%(asctime)s edge %(levelname)s %(name)s: %(message)s")
    uvloop_used = install_uvloop(args.no_uvloop)

    async def bounded() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)
        async with asyncio.timeout(args.max_time):
            await run(args, uvloop_used)

    asyncio.run(bounded())
    return 0


if __name__ == "__main__":
    sys.exit(main())
