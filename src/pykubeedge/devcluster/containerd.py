"""A private containerd for tests, benchmarks and ``keadm local-up``.

Everything it keeps (config, root, state, socket, opt, runc's root, CNI config) is in one
directory; it runs as our child (its own session, killed if we die) and is ready when CRI
``Version`` answers. Pods are removed through CRI before it stops, so no shim outlives it::

    async with PrivateContainerd(Path("/tmp/pke-ctd")) as ctd:
        await ctd.import_images(await build_local_images(ctd.base / "images.tar"))
        runtime = ctd.runtime(pods_dir=..., pod_logs_dir=...)

Two settings are required on machines without CAP_SYS_RESOURCE: ``restrict_oom_score_adj``
and no hostname on host-network sandboxes (CRIRuntime sends none). ``network``: ``loopback``
(a CNI config with only ``lo``: host-network pods, Node Ready), ``bridge`` (pods get an IP
from ``pod_subnet``; adds iptables rules and turns on ``ip_forward``) or ``none`` (no CNI
config: the runtime reports NetworkReady=false).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, Literal

from pykubeedge.devcluster.localimages import PAUSE_IMAGE, import_images
from pykubeedge.edge.edged.cri.remote import CRINotServedError, CRIRuntime
from pykubeedge.edge.edged.runtime import ContainerRuntimeError, ContainerState, SandboxState

log = logging.getLogger(__name__)

NetworkMode = Literal["loopback", "bridge", "none"]

START_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 15.0
CNI_BIN_DIR: Final = "/usr/lib/cni"
SNAPSHOTTER: Final = "overlayfs"
_MAX_SOCKET_PATH: Final = 107  # sun_path is 108 bytes with the NUL
_PR_SET_PDEATHSIG: Final = 1
_MNT_DETACH: Final = 2
_LOG_TAIL_BYTES: Final = 4096
_IP_FORWARD: Final = "/proc/sys/net/ipv4/ip_forward"
_SHIM_SOCKETS: Final = "/run/containerd/s"  # fixed in containerd 1.6, whatever the config
# plugins that would touch host paths outside the private directory, or are never used
_DISABLED_PLUGINS: Final = (
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
)

_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl  # looked up now: the child must not load anything between fork and exec


def _die_with_parent() -> None:
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _toml(value: object) -> str:
    """A TOML value (strings, booleans, ints and lists of strings are all we write)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


