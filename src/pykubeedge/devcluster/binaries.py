"""Find or build the control-plane binaries: etcd, kube-apiserver, kube-scheduler,
kube-controller-manager.

No registry ships these binaries, but the Go module proxy serves their source. We build them
once per machine from a *wrapper module* (kubernetes/kubernetes#79384) and cache them by
version under ``~/.cache/pykubeedge``. A directory named by ``PYKUBEEDGE_K8S_BIN_DIR`` (or the
``bin_dir`` argument) wins over the cache, so users with their own binaries skip the build.

    >>> bins = ensure_binaries("full", log=print)
    >>> bins.apiserver
    PosixPath('/root/.cache/pykubeedge/k8s/v1.37.2/kube-apiserver')
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pykubeedge.core.errors import ControlPlaneError
from pykubeedge.devcluster.process import die_with_parent

Tier = Literal["minimal", "full"]
Log = Callable[[str], None]

# Newest first: if one fails to build we fall back to the next and say so.
KUBE_VERSIONS = ("v1.37.2", "v1.36.3", "v1.35.4", "v1.34.4")
ETCD_VERSIONS = ("v3.6.16", "v3.6.15")

APISERVER = "kube-apiserver"
SCHEDULER = "kube-scheduler"
CONTROLLER_MANAGER = "kube-controller-manager"
ETCD = "etcd"
TIER_KUBE_BINARIES: dict[str, tuple[str, ...]] = {
    "minimal": (APISERVER,),
    "full": (APISERVER, SCHEDULER, CONTROLLER_MANAGER),
}
# The real build takes 10-25 minutes on 2 cores; a hung proxy must still end.
BUILD_TIMEOUT_S = 60 * 60


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    apiserver: Path
    scheduler: Path | None
    controller_manager: Path | None
    kube_version: str


def cache_root() -> Path:
    env = os.environ.get("PYKUBEEDGE_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "pykubeedge"


def _noop(_: str) -> None:
    pass


def ensure_binaries(
    tier: Tier = "minimal", *, bin_dir: str | Path | None = None, log: Log = _noop
) -> Binaries:
    """Return paths to the binaries for ``tier``, building and caching what is missing."""
    wanted = TIER_KUBE_BINARIES[tier]
    user_dir = bin_dir or os.environ.get("PYKUBEEDGE_K8S_BIN_DIR")
    if user_dir:
        return _from_user_dir(Path(user_dir), tier)

    allow_builds()
    root = cache_root()
    etcd = _ensure_etcd(root, log)
    errors: list[str] = []
    for version in KUBE_VERSIONS:
        target = root / "k8s" / version
        missing = [b for b in wanted if not is_executable(target / b)]
        if missing:
            try:
                _build_kube(version, missing, root, log)
            except BuildAborted:
                raise
            except ControlPlaneError as exc:
                errors.append(f"{version}: {exc}")
                log(f"building Kubernetes {version} failed; trying the next version")
                continue
        if version != KUBE_VERSIONS[0]:
            log(f"using Kubernetes {version} (newer versions failed to build)")
        return _binaries_in(target, etcd, tier, version)
    raise ControlPlaneError("no Kubernetes version could be built:\n" + "\n".join(errors))


def _from_user_dir(d: Path, tier: Tier) -> Binaries:
    names = (ETCD, *TIER_KUBE_BINARIES[tier])
    missing = [n for n in names if not is_executable(d / n)]
    if missing:
        raise ControlPlaneError(f"{d} lacks executable {', '.join(missing)}")
    return _binaries_in(d, d / ETCD, tier, _probe_version(d / APISERVER))


def _binaries_in(d: Path, etcd: Path, tier: Tier, version: str) -> Binaries:
    full = tier == "full"
    return Binaries(
        etcd=etcd,
        apiserver=d / APISERVER,
        scheduler=d / SCHEDULER if full else None,
        controller_manager=d / CONTROLLER_MANAGER if full else None,
        kube_version=version,
    )


def _probe_version(apiserver: Path) -> str:
    try:
        out = subprocess.run(
            [str(apiserver), "--version"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    m = re.search(r"v\d+\.\d+\.\d+\S*", out)
    return m.group(0) if m else "unknown"


def is_executable(p: Path) -> bool:
    return p.is_file() and os.access(p, os.X_OK)


@contextmanager
def build_lock(root: Path) -> Iterator[None]:
    """One build at a time per cache, across processes (two test runs, local-up + tests)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".build.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _ensure_etcd(root: Path, log: Log) -> Path:
    errors: list[str] = []
    for version in ETCD_VERSIONS:
        target = root / "etcd" / version / ETCD
        if is_executable(target):
            return target
        with build_lock(root):
            if is_executable(target):
                return target
            work = root / "build" / f"etcd-{version}"
            try:
                fresh_module(work, "pykubeedge.local/etcdwrapper")
                run_go(["get", f"go.etcd.io/etcd/server/v3@{version}"], work, log)
                go_build(work, target.parent, ["go.etcd.io/etcd/server/v3"], "", log,
                          rename={"server": ETCD})
                return target
            except BuildAborted:
                raise
            except ControlPlaneError as exc:
                errors.append(f"etcd {version}: {exc}")
                log(f"building etcd {version} failed; trying the next version")
    system = shutil.which("etcd")
    if system:
        log(f"using the system etcd at {system} (older than the supported minimum)")
        return Path(system)
    raise ControlPlaneError("etcd could not be built:\n" + "\n".join(errors))


