"""Rules end to end (docs/router.md): real control plane, cloudcore (Router on its REST port),
edgecore (EventBus on its internal mosquitto, ServiceBus), containerd running an httpd pod, and
the real clients: curl, mosquitto_sub, mosquitto_pub."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiohttp import web

from pykubeedge.devcluster.process import free_port
from pykubeedge.keadm.localup import LocalUp
from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.resources import PODS, RULEENDPOINTS, RULES
from tests.conftest import eventually

pytestmark = pytest.mark.integration

NODE = "rt-edge"
NS = "default"
PAGE = "hello from an edge pod"
RULE_LIMIT = 40  # modules.eventBus.ruleMessageLimit: what one rule topic keeps while offline


@dataclass
class Sink:
    """The cloud HTTP endpoint the test runs: records every POST, answers ``pong``."""

    port: int = field(default_factory=free_port)
    bodies: list[bytes] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        self.nodes.append(request.headers.get("NodeName", ""))
        return web.Response(text="pong")

    def texts(self) -> list[str]:
        return [b.decode() for b in self.bodies]


@pytest.fixture(scope="module")
async def up(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalUp]:
    async with LocalUp(tier="minimal", runtime="containerd", network="loopback", demo=False,
                       node=NODE, workdir=tmp_path_factory.mktemp("router-up")) as local:
        await local.stop_edgecore()
        cfg = yaml.safe_load(local.edgecore_config.read_text())
        cfg["modules"]["eventBus"]["ruleMessageLimit"] = RULE_LIMIT
        local.edgecore_config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        await local.start_edgecore()
        await local.wait_node_ready()
        yield local


@pytest.fixture(scope="module")
async def sink() -> AsyncIterator[Sink]:
    s = Sink()
    app = web.Application()
    app.router.add_post("/{tail:.*}", s.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", s.port).start()
    try:
        yield s
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
async def httpd_port(up: LocalUp) -> int:
    """busybox httpd in a host-network pod on the edge node (ServiceBus calls 127.0.0.1)."""
    assert up.kube is not None
    port = free_port()
    script = (f"mkdir -p /www && echo '{PAGE}' > /www/index.html && "
              f"exec httpd -f -p 127.0.0.1:{port} -h /www")
    await up.kube.create(PODS, {
        "metadata": {"name": "rt-httpd", "namespace": NS},
        "spec": {"nodeName": NODE, "hostNetwork": True,
                 "containers": [{"name": "web", "image": "busybox:1.35",
                                 "command": ["sh", "-c", script]}]}})
    kube = up.kube

    async def running() -> bool:
        pod = await kube.get(PODS, "rt-httpd", namespace=NS)
        return (pod.get("status") or {}).get("phase") == "Running"

    await eventually(running, timeout=90, what="the httpd pod Running")
    return port


async def run(*argv: str, stdin: bytes | None = None, timeout: float = 30) -> tuple[int, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else None,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(stdin), timeout)
    assert proc.returncode is not None
    return proc.returncode, out


async def curl(url: str, *args: str) -> tuple[int, str]:
    """curl's HTTP status and body."""
    rc, out = await run("curl", "-s", "-m", "20", "-w", "\n%{http_code}", *args, url)
    assert rc == 0, f"curl {url} failed ({rc})"
    body, _, code = out.decode().rpartition("\n")
    return int(code), body


async def endpoint(kube: KubeClient, name: str, kind: str, **props: str) -> None:
    spec: dict[str, Any] = {"ruleEndpointType": kind}
    if props:
        spec["properties"] = props
    await kube.create(RULEENDPOINTS, {"metadata": {"name": name, "namespace": NS},
                                      "spec": spec})


async def rule(kube: KubeClient, name: str, source: str, sres: dict[str, str], target: str,
               tres: dict[str, str]) -> None:
    await kube.create(RULES, {"metadata": {"name": name, "namespace": NS},
                              "spec": {"source": source, "sourceResource": sres,
                                       "target": target, "targetResource": tres}})


async def status_of(kube: KubeClient, name: str) -> dict[str, Any]:
    obj = await kube.get(RULES, name, namespace=NS)
    status: dict[str, Any] = obj.get("status") or {}
    return status


async def counts_reach(kube: KubeClient, name: str, success: int, fail: int = 0) -> None:
    async def check() -> bool:
        s = await status_of(kube, name)
        return (s.get("successMessages", 0), s.get("failMessages", 0)) == (success, fail)

    try:
        await eventually(check, timeout=20, interval=0.3, what=f"rule {name}'s counts")
    except AssertionError:
        raise AssertionError(f"rule {name}: {await status_of(kube, name)}, want "
                             f"{success}/{fail}") from None


def edge_table(db: Path, sql: str) -> list[Any]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return [r[0] for r in conn.execute(sql).fetchall()]
    finally:
        conn.close()


