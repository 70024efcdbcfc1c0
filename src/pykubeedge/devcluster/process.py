"""Child processes that die with us: started in their own session (Ctrl-C reaches us, and we
stop them in order), with PR_SET_PDEATHSIG (SIGKILL) so a killed parent leaves no orphans,
output to a log file.

    proc = ManagedProcess("etcd", ["etcd", "--data-dir", d], workdir / "etcd.log")
    await proc.start()
    ...
    await proc.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import random
import signal
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from pykubeedge.core.errors import ControlPlaneError

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 15.0
_PR_SET_PDEATHSIG = 1


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def _pick_range() -> range:
    """Ports the kernel never hands out to an outgoing connection on its own."""
    lo, hi = _ephemeral_range()
    if lo - 1024 >= 4096:
        return range(1024 + (lo - 1024) // 2, lo)  # the upper half below the ephemeral range
    if 65535 - hi >= 4096:
        return range(hi + 1, 65536)
    return range(0)


_port_lock = threading.Lock()
_port_range = _pick_range()
# Each process starts at its own offset, so two test runs or two local-ups rarely try the
# same ports, and the bind below settles the rest.
_port_next = random.randrange(len(_port_range)) if _port_range else 0


def free_port() -> int:
    """A free TCP port on 127.0.0.1, never given out twice by this process.

    Chosen below the kernel's ephemeral range: a port picked from that range (``bind(0)``)
    can be taken by any outgoing connection before its server binds it, which failed CI with
    "address already in use".
    """
    global _port_next
    with _port_lock:
        for _ in range(len(_port_range)):
            port = _port_range[_port_next]
            _port_next = (_port_next + 1) % len(_port_range)
            if _bindable(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # no range left: the old way
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# Looked up now: between fork and exec (in a process with threads) loading a library could
# deadlock on the loader's lock.
_prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl


def die_with_parent() -> None:
    # Runs in the child between fork and exec: kill it when its parent goes away. SIGKILL, not
    # SIGTERM: a kube-apiserver whose etcd is going away at the same time can take minutes
    # over a graceful shutdown, and nobody is left to wait for it.
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class ManagedProcess:
    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    process: asyncio.subprocess.Process | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def start(self) -> None:
        # A local file, opened once per child start: not worth a thread.
        out = open(self.log_path, "ab")  # noqa: SIM115, ASYNC230
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                env=self.env, start_new_session=True, preexec_fn=die_with_parent)
        except OSError as exc:
            raise ControlPlaneError(f"cannot start {self.name}: {exc}") from exc
        finally:
            out.close()

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        """Signal it and wait; SIGKILL after STOP_TIMEOUT_S."""
        p = self.process
        if p is None or p.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(sig)
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await p.wait()
        except TimeoutError:
            log.warning("%s did not stop in %.0fs; killing it", self.name, STOP_TIMEOUT_S)
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            await p.wait()

    async def kill(self) -> None:
        """SIGKILL, as a crash would (for resilience tests)."""
        await self.stop(signal.SIGKILL)

    async def wait_port(self, port: int, timeout: float = 30.0) -> None:
        """Until something listens on 127.0.0.1:``port``; fails fast if the process exits."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if not self.running:
                raise ControlPlaneError(f"{self.name} exited:\n{self.log_tail()}")
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise ControlPlaneError(f"{self.name} did not listen on port {port} in {timeout:.0f}s")
