"""Probes and lifecycle hooks (kubelet's ``prober`` and ``lifecycle`` packages): exec through
CRI ``ExecSync``, httpGet, tcpSocket and grpc health checks, with kubelet's results and
output texts, and the probe worker that applies ``initialDelaySeconds``, ``periodSeconds``
and the thresholds::

    result = await run_probe(probe, Target(runtime, container_id, "10.88.0.5", container))
    worker = ProbeWorker("liveness", probe, target, on_result, clock=..., sleep=...)
    task_group.create_task(worker.run())
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import shlex
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import grpc
import grpc.aio
import yarl

from pykubeedge.core.clock import Sleep, TimeSource
from pykubeedge.edge.edged.runtime import ContainerRuntimeError, Runtime

log = logging.getLogger(__name__)

PROBE_USER_AGENT: Final = "kube-probe/1.32"
HOOK_USER_AGENT: Final = "kube-lifecycle/1.32"
MAX_BODY: Final = 10 * 1024
MAX_REDIRECTS: Final = 10
MAX_RETRIES: Final = 3  # kubelet's maxProbeRetries (on errors only)


class Result(enum.StrEnum):
    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Target:
    """What a probe or hook runs against: the container (id, spec) and the pod's IP."""

    runtime: Runtime
    container_id: str
    pod_ip: str
    container: Mapping[str, Any]
    env: Mapping[str, str]


class ProbeError(Exception):
    """The probe could not run (not a failure of the container: kubelet discards it)."""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def resolve_port(port: Any, container: Mapping[str, Any]) -> int:
    """A probe's port: a number, or the name of a container port.

    >>> resolve_port("http", {"ports": [{"name": "http", "containerPort": 8080}]})
    8080
    """
    if isinstance(port, int) and not isinstance(port, bool):
        number = port
    else:
        number = 0
        for item in container.get("ports") or []:
            if _dict(item).get("name") == port:
                number = int(_dict(item).get("containerPort") or 0)
        if number == 0 and str(port).isdigit():
            number = int(str(port))
    if not 0 < number < 65536:
        raise ProbeError(f"invalid port number: {port}")
    return number


def _expand_static(args: list[Any], env: Mapping[str, str]) -> tuple[str, ...]:
    from pykubeedge.edge.edged.podspec import expand_args
    return expand_args(args, env)


async def run_probe(probe: Mapping[str, Any], target: Target) -> tuple[Result, str]:
    """Run one probe once: ``(result, output)``; :class:`ProbeError` when it could not run."""
    timeout = float(probe.get("timeoutSeconds") or 1)
    if "exec" in probe:
        command = _expand_static(list(_dict(probe["exec"]).get("command") or []), target.env)
        try:
            result = await target.runtime.exec_sync(target.container_id, command, timeout)
        except ContainerRuntimeError as exc:
            raise ProbeError(str(exc)) from None
        if result.timed_out:
            return Result.FAILURE, (f'command timed out: "{" ".join(command)}" timed out '
                                    f"after {timeout:g}s")
        output = result.output.decode(errors="replace")
        return (Result.SUCCESS if result.exit_code == 0 else Result.FAILURE), output
    if "httpGet" in probe:
        return await _http_probe(_dict(probe["httpGet"]), target, timeout)
    if "tcpSocket" in probe:
        action = _dict(probe["tcpSocket"])
        host = str(action.get("host") or target.pod_ip)
        port = resolve_port(action.get("port"), target.container)
        try:
            async with asyncio.timeout(timeout):
                _reader, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError) as exc:
            text = str(exc) or "i/o timeout"
            return Result.FAILURE, f"dial tcp {host}:{port}: {text}"
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return Result.SUCCESS, ""
    if "grpc" in probe:
        return await _grpc_probe(_dict(probe["grpc"]), target, timeout)
    raise ProbeError("probe has no handler")


def _url(action: Mapping[str, Any], target: Target) -> str:
    scheme = str(action.get("scheme") or "HTTP").lower()
    host = str(action.get("host") or target.pod_ip)
    port = resolve_port(action.get("port"), target.container)
    path = str(action.get("path") or "/")
    if not path.startswith("/"):
        path = "/" + path
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}{path}"