@pytest.fixture(scope="module")
async def rules(up: LocalUp, sink: Sink, httpd_port: int) -> LocalUp:
    kube = up.kube
    assert kube is not None
    await endpoint(kube, "rest-ep", "rest")
    await endpoint(kube, "bus-ep", "eventbus")
    await endpoint(kube, "svc-ep", "servicebus", service_port=str(httpd_port))
    await endpoint(kube, "dead-ep", "servicebus", service_port=str(free_port()))
    await endpoint(kube, "sb-ep", "servicebus")
    await rule(kube, "rest-to-bus", "rest-ep", {"path": "/toedge"}, "bus-ep",
               {"topic": "fromcloud"})
    await rule(kube, "bus-to-cloud", "bus-ep", {"topic": "up", "node_name": NODE}, "rest-ep",
               {"resource": f"{sink.url}/events"})
    await rule(kube, "rest-to-svc", "rest-ep", {"path": "/svc"}, "svc-ep", {"path": "/"})
    await rule(kube, "rest-to-dead", "rest-ep", {"path": "/dead"}, "dead-ep", {"path": "/"})
    await rule(kube, "sb-to-cloud", "sb-ep", {"target_url": "/cloud/api", "node_name": NODE},
               "rest-ep", {"resource": f"{sink.url}/api"})
    db = up.edge_db
    await eventually(lambda: "default/up" in edge_table(db, "SELECT topic FROM sub_topics"),
                     timeout=30, what="the edge subscribed to default/up")
    await eventually(lambda: "/cloud/api" in edge_table(db, "SELECT url FROM target_urls"),
                     timeout=30, what="the edge allowing /cloud/api")
    return up


def router_url(up: LocalUp, path: str) -> str:
    return f"http://127.0.0.1:{up.router_port}/{NODE}/{NS}/{path}"


async def test_rest_to_eventbus_reaches_mosquitto_sub(rules: LocalUp) -> None:
    up = rules
    assert up.kube is not None
    sub = await asyncio.create_subprocess_exec(
        "mosquitto_sub", "-h", "127.0.0.1", "-p", str(up.mqtt_port), "-t", "fromcloud/#", "-v",
        "-C", "1", stdout=asyncio.subprocess.PIPE)
    sent = 0
    try:
        async def received() -> bool:  # curl until the subscriber is there and has it
            nonlocal sent
            code, body = await curl(router_url(up, "toedge"), "-d", "hello edge")
            assert (code, body) == (200, "message delivered")
            sent += 1
            return sub.returncode is not None or await _exited(sub)
        await eventually(received, timeout=30, interval=0.5, what="mosquitto_sub's message")
        assert sub.stdout is not None
        line = (await sub.stdout.read()).decode().strip()
    finally:
        if sub.returncode is None:
            sub.kill()
            await sub.wait()
    assert line == "fromcloud hello edge"
    await counts_reach(up.kube, "rest-to-bus", sent)


async def _exited(proc: asyncio.subprocess.Process) -> bool:
    try:
        await asyncio.wait_for(proc.wait(), 0.5)
    except TimeoutError:
        return False
    return True


async def test_eventbus_to_rest_reaches_the_cloud_endpoint(rules: LocalUp, sink: Sink) -> None:
    up = rules
    assert up.kube is not None
    async def probe() -> bool:  # until the edge's subscription is in place
        rc, _ = await run("mosquitto_pub", "-h", "127.0.0.1", "-p", str(up.mqtt_port), "-q",
                          "1", "-t", "default/up", "-m", "probe")
        assert rc == 0
        await asyncio.sleep(0.3)
        return bool(sink.bodies)

    await eventually(probe, timeout=30, interval=0.2, what="a first message at the endpoint")
    await asyncio.sleep(1)  # a probe still on its way
    start = len(sink.bodies)
    for i in range(10):
        rc, _ = await run("mosquitto_pub", "-h", "127.0.0.1", "-p", str(up.mqtt_port), "-q",
                          "1", "-t", "default/up", "-m", f"reading-{i}")
        assert rc == 0
    await eventually(lambda: len(sink.bodies) >= start + 10, timeout=30,
                     what="10 messages at the cloud endpoint")
    assert sink.texts()[start:] == [f"reading-{i}" for i in range(10)]
    assert set(sink.nodes[start:]) == {NODE}
    await counts_reach(up.kube, "bus-to-cloud", len(sink.bodies))


async def test_rest_to_servicebus_reaches_the_edge_pod(rules: LocalUp) -> None:
    up = rules
    assert up.kube is not None
    for _ in range(3):
        code, body = await curl(router_url(up, "svc/index.html"))
        assert (code, body.strip()) == (200, PAGE)
    code, _ = await curl(router_url(up, "svc/missing.html"))
    assert code == 404  # the pod's own answer: the call succeeded
    await counts_reach(up.kube, "rest-to-svc", 4)


