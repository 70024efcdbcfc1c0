"""The cloudcore side of ``bench/fabric.py``: a Hive with the real CloudHub module and a bench
controller, in a process of its own, driven by JSON lines on stdin and answering on stdout.

Started by ``fabric.py`` (not meant to be run by hand)::

    python bench/_cloudhub_proc.py --certdir DIR --port 0 --node-limit 10000

Commands (one JSON object per line; one answer line each, in order):

- ``{"op": "stats"}``: sessions, connection events, frames written, queued messages;
- ``{"op": "push", "n": N, "nodes": [...], "rate": 0, "deadline": 120}``: the controller sends
  ``N`` pod ``update`` messages (distinct UIDs and resourceVersions) round-robin over ``nodes``,
  as fast as the hive takes them (``rate`` 0) or at ``rate`` messages per second, and answers
  when all are ACKed (or at the timeout) with the time from first push to last ACK and the
  ACK latencies (controller hand-off to ACK);
- ``{"op": "connections", "since": T}``: per node, the first time (``time.monotonic()``,
  the same clock in every process) a session of it began after ``T``;
- ``{"op": "memory"}``: Python objects by type (and tracemalloc figures if tracing);
- ``{"op": "quit"}``: stop the hive (every session closed) and exit.

The first line written is ``{"event": "ready", "port": ..., ...}`` once CloudHub listens.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from _benchutil import percentiles, raise_nofile
from pykubeedge.beehive import Hive, RestartPolicy
from pykubeedge.cloud.cloudhub.hub import CloudHub
from pykubeedge.core.hubproto import NodeQueue
from pykubeedge.core.message import Message, new_message
from pykubeedge.transport.tls import server_context

log = logging.getLogger("bench.cloudhub")


def pod_update(node: str, i: int, run: int) -> Message:
    name = f"bench-{run}-{i}"
    rv = str(1_000_000 + i)
    return new_message(
        source="edgecontroller", group="resource", operation="update",
        resource=f"node/{node}/default/pod/{name}", resourceversion=rv,
        content={
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{run}-{i:08d}",
                         "resourceVersion": rv, "labels": {"app": "bench", "run": str(run)}},
            "spec": {"nodeName": node, "restartPolicy": "Always",
                     "containers": [{"name": "app", "image": "registry.local/bench/app:1.0",
                                     "resources": {"requests": {"cpu": "10m",
                                                                "memory": "16Mi"}}}]},
            "status": {"phase": "Pending"},
        })


class BenchController:
    """Stands in for edgecontroller: drains connection events, pushes pods on command."""

    name = "edgecontroller"
    group = "edgecontroller"
    restart_policy = RestartPolicy()

    def __init__(self) -> None:
        self.connected = 0
        self.disconnected = 0
        self.connected_at: dict[str, list[float]] = {}  # node -> time.monotonic() of each
        self.sent_at: dict[str, float] = {}
        self.latencies: list[float] = []
        self.acked = 0
        self.target = 0
        self.last_ack = 0.0
        self.all_acked = asyncio.Event()
        self.runs = 0

    async def start(self, ctx: Any) -> None:
        while True:
            msg = await ctx.receive(self.name)
            if msg.operation == "connected":
                self.connected += 1
                node = msg.resource.rsplit("/", 1)[-1]
                self.connected_at.setdefault(node, []).append(time.monotonic())
            elif msg.operation == "disconnected":
                self.disconnected += 1

    def on_ack(self, node: str, msg: Message) -> None:
        sent = self.sent_at.pop(msg.msg_id, None)
        if sent is None:
            return
        now = time.perf_counter()
        self.latencies.append(now - sent)
        self.acked += 1
        self.last_ack = now
        if self.acked >= self.target:
            self.all_acked.set()

    async def push(self, hive: Hive, hub: CloudHub, n: int, nodes: list[str], rate: float,
                   timeout: float) -> dict[str, Any]:
        self.runs += 1
        run = self.runs
        self.sent_at.clear()
        self.latencies = []
        self.acked = 0
        self.target = n
        self.all_acked = asyncio.Event()
        sent_before = sum(s.sent for s in hub.sessions.values())
        cpu0 = time.process_time()
        started = time.perf_counter()
        tick = 0.01
        per_tick = max(1, round(rate * tick)) if rate > 0 else 0
        try:
            async with asyncio.timeout(timeout):
                for i in range(n):
                    msg = pod_update(nodes[i % len(nodes)], i, run)
                    self.sent_at[msg.msg_id] = time.perf_counter()
                    await hive.send("cloudhub", msg)
                    if per_tick and (i + 1) % per_tick == 0:
                        # Paced: sleep until this batch's slot (bounded by the timeout above).
                        due = started + (i + 1) / per_tick * tick
                        await asyncio.sleep(max(0.0, due - time.perf_counter()))
                pushed = time.perf_counter()
                await self.all_acked.wait()
        except TimeoutError:
            pushed = time.perf_counter()
        elapsed = (self.last_ack or time.perf_counter()) - started
        frames = sum(s.sent for s in hub.sessions.values()) - sent_before
        return {"acked": self.acked, "n": n, "elapsed": elapsed, "push_elapsed": pushed - started,
                "frames_written": frames, "cpu": time.process_time() - cpu0,
                "latency": percentiles(self.latencies),
                "msg_bytes": len(json.dumps(pod_update(nodes[0], 0, run).to_dict(),
                                            separators=(",", ":")))}


def memory_report(top: int) -> dict[str, Any]:
    """Where the heap goes: Python objects by type and, when PYTHONTRACEMALLOC is set, the
    traced Python allocations by file (the rest of VmRSS is native: OpenSSL, libuv, malloc)."""
    import gc
    import tracemalloc
    from collections import Counter

    gc.collect()
    types = Counter(type(o).__name__ for o in gc.get_objects())
    report: dict[str, Any] = {"gc_objects": sum(types.values()),
                              "types": types.most_common(top)}
    if tracemalloc.is_tracing():
        snap = tracemalloc.take_snapshot()
        stats = snap.statistics("filename")
        report["traced_kb"] = sum(s.size for s in stats) // 1024
        report["by_file"] = [(str(s.traceback[0].filename).rsplit("site-packages/", 1)[-1],
                              s.size // 1024, s.count) for s in stats[:top]]
        lines = snap.statistics("lineno")
        report["by_line"] = [(f"{str(s.traceback[0].filename).rsplit('/', 2)[-1]}:"
                              f"{s.traceback[0].lineno}", s.size, s.count)
                             for s in lines[:top * 2]]
    return report


def dump_state(hub: CloudHub, controller: BenchController) -> None:
    """SIGUSR1 (a debugging aid): the sessions that have work, to stderr."""
    busy = []
    for node, q in hub.queues.items():
        s = hub.sessions.get(node)
        if len(q) or (s is not None and s.sent):
            busy.append({"node": node, "queued": len(q), "inflight": q.inflight,
                         "session": s is not None, "sent": s.sent if s else None,
                         "state": repr(s.__dict__) if s is not None and hasattr(s, "__dict__")
                         else {k: repr(getattr(s, k, None)) for k in
                               ("_writer", "_wakeup", "_timer", "close_reason")}})
    print(json.dumps({"acked": controller.acked, "target": controller.target,
                      "sessions": len(hub.sessions), "busy": busy[:20]}, default=str),
          file=sys.stderr, flush=True)


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def serve(args: argparse.Namespace, uvloop_used: bool) -> None:
    certdir = Path(args.certdir)
    ssl_ctx = server_context((certdir / "server.crt").read_bytes(),
                             (certdir / "server.key").read_bytes(),
                             (certdir / "ca.crt").read_bytes())
    controller = BenchController()
    hub = CloudHub(ssl_ctx, host="127.0.0.1", port=args.port,
                   keepalive_interval=args.keepalive, node_limit=args.node_limit,
                   ack_listener=controller.on_ack,
                   queue_factory=lambda: NodeQueue(window=args.window))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    loop.add_signal_handler(signal.SIGUSR1, dump_state, hub, controller)
    async with Hive(queue_size=args.queue_size) as hive:
        hive.add_module(hub)
        hive.add_module(controller)
        async with asyncio.timeout(30):
            await hub.ready.wait()
        emit({"event": "ready", "port": hub.port, "pid": os.getpid(), "uvloop": uvloop_used,
              "nofile": args.nofile, "python": sys.version.split()[0]})
        while True:
            line = await reader.readline()
            if not line:  # the parent went away
                break
            cmd = json.loads(line)
            op = cmd.get("op")
            if op == "stats":
                emit({"sessions": len(hub.sessions), "connected": controller.connected,
                      "disconnected": controller.disconnected,
                      "queued": sum(len(q) for q in hub.queues.values()),
                      "bad_frames": hub.bad_frames})
            elif op == "push":
                prof = None
                if args.profile and cmd.get("profile"):
                    import cProfile

                    prof = cProfile.Profile()
                    prof.enable()
                result = await controller.push(hive, hub, int(cmd["n"]), list(cmd["nodes"]),
                                               float(cmd.get("rate", 0)),
                                               float(cmd.get("deadline", 120)))
                if prof is not None:
                    prof.disable()
                    prof.dump_stats(args.profile)
                    result["profile"] = args.profile
                emit(result)
            elif op == "connections":
                since = float(cmd.get("since", 0))
                emit({"first_after": {n: min(t for t in ts if t > since)
                                      for n, ts in controller.connected_at.items()
                                      if any(t > since for t in ts)}})
            elif op == "memory":
                emit(memory_report(int(cmd.get("top", 15))))
            elif op == "quit":
                emit({"ok": True})
                break
            else:
                emit({"error": f"unknown op {op!r}"})


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--certdir", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--node-limit", type=int, default=10_000)
    p.add_argument("--keepalive", type=float, default=30.0)
    p.add_argument("--window", type=int, default=256)
    p.add_argument("--queue-size", type=int, default=1024)
    p.add_argument("--no-uvloop", action="store_true")
    p.add_argument("--profile", default="", help="cProfile the pushes marked profile=true "
                                                 "into this file")
    args = p.parse_args()
    args.nofile = raise_nofile()
    faulthandler.register(signal.SIGUSR2, all_threads=True)  # debugging aid: thread stacks
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr,
                        format="%(asctime)s cloud %(levelname)s %(name)s: %(message)s")
    whole = os.environ.get("BENCH_CLOUD_CPROFILE")  # debugging aid: profile the whole process
    if whole:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
        try:
            run_loop(args)
        finally:
            prof.disable()
            prof.dump_stats(f"{whole}.{os.getpid()}")
        return
    run_loop(args)


def run_loop(args: argparse.Namespace) -> None:
    uvloop_used = False
    if not args.no_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop_used = True
            uvloop.run(serve(args, True))
            return
    asyncio.run(serve(args, uvloop_used))


if __name__ == "__main__":
    main()