def _build_kube(version: str, names: list[str], root: Path, log: Log) -> None:
    with build_lock(root):
        target = root / "k8s" / version
        names = [n for n in names if not is_executable(target / n)]
        if not names:
            return
        work = root / "build" / f"k8s-{version}"
        log(f"building {', '.join(names)} {version} from the Go module proxy "
            "(once per machine; 10-25 min on 2 cores)")
        fresh_module(work, "pykubeedge.local/k8swrapper")
        replaces = _staging_replaces(version, work, log)
        gomod = work / "go.mod"
        text = gomod.read_text()
        text += f"\nrequire k8s.io/kubernetes {version}\n\nreplace (\n"
        text += "".join(f"\t{m} => {m} {v}\n" for m, v in replaces)
        text += ")\n"
        gomod.write_text(text)
        # -mod=mod lets the build add the go.sum lines it needs.
        run_go(["mod", "download", "k8s.io/kubernetes"], work, log)
        major, minor, _ = version.lstrip("v").split(".")
        ldflags = " ".join(
            f"-X k8s.io/component-base/version.{k}={v}"
            for k, v in {
                "gitVersion": version,
                "gitMajor": major,
                "gitMinor": minor,
                "gitTreeState": "clean",
                "buildDate": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }.items()
        )
        go_build(work, target, [f"k8s.io/kubernetes/cmd/{n}" for n in names], ldflags, log)


def _staging_replaces(version: str, work: Path, log: Log) -> list[tuple[str, str]]:
    """The ``k8s.io/<staging> v0.0.0`` requirements of k8s.io/kubernetes, pinned to v0.X.Y."""
    out = run_go(["mod", "download", "-json", f"k8s.io/kubernetes@{version}"], work, log,
              capture=True)
    info = json.loads(out)
    if info.get("Error"):
        raise ControlPlaneError(info["Error"])
    gomod = Path(info["GoMod"]).read_text()
    staging = sorted(set(re.findall(r"^\s*(?:require\s+)?(k8s\.io/[\w.-]+) v0\.0\.0\s*$",
                                    gomod, re.M)))
    if not staging:
        raise ControlPlaneError(f"no staging modules found in k8s.io/kubernetes@{version} go.mod")
    pinned = "v0." + version.lstrip("v").split(".", 1)[1]
    return [(m, pinned) for m in staging]


def fresh_module(work: Path, name: str) -> None:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / "go.mod").write_text(f"module {name}\n\ngo 1.24\n")


def _go_env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CGO_ENABLED", "0")
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=mod").strip()
    env.setdefault("GOTOOLCHAIN", "local")
    env.update(overrides or {})
    return env


_running: set[subprocess.Popen[str]] = set()
_running_lock = threading.Lock()
_aborted = threading.Event()


class BuildAborted(ControlPlaneError):
    """The build was stopped on purpose (Ctrl-C, or the watchdog): no fallback version."""


def allow_builds() -> None:
    """Let builds run again after abort_builds() (each ensure_* call starts with this)."""
    _aborted.clear()


def abort_builds() -> None:
    """Kill the Go builds under way (Ctrl-C in `keadm local-up` during the first build)."""
    _aborted.set()
    with _running_lock:
        procs = list(_running)
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # go and the compilers and linker it runs


def run_go(args: list[str], cwd: Path, log: Log, *, capture: bool = False,
           env: Mapping[str, str] | None = None) -> str:
    """Run ``go args`` in ``cwd`` (``env`` over the defaults), stoppable by abort_builds():
    ``run_go(["mod", "download"], work, print)``."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        raise ControlPlaneError("the Go toolchain is needed to build the control plane "
                                "(or set PYKUBEEDGE_K8S_BIN_DIR to a directory of binaries)")
    cmd = [go, *args]
    if _aborted.is_set():  # stopped between two steps of a build
        raise BuildAborted(f"`go {' '.join(args)}` not started: the build was stopped")
    try:
        # Its own process group (so it can be killed whole), and it dies with us.
        proc = subprocess.Popen(cmd, cwd=cwd, env=_go_env(env), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                preexec_fn=die_with_parent)
    except OSError as exc:
        raise ControlPlaneError(f"cannot run {go}: {exc}") from exc
    with _running_lock:
        _running.add(proc)
    if _aborted.is_set():  # stopped while it was starting
        abort_builds()
    watchdog = threading.Timer(BUILD_TIMEOUT_S, abort_builds)  # a hung proxy must still end
    watchdog.daemon = True
    watchdog.start()
    lines: list[str] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            lines.append(line)
            if not capture:
                log(line.rstrip())
        rc = proc.wait()
    finally:
        watchdog.cancel()
        if proc.poll() is None:  # leaving on an error: the build must not run on
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        with _running_lock:
            _running.discard(proc)
    if rc < 0 or _aborted.is_set():
        raise BuildAborted(f"`go {' '.join(args)}` was stopped (signal {-rc})")
    if rc != 0:
        tail = "".join(lines[-15:])
        raise ControlPlaneError(f"`go {' '.join(args)}` failed (exit {rc}):\n{tail}")
    return "".join(lines)


def go_build(work: Path, target_dir: Path, packages: list[str], ldflags: str, log: Log,
             rename: dict[str, str] | None = None, env: Mapping[str, str] | None = None) -> None:
    """Build into a temporary directory, then move into the cache: no half-written binaries.
    ``go_build(work, cache / "v1", ["example.com/cmd/x"], "", print)``"""
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target_dir.parent) as tmp:
        args = ["build", "-trimpath", "-o", tmp + "/"]
        jobs = os.environ.get("PYKUBEEDGE_BUILD_JOBS")
        if jobs:
            args += ["-p", jobs]
        if ldflags:
            args += ["-ldflags", ldflags]
        run_go([*args, *packages], work, log, env=env)
        for produced in Path(tmp).iterdir():
            name = (rename or {}).get(produced.name, produced.name)
            os.replace(produced, target_dir / name)