class PrivateContainerd:
    """One containerd process and its private directory ``base``."""

    def __init__(
        self,
        base: Path,
        *,
        sandbox_image: str = PAUSE_IMAGE,
        network: NetworkMode = "loopback",
        pod_subnet: str = "10.88.0.0/16",
        bridge: str = "pke0",
        snapshotter: str = SNAPSHOTTER,
        containerd: str = "containerd",
        ctr: str = "ctr",
        cni_bin_dir: str = CNI_BIN_DIR,
        log_level: str = "warn",
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.base = base.absolute()
        self.sandbox_image = sandbox_image
        self.network = network
        self.pod_subnet = pod_subnet
        self.bridge = bridge
        self.snapshotter = snapshotter
        self.containerd = containerd
        self.ctr = ctr
        self.cni_bin_dir = cni_bin_dir
        self.log_level = log_level
        self.start_timeout = start_timeout
        self.process: asyncio.subprocess.Process | None = None
        self._ip_forward_before = ""
        if len(str(self.socket).encode()) > _MAX_SOCKET_PATH:
            raise ContainerRuntimeError(
                f"socket path {self.socket} is longer than {_MAX_SOCKET_PATH} bytes; "
                "use a shorter private directory")

    # -- paths --------------------------------------------------------------------------------

    @property
    def socket(self) -> Path:
        return self.base / "containerd.sock"

    @property
    def endpoint(self) -> str:
        """The CRI endpoint, ``unix:///.../containerd.sock``."""
        return f"unix://{self.socket}"

    @property
    def config_path(self) -> Path:
        return self.base / "config.toml"

    @property
    def log_path(self) -> Path:
        return self.base / "containerd.log"

    @property
    def runc_root(self) -> Path:
        return self.base / "runc"

    @property
    def cni_conf_dir(self) -> Path:
        return self.base / "cni" / "net.d"

    @property
    def registry_hosts_dir(self) -> Path:
        """containerd's ``config_path``: one ``<host>/hosts.toml`` per configured registry."""
        return self.base / "certs.d"

    def trust_plain_http(self, host: str) -> Path:
        """Let CRI pull from registry ``host`` (``127.0.0.1:5000``) over plain HTTP (a
        loopback test registry); read by containerd at pull time, no restart needed."""
        directory = self.registry_hosts_dir / host
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "hosts.toml"
        path.write_text(f'server = "http://{host}"\n\n[host."http://{host}"]\n'
                        '  capabilities = ["pull", "resolve"]\n')
        return path

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    # -- config -------------------------------------------------------------------------------

    def config(self) -> str:
        """containerd's config.toml (version 2)."""
        b = self.base
        cri = '[plugins."io.containerd.grpc.v1.cri"]'
        runc = f"{cri[:-1]}.containerd.runtimes.runc]"
        lines = [
            "version = 2",
            f"root = {_toml(str(b / 'root'))}",
            f"state = {_toml(str(b / 'state'))}",
            f"temp = {_toml(str(b / 'tmp'))}",
            "oom_score = 0",
            f"disabled_plugins = {_toml(_DISABLED_PLUGINS)}",
            "",
            "[grpc]",
            f"  address = {_toml(str(self.socket))}",
            "",
            "[ttrpc]",
            '  address = ""',
            "",
            "[debug]",
            '  address = ""',
            f"  level = {_toml(self.log_level)}",
            "",
            "[metrics]",
            '  address = ""',
            "",
            '[plugins."io.containerd.internal.v1.opt"]',
            f"  path = {_toml(str(b / 'opt'))}",
            "",
            '[plugins."io.containerd.runtime.v1.linux"]',
            f"  runtime_root = {_toml(str(b / 'runc-v1'))}",
            "",
            cri,
            f"  sandbox_image = {_toml(self.sandbox_image)}",
            "  restrict_oom_score_adj = true",
            "  disable_tcp_service = true",
            '  stream_server_address = "127.0.0.1"',
            '  stream_server_port = "0"',
            "  netns_mounts_under_state_dir = true",
            "  enable_selinux = false",
            "",
            f"{cri[:-1]}.containerd]",
            f"  snapshotter = {_toml(self.snapshotter)}",
            '  default_runtime_name = "runc"',
            "",
            runc,
            '  runtime_type = "io.containerd.runc.v2"',
            "",
            f"{runc[:-1]}.options]",
            f"  Root = {_toml(str(self.runc_root))}",
            "  SystemdCgroup = false",
            "",
            f"{cri[:-1]}.registry]",
            f"  config_path = {_toml(str(self.registry_hosts_dir))}",
            "",
            f"{cri[:-1]}.cni]",
            f"  bin_dir = {_toml(self.cni_bin_dir)}",
            f"  conf_dir = {_toml(str(self.cni_conf_dir))}",
            "  max_conf_num = 1",
            "",
        ]
        return "\n".join(lines)

    def cni_config(self) -> dict[str, object] | None:
        """The CNI network list of ``network`` (None for ``none``)."""
        if self.network == "none":
            return None
        if self.network == "loopback":
            return {"cniVersion": "0.4.0", "name": "pykubeedge-loopback",
                    "plugins": [{"type": "loopback"}]}
        return {
            "cniVersion": "0.4.0",
            "name": "pykubeedge",
            "plugins": [
                {
                    "type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": self.pod_subnet}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.base / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }

    def _write_files(self) -> None:
        for sub in ("root", "state", "tmp", "opt", "runc", "certs.d"):
            (self.base / sub).mkdir(parents=True, exist_ok=True, mode=0o711)
        self.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        for old in self.cni_conf_dir.iterdir():
            old.unlink()
        cni = self.cni_config()
        if cni is not None:
            (self.cni_conf_dir / "10-pykubeedge.conflist").write_text(json.dumps(cni, indent=2))
        self.config_path.write_text(self.config())
        self.socket.unlink(missing_ok=True)

    # -- life ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start containerd; return when CRI answers (fails with its log tail if it exits)."""
        if self.running:
            return
        if shutil.which(self.containerd) is None:
            raise ContainerRuntimeError(
                f"{self.containerd} not found: install the containerd, runc and "
                "containernetworking-plugins packages")
        await asyncio.to_thread(self._write_files)
        if self.network == "bridge" and not self._ip_forward_before:
            self._ip_forward_before = _read_text(_IP_FORWARD)
        # a local file opened once per start: not worth a thread
        out = open(self.log_path, "wb")  # noqa: SIM115, ASYNC230
        try:
            self.process = await asyncio.create_subprocess_exec(
                self.containerd, "--config", str(self.config_path),
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=True, preexec_fn=_die_with_parent)
        except OSError as exc:
            raise ContainerRuntimeError(f"cannot start {self.containerd}: {exc}") from exc
        finally:
            out.close()
        try:
            await self._wait_ready()
        except BaseException:
            await self._terminate()
            raise
        log.info("containerd %s ready at %s (pid %s)", self.base, self.endpoint, self.pid)

    async def _wait_ready(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout
        last = ""
        async with self.runtime() as runtime:
            while loop.time() < deadline:
                if not self.running:
                    raise ContainerRuntimeError(
                        f"containerd exited (code {self.process and self.process.returncode}):"
                        f" {self.log_tail()}")
                try:
                    await runtime.version()
                    return
                except CRINotServedError as exc:
                    raise ContainerRuntimeError(f"{exc}; log: {self.log_tail()}") from None
                except ContainerRuntimeError as exc:
                    last = str(exc)
                await asyncio.sleep(0.05)
        raise ContainerRuntimeError(
            f"containerd at {self.endpoint} not ready in {self.start_timeout:g}s: {last}; "
            f"log: {self.log_tail()}")

    def runtime(self, *, pods_dir: Path | None = None, pod_logs_dir: Path | None = None,
                **kwargs: Any) -> CRIRuntime:
        """A :class:`CRIRuntime` for this containerd; pod files and logs under ``base``
        unless told otherwise (other keyword arguments are passed on)."""
        return CRIRuntime(self.endpoint, pods_dir=pods_dir or self.base / "pods",
                          pod_logs_dir=pod_logs_dir or self.base / "logs", **kwargs)

    async def import_images(self, archive: Path) -> None:
        """Import an image archive into the ``k8s.io`` namespace (CRI's)."""
        await import_images(archive, address=str(self.socket), snapshotter=self.snapshotter,
                            ctr=self.ctr)

    async def remove_all_pods(self, *, grace: float = 0) -> int:
        """Stop and remove every pod sandbox through CRI; return how many there were."""
        async with self.runtime() as runtime:
            pods = await runtime.list_pods()
            for pod in pods:
                try:  # one pod that fails must not keep the others (and their shims) alive
                    for container in pod.containers:
                        if container.state is ContainerState.RUNNING:
                            await runtime.stop_container(container.id, grace)
                    if pod.state is SandboxState.READY:
                        await runtime.stop_pod_sandbox(pod.id)
                    await runtime.remove_pod_sandbox(pod.id)
                except ContainerRuntimeError as exc:
                    log.warning("could not remove pod sandbox %s: %s", pod.id[:12], exc)
        return len(pods)

    async def stop(self, *, remove_pods: bool = True,
                   timeout: float = STOP_TIMEOUT) -> list[str]:
        """Remove the pods (so no shim outlives it), stop containerd, then sweep whatever a
        crash may have left: runc containers, shims and mounts of this directory. Returns
        what the sweep had to clean (nothing, when all went well)."""
        if remove_pods and self.running:
            try:
                await self.remove_all_pods()
            except ContainerRuntimeError as exc:
                log.warning("containerd %s: pods not removed through CRI: %s", self.base, exc)
        await self._terminate(timeout)
        return await asyncio.to_thread(self.sweep)

    async def _terminate(self, timeout: float = STOP_TIMEOUT) -> None:
        proc = self.process
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            async with asyncio.timeout(timeout):
                await proc.wait()
        except TimeoutError:
            log.warning("containerd %s did not stop in %gs; killing it", self.base, timeout)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    def shim_pids(self) -> list[int]:
        """Shims started by this containerd (their command line names our socket)."""
        return list(self._shims())

    def _shims(self) -> dict[int, str]:
        """pid -> the ``-id`` of each shim of ours."""
        return {pid: _arg(argv, "-id") for pid, argv in _processes()
                if _is_our_shim(argv, str(self.socket))}

    def shim_socket(self, shim_id: str, namespace: str = "k8s.io") -> Path:
        """Where containerd 1.6 puts a shim's socket (``/run/containerd/s/<sha256>``)."""
        key = os.path.join(str(self.socket), namespace, shim_id)
        return Path(_SHIM_SOCKETS, hashlib.sha256(key.encode()).hexdigest())

    def sweep(self) -> list[str]:
        """Blocking clean-up after containerd stopped: kill the containers runc still has,
        then our shims, and unmount what is mounted under ``base`` (all of which only a
        crash leaves; returned as a list), then remove the CNI bridge."""
        done: list[str] = []
        runc_ns = self.runc_root / "k8s.io"
        if runc_ns.is_dir():
            for entry in runc_ns.iterdir():
                state = entry / "state.json"
                pid = _init_pid(state)
                if pid and _kill(pid):
                    done.append(f"killed container {entry.name[:12]} (pid {pid})")
        for pid, shim_id in self._shims().items():
            if _kill(pid):
                done.append(f"killed shim pid {pid}")
            if shim_id:  # a killed shim cannot remove its socket
                with contextlib.suppress(OSError):
                    self.shim_socket(shim_id).unlink()
                    done.append(f"removed shim socket of {shim_id[:12]}")
        for mount in sorted(_mounts_under(self.base), key=len, reverse=True):
            if _libc.umount2(mount.encode(), _MNT_DETACH) == 0:
                done.append(f"unmounted {mount}")
        for line in done:
            log.warning("containerd %s: left behind, cleaned: %s", self.base, line)
        if self.network == "bridge":
            for line in self._remove_bridge():
                log.info("containerd %s: %s", self.base, line)
        return done

    def _remove_bridge(self) -> list[str]:
        """Delete our CNI bridge and put ``ip_forward`` back as it was before ``start``."""
        done = []
        if Path("/sys/class/net", self.bridge).exists():
            try:
                result = subprocess.run(["ip", "link", "delete", self.bridge],
                                        capture_output=True, timeout=10, check=False)
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("could not delete bridge %s: %s", self.bridge, exc)
            else:
                if result.returncode == 0:
                    done.append(f"deleted bridge {self.bridge}")
        if self._ip_forward_before == "0" and _read_text(_IP_FORWARD) == "1":
            with contextlib.suppress(OSError):
                Path(_IP_FORWARD).write_text("0")
                done.append("ip_forward set back to 0")
        self._ip_forward_before = ""
        return done

    def log_tail(self) -> str:
        """The end of containerd's log, on one line."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - _LOG_TAIL_BYTES))
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return " | ".join(line for line in text.splitlines()[-8:] if line.strip())

    async def __aenter__(self) -> PrivateContainerd:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _processes() -> Iterable[tuple[int, list[str]]]:
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        yield int(entry.name), argv


def _arg(argv: list[str], flag: str) -> str:
    for i, value in enumerate(argv[:-1]):
        if value == flag:
            return argv[i + 1]
    return ""


def _is_our_shim(argv: list[str], socket: str) -> bool:
    if not argv or not os.path.basename(argv[0]).startswith("containerd-shim"):
        return False
    return _arg(argv, "-address") == socket


def _init_pid(state: Path) -> int:
    """The container's init pid, if that pid is still the process runc started (same start
    time), so a reused pid is never killed."""
    try:
        data = json.loads(state.read_text())
        pid, start = data["init_process_pid"], data["init_process_start"]
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rpartition(")")[2].split()
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    # field 22 (starttime); fields[0] here is field 3 (state)
    if not isinstance(pid, int) or pid <= 1 or len(fields) < 20 or fields[19] != str(start):
        return 0
    return pid


def _kill(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _mounts_under(base: Path) -> list[str]:
    prefix = str(base).rstrip("/") + "/"
    found = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4:
                    point = fields[4].replace("\\040", " ")
                    if point.startswith(prefix):
                        found.append(point)
    except OSError:
        return []
    return found