async def test_servicebus_to_rest_and_its_refusals(rules: LocalUp, sink: Sink) -> None:
    up = rules
    assert up.kube is not None
    sb = f"http://127.0.0.1:{up.servicebus_port}/"

    async def post(body: bytes) -> tuple[int, dict[str, Any]]:
        rc, out = await run("curl", "-s", "-m", "20", "--data-binary", "@-", sb, stdin=body)
        assert rc == 0
        answer = orjson.loads(out)
        return answer["code"], answer

    code, answer = await post(b'{"method": "POST", "targetURL": "/cloud/api", '
                              b'"payload": "ping"}')
    assert (code, answer["body"]) == (200, "pong"), answer
    assert sink.bodies[-1] == b"ping"
    code, answer = await post(b'{"method": "POST", "targetURL": "/not/allowed"}')
    assert code == 403 and "/not/allowed" in answer["msg"]
    code, answer = await post(b"{not json")
    assert code == 400 and "not JSON" in answer["msg"]
    code, answer = await post(b'{"targetURL": "/cloud/api"}')
    assert code == 400
    code, answer = await post(b'{"payload": "' + b"x" * 6_000_000 + b'"}')
    assert code == 413
    code, answer = await post(b'{"method": "POST", "targetURL": "/cloud/api", '
                              b'"payload": {"still": "serving"}}')
    assert (code, answer["body"]) == (200, "pong")
    assert orjson.loads(sink.bodies[-1]) == {"still": "serving"}
    await counts_reach(up.kube, "sb-to-cloud", 2)


async def test_router_bad_input_gets_clear_errors(rules: LocalUp) -> None:
    up = rules
    assert up.kube is not None
    code, body = await curl(router_url(up, "no-such-rule"), "-d", "x")
    assert code == 404 and "no rule matches" in body
    code, body = await curl(f"http://127.0.0.1:{up.router_port}/only-a-node")
    assert code == 404 and "url format incorrect" in body
    code, body = await curl(router_url(up, "dead"))
    assert code == 502 and "error to call service" in body
    big = up.workdir / "big.bin"  # type: ignore[operator]
    big.write_bytes(b"x" * (13 << 20))
    code, _ = await curl(router_url(up, "toedge"), "--data-binary", f"@{big}")
    assert code == 413
    code, body = await curl(router_url(up, "toedge"), "-X", "POST")
    assert code == 400
    code, body = await curl(router_url(up, "svc/index.html"))  # still serving
    assert (code, body.strip()) == (200, PAGE)
    await counts_reach(up.kube, "rest-to-dead", 0, 1)
    errors = (await status_of(up.kube, "rest-to-dead"))["errors"]
    assert len(errors) == 1 and "error to call service" in errors[0]


async def test_messages_published_while_the_cloud_is_down_arrive_in_order(
        rules: LocalUp, sink: Sink) -> None:
    up = rules
    assert up.kube is not None
    before = len(sink.bodies)
    await up.stop_cloudcore()
    try:
        for i in range(30):
            rc, _ = await run("mosquitto_pub", "-h", "127.0.0.1", "-p", str(up.mqtt_port), "-q",
                              "1", "-t", "default/up", "-m", f"offline-{i}")
            assert rc == 0
        await eventually(lambda: len(edge_table(up.edge_db, "SELECT seq FROM edgehub_outbox"))
                         >= 30, timeout=20, what="30 messages kept in the edge outbox")
        assert len(sink.bodies) == before
    finally:
        await up.start_cloudcore()
    await eventually(lambda: len(sink.bodies) >= before + 30, timeout=90, interval=0.2,
                     what="the kept messages at the cloud endpoint")
    assert sink.texts()[before:] == [f"offline-{i}" for i in range(30)]
    await counts_reach(up.kube, "bus-to-cloud", len(sink.bodies) - _sb_posts(sink))


def _sb_posts(sink: Sink) -> int:
    """The sink's POSTs that came through sb-to-cloud, not bus-to-cloud."""
    return sum(1 for b in sink.bodies if b in (b"ping", b'{"still":"serving"}'))


async def test_beyond_the_rule_limit_the_status_says_what_the_edge_dropped(
        rules: LocalUp, sink: Sink) -> None:
    up = rules
    assert up.kube is not None
    before = len(sink.bodies)
    base = await status_of(up.kube, "bus-to-cloud")
    await up.stop_cloudcore()
    try:
        for i in range(RULE_LIMIT + 10):
            rc, _ = await run("mosquitto_pub", "-h", "127.0.0.1", "-p", str(up.mqtt_port), "-q",
                              "1", "-t", "default/up", "-m", f"burst-{i}")
            assert rc == 0
        await eventually(lambda: len(edge_table(up.edge_db, "SELECT seq FROM edgehub_outbox"))
                         >= RULE_LIMIT, timeout=20, what="the kept messages in the outbox")
    finally:
        await up.start_cloudcore()
    await eventually(lambda: len(sink.bodies) >= before + RULE_LIMIT, timeout=90, interval=0.2,
                     what="the kept messages at the cloud endpoint")
    assert sink.texts()[before:] == [f"burst-{i}" for i in range(RULE_LIMIT)]
    await counts_reach(up.kube, "bus-to-cloud", base["successMessages"] + RULE_LIMIT, 10)
    errors = (await status_of(up.kube, "bus-to-cloud"))["errors"]
    assert errors[0].startswith("dropped 10 message(s): ")
    assert f"the edge kept only {RULE_LIMIT} message(s)" in errors[0]