def _headers(action: Mapping[str, Any], agent: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in action.get("httpHeaders") or []:
        item = _dict(item)
        if item.get("name"):
            headers[str(item["name"])] = str(item.get("value") or "")
    lowered = {k.lower() for k in headers}
    if "user-agent" not in lowered:
        headers["User-Agent"] = agent
    if "accept" not in lowered:
        headers["Accept"] = "*/*"
    return headers


async def _http_probe(action: Mapping[str, Any], target: Target,
                      timeout: float) -> tuple[Result, str]:
    url = _url(action, target)
    headers = _headers(action, PROBE_USER_AGENT)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    connector = aiohttp.TCPConnector(ssl=False, force_close=True)
    try:
        async with aiohttp.ClientSession(timeout=client_timeout, connector=connector,
                                         auto_decompress=False, trust_env=False) as session:
            for _ in range(MAX_REDIRECTS + 1):
                async with session.get(url, headers=headers, allow_redirects=False) as reply:
                    body = (await reply.content.read(MAX_BODY)).decode(errors="replace")
                    code = reply.status
                    location = reply.headers.get("Location", "")
                if 300 <= code < 400 and location:
                    following = urlsplit(str(reply.url.join(yarl.URL(location))))
                    if following.hostname != urlsplit(url).hostname:
                        return Result.WARNING, ("Probe terminated redirects, Response body: "
                                                f"{body}")
                    url = following.geturl()
                    continue
                if 200 <= code < 400:
                    return Result.SUCCESS, body
                return Result.FAILURE, f"HTTP probe failed with statuscode: {code}"
            return Result.FAILURE, f'Get "{url}": stopped after {MAX_REDIRECTS} redirects'
    except TimeoutError:
        return Result.FAILURE, (f'Get "{url}": context deadline exceeded (Client.Timeout '
                                "exceeded while awaiting headers)")
    except aiohttp.ClientError as exc:
        return Result.FAILURE, f'Get "{url}": {_dial_text(exc)}'


def _dial_text(exc: Exception) -> str:
    cause = exc.__cause__ or exc
    if isinstance(cause, ConnectionRefusedError) or "refused" in str(exc).lower():
        return "connect: connection refused"
    return str(exc)


def _health_request(service: str) -> bytes:
    data = service.encode()
    return (b"\x0a" + _varint(len(data)) + data) if data else b""


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


_HEALTH_STATES: Final = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


async def _grpc_probe(action: Mapping[str, Any], target: Target,
                      timeout: float) -> tuple[Result, str]:
    port = resolve_port(action.get("port"), target.container)
    address = f"{target.pod_ip}:{port}"
    service = str(action.get("service") or "")
    options = [("grpc.enable_http_proxy", 0), ("grpc.primary_user_agent", PROBE_USER_AGENT)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        call = channel.unary_unary("/grpc.health.v1.Health/Check",
                                   request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
        try:
            reply: bytes = await call(_health_request(service), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return Result.FAILURE, ("error: this server does not implement the grpc "
                                        "health protocol (grpc.health.v1.Health): "
                                        f"{exc.details()}")
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return Result.FAILURE, f"timeout: health rpc did not complete within {timeout:g}s"
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                return Result.FAILURE, (f'error: failed to connect service at "{address}": '
                                        f"{exc.details()}")
            return Result.FAILURE, f"error: health rpc probe failed: {exc.details()}"
    state = reply[1] if len(reply) >= 2 and reply[0] == 0x08 else 0
    if state == 1:
        return Result.SUCCESS, "service healthy"
    return Result.FAILURE, (f'service unhealthy (responded with '
                            f'"{_HEALTH_STATES.get(state, "UNKNOWN")}")')


# -- the probe worker ---------------------------------------------------------------------------

OnResult = Callable[[str, Result, str], None]
"""``on_result(probe type, result, output)`` when a result is published (or an attempt
failed: ``Result.UNKNOWN`` carries the Unhealthy event text)."""


class ProbeWorker:
    """One probe of one container instance, as kubelet's ``worker.go`` runs it."""

    def __init__(self, kind: str, probe: Mapping[str, Any], target: Target,
                 on_result: OnResult, on_attempt: Callable[[str, Result, str], None], *,
                 started_at: float, clock: TimeSource, sleep: Sleep,
                 is_started: Callable[[], bool]) -> None:
        self.kind = kind
        self.probe = probe
        self.target = target
        self._on_result = on_result
        self._on_attempt = on_attempt
        self._started_at = started_at
        self._clock = clock
        self._sleep = sleep
        self._is_started = is_started
        self.period = max(float(probe.get("periodSeconds") or 10), 1.0)
        self.initial_delay = float(probe.get("initialDelaySeconds") or 0)
        self.success_threshold = int(probe.get("successThreshold") or 1)
        self.failure_threshold = int(probe.get("failureThreshold") or 3)
        self.result = {"readiness": Result.FAILURE, "liveness": Result.SUCCESS}.get(
            kind, Result.UNKNOWN)
        self._last: Result | None = None
        self._run = 0
        self.on_hold = False
        self._trigger = asyncio.Event()

    def trigger(self) -> None:
        """Probe now (kubelet's manualTriggerCh: a readiness result is wanted at once)."""
        self._trigger.set()

    async def run(self) -> None:
        """Probe every period until cancelled."""
        while True:
            await self.probe_once()
            await self._wait()

    async def _wait(self) -> None:
        if self._trigger.is_set():
            self._trigger.clear()
            return
        waiter = asyncio.ensure_future(self._trigger.wait())
        sleeper = asyncio.ensure_future(self._sleep(self.period))
        try:
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            sleeper.cancel()
        self._trigger.clear()

    async def probe_once(self) -> None:
        """One round of ``doProbe``."""
        if self.on_hold:
            return
        if self._clock() - self._started_at < self.initial_delay:
            return
        started = self._is_started()
        if self.kind == "startup" and started:
            return
        if self.kind != "startup" and not started:
            return
        result = output = None
        for _ in range(MAX_RETRIES):
            try:
                result, output = await run_probe(self.probe, self.target)
                break
            except ProbeError as exc:
                log.debug("%s probe of %s errored: %s", self.kind, self.target.container_id[:12],
                          exc)
                output = str(exc)
        if result is None:
            self._on_attempt(self.kind, Result.UNKNOWN, f"{self.kind.title()} probe errored: "
                                                        f"{output}")
            return
        if result is Result.WARNING:
            self._on_attempt(self.kind, Result.WARNING,
                             f"{self.kind.title()} probe warning: {output}")
            result = Result.SUCCESS
        if result is Result.FAILURE:
            self._on_attempt(self.kind, Result.FAILURE,
                             f"{self.kind.title()} probe failed: {output or ''}")
        if result == self._last:
            self._run += 1
        else:
            self._last, self._run = result, 1
        threshold = self.failure_threshold if result is Result.FAILURE else \
            self.success_threshold
        if self._run < threshold:
            return
        self.result = result
        self._on_result(self.kind, result, output or "")
        if (self.kind == "liveness" and result is Result.FAILURE) or self.kind == "startup":
            self.on_hold = True
            self._run = 0


# -- lifecycle hooks ----------------------------------------------------------------------------


class HookError(Exception):
    """A lifecycle hook failed; the text is kubelet's message."""


async def run_hook(hook: Mapping[str, Any], target: Target, *, pod_label: str,
                   sleep: Sleep, timeout: float) -> None:
    """Run a postStart or preStop handler (kubelet's ``handlerRunner.Run``)."""
    name = target.container.get("name")
    if "exec" in hook:
        command = _expand_static(list(_dict(hook["exec"]).get("command") or []), target.env)
        try:
            result = await target.runtime.exec_sync(target.container_id, command, timeout)
        except ContainerRuntimeError as exc:
            raise HookError(f"Exec lifecycle hook ({_go_list(command)}) for Container "
                            f'"{name}" in Pod "{pod_label}" failed - error: {exc}, '
                            'message: ""') from None
        if result.exit_code != 0 or result.timed_out:
            error = ("command timed out" if result.timed_out else
                     f"command '{shlex.join(command)}' exited with {result.exit_code}: ")
            raise HookError(f"Exec lifecycle hook ({_go_list(command)}) for Container "
                            f'"{name}" in Pod "{pod_label}" failed - error: {error}, '
                            f'message: "{result.output.decode(errors="replace")}"')
        return
    if "httpGet" in hook:
        action = _dict(hook["httpGet"])
        url = _url(action, target)
        connector = aiohttp.TCPConnector(ssl=False, force_close=True)
        try:
            async with aiohttp.ClientSession(
                    connector=connector, trust_env=False,
                    timeout=aiohttp.ClientTimeout(total=timeout or None)) as session, \
                    session.get(url, headers=_headers(action, HOOK_USER_AGENT)) as reply:
                await reply.content.read(MAX_BODY)  # the status code is ignored
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise HookError(f"HTTP lifecycle hook ({action.get('path') or '/'}) for Container "
                            f'"{name}" in Pod "{pod_label}" failed - error: '
                            f'Get "{url}": {_dial_text(exc)}') from None
        return
    if "sleep" in hook:
        await sleep(float(_dict(hook["sleep"]).get("seconds") or 0))
        return
    raise HookError(f"lifecycle hook of container {name} has no handler")


def _go_list(items: tuple[str, ...]) -> str:
    return "[" + " ".join(items) + "]"


async def run_with_deadline(coro: Awaitable[None], timeout: float) -> bool:
    """Await ``coro`` for at most ``timeout`` seconds; False if it ran out."""
    try:
        async with asyncio.timeout(timeout):
            await coro
    except TimeoutError:
        return False
    return True
