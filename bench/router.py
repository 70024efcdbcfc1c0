"""Rule traffic through real processes (control plane, one cloudcore with its Router, one
edgecore with ServiceBus and EventBus on its internal mosquitto):

1. rest -> servicebus: a REST call to the Router reaches an HTTP server on the edge host and
   its answer comes back; round trip p50/p99 one call at a time, then requests/s with
   ``--concurrency`` callers;
2. eventbus -> rest: MQTT publications on the edge reach a cloud HTTP endpoint; messages/s
   (every one counted at the endpoint, in order);
and both processes' RSS.

EdgeHub's ``messageQPS``/``messageBurst`` (upstream defaults 30/60) throttle everything the edge
sends, answers included, so by default both figures would read ~30/s; the bench raises them to
``--qps`` and says so.

    python bench/router.py [--calls 500] [--load 3000] [--concurrency 32] [--messages 1000]
"""
from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import gmqtt
import yaml
from aiohttp import web
from gmqtt.mqtt.constants import MQTTv311

from _benchutil import percentiles
from pykubeedge.devcluster.process import free_port
from pykubeedge.keadm.localup import LocalUp
from pykubeedge.kube.resources import RULEENDPOINTS, RULES

NS = "default"
NODE = "bench-edge"
DEADLINE_S = 300.0


def rss_mb(pid: int | None) -> float:
    if pid is None:
        return 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def serve(handler: Any, port: int) -> web.AppRunner:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--load", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--qps", type=int, default=100_000)
    parser.add_argument("--deadline", type=float, default=120.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-router-"))
    received: list[bytes] = []
    done = asyncio.Event()

    async def edge_app(request: web.Request) -> web.Response:  # the local service
        return web.Response(text="hello from the edge")

    async def sink(request: web.Request) -> web.Response:  # the cloud endpoint
        received.append(await request.read())
        if len(received) >= args.messages:
            done.set()
        return web.Response(text="ok")

    app_port, sink_port = free_port(), free_port()
    runners = [await serve(edge_app, app_port), await serve(sink, sink_port)]
    try:
        up = LocalUp(tier="minimal", runtime="fake", demo=False, node=NODE,
                     workdir=workdir / "up")
        async with up:
            assert up.kube is not None and up.edgecore is not None
            # raise EdgeHub's throttle: restart edgecore with a larger messageQPS
            await up.stop_edgecore()
            cfg = yaml.safe_load(up.edgecore_config.read_text())
            cfg["modules"]["edgeHub"]["messageQPS"] = args.qps
            cfg["modules"]["edgeHub"]["messageBurst"] = args.qps
            up.edgecore_config.write_text(yaml.safe_dump(cfg, sort_keys=False))
            await up.start_edgecore()
            await up.wait_node_ready()
            kube = up.kube
            for name, kind, props in (("rest", "rest", {}), ("bus", "eventbus", {}),
                                      ("svc", "servicebus", {"service_port": str(app_port)})):
                spec: dict[str, Any] = {"ruleEndpointType": kind}
                if props:
                    spec["properties"] = props
                await kube.create(RULEENDPOINTS, {"metadata": {"name": name, "namespace": NS},
                                                  "spec": spec})
            for name, src, sres, dst, tres in (
                    ("to-svc", "rest", {"path": "/svc"}, "svc", {"path": "/"}),
                    ("to-cloud", "bus", {"topic": "up", "node_name": NODE}, "rest",
                     {"resource": f"http://127.0.0.1:{sink_port}/in"})):
                await kube.create(RULES, {"metadata": {"name": name, "namespace": NS},
                                          "spec": {"source": src, "sourceResource": sres,
                                                   "target": dst, "targetResource": tres}})
            url = f"http://127.0.0.1:{up.router_port}/{NODE}/{NS}/svc/hello"
            async with aiohttp.ClientSession() as http:
                deadline = time.monotonic() + 60
                while True:  # until the rule is routed and the edge answers
                    async with http.get(url) as resp:
                        if resp.status == 200:
                            break
                    if time.monotonic() > deadline:
                        raise SystemExit(f"rest -> servicebus never answered: {resp.status}")
                    await asyncio.sleep(0.2)
                latencies = []
                for _ in range(args.calls):
                    t0 = time.perf_counter()
                    async with http.get(url) as resp:
                        await resp.read()
                        assert resp.status == 200, resp.status
                    latencies.append((time.perf_counter() - t0) * 1000)
                stats = percentiles(latencies)
                print(f"rest -> servicebus round trip, one at a time ({stats['n']} calls): "
                      f"p50 {stats['p50']:.2f} ms, p99 {stats['p99']:.2f} ms, "
                      f"max {stats['max']:.2f} ms")
                todo = iter(range(args.load))
                failed = 0

                async def caller() -> None:
                    nonlocal failed
                    for _ in todo:
                        async with http.get(url) as resp:
                            await resp.read()
                            failed += resp.status != 200

                t0 = time.perf_counter()
                async with asyncio.timeout(DEADLINE_S):
                    await asyncio.gather(*(caller() for _ in range(args.concurrency)))
                elapsed = time.perf_counter() - t0
                print(f"rest -> servicebus throughput: {args.load / elapsed:.0f} requests/s "
                      f"({args.load} calls, {args.concurrency} concurrent, {failed} failed) "
                      f"through one cloudcore")
            rss_cloud, rss_edge = rss_mb(up.cloudcore.pid if up.cloudcore else None), \
                rss_mb(up.edgecore.pid)

            client = gmqtt.Client(f"bench-router-{time.time_ns()}")
            await client.connect("127.0.0.1", up.mqtt_port, version=MQTTv311)
            try:
                deadline = time.monotonic() + 60
                while not received:  # until the edge's subscription is in place
                    client.publish(f"{NS}/up", b"probe", qos=1)
                    await asyncio.sleep(0.3)
                    if time.monotonic() > deadline:
                        raise SystemExit("eventbus -> rest never delivered")
                await asyncio.sleep(1)
                received.clear()
                t0 = time.perf_counter()
                for i in range(args.messages):
                    client.publish(f"{NS}/up", f"m{i}".encode(), qos=1)
                    if i % 500 == 499:
                        await asyncio.sleep(0)
                try:
                    async with asyncio.timeout(args.deadline):
                        await done.wait()
                except TimeoutError:
                    print(f"eventbus -> rest: only {len(received)} of {args.messages} arrived "
                          f"within {args.deadline:g}s")
                elapsed = time.perf_counter() - t0
            finally:
                await client.disconnect()
            in_order = [b.decode() for b in received[:args.messages]] == \
                [f"m{i}" for i in range(args.messages)]
            print(f"eventbus -> rest: {len(received) / elapsed:.0f} messages/s "
                  f"({args.messages} messages, {'in order' if in_order else 'NOT in order'}, "
                  f"{len(received)} received)")
            await asyncio.sleep(1.5)  # the status writer's interval
            status = (await kube.get(RULES, "to-cloud", namespace=NS)).get("status") or {}
            print(f"rule to-cloud status: successMessages {status.get('successMessages')}, "
                  f"failMessages {status.get('failMessages')}, errors "
                  f"{(status.get('errors') or [])[:1]}")
            rss_cloud = max(rss_cloud, rss_mb(up.cloudcore.pid if up.cloudcore else None))
            rss_edge = max(rss_edge, rss_mb(up.edgecore.pid))
            print(f"RSS after the runs: cloudcore {rss_cloud:.1f} MB, edgecore {rss_edge:.1f} MB "
                  f"(edgeHub messageQPS/burst raised to {args.qps})")
    finally:
        for runner in runners:
            await runner.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    asyncio.run(main())
