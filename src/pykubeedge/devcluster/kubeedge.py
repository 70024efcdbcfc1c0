"""Build upstream KubeEdge's ``edgecore`` and ``cloudcore`` as test peers, from the Go module
proxy, once per machine.

Upstream's go.mod replaces ``github.com/kubeedge/api`` and ``github.com/kubeedge/beehive``
with ``./staging/src/...`` directories that the module zip lacks, and the proxy refuses those
staging modules at every pseudo-version. So we build from a *wrapper module*: upstream's
go.mod renamed, those two replaces pointed at the published v1.23.0 modules (which compile
against v1.23.1), every other replace kept (the Kubernetes fork among them), upstream's go.sum
copied, and no ``go mod tidy``. The binaries are cached in
``~/.cache/pykubeedge/kubeedge/<version>/``; upstream's CRDs are read from the module cache.

    >>> peers = ensure_kubeedge(log=print)
    >>> peers.edgecore
    PosixPath('/root/.cache/pykubeedge/kubeedge/v1.23.1/edgecore')
    >>> sorted(p.name for p in crd_files(peers.crds))[:1]
    ['apps_v1alpha1_edgeapplication.yaml']
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pykubeedge.core.errors import ControlPlaneError
from pykubeedge.devcluster.binaries import (
    BuildAborted,
    Log,
    allow_builds,
    build_lock,
    cache_root,
    fresh_module,
    go_build,
    is_executable,
    run_go,
)

KUBEEDGE_MODULE = "github.com/kubeedge/kubeedge"
KUBEEDGE_VERSION = "v1.23.1"
# What the proxy's v1.23.1 is (its .info names no commit): stamped into the binaries.
KUBEEDGE_COMMITS = {"v1.23.1": "1a7ee88d3c61dc781cc9c9053066ab3d38519dd5"}
# The local-path replaces of upstream's go.mod, and the published modules that stand in.
STAGING_STAND_INS: Mapping[str, str] = {
    "github.com/kubeedge/api": "v1.23.0",
    "github.com/kubeedge/beehive": "v1.23.0",
}
WRAPPER_MODULE = "pykubeedge.local/kubeedgewrapper"
T = TypeVar("T")

EDGECORE = "edgecore"
CLOUDCORE = "cloudcore"
PACKAGES: Mapping[str, str] = {
    EDGECORE: f"{KUBEEDGE_MODULE}/edge/cmd/edgecore",
    CLOUDCORE: f"{KUBEEDGE_MODULE}/cloud/cmd/cloudcore",
}
# edgecore keeps its state in SQLite through gorm's cgo driver; cloudcore is pure Go.
CGO_ENABLED: Mapping[str, str] = {EDGECORE: "1", CLOUDCORE: "0"}
BUILD_ENV: Mapping[str, str] = {"GOFLAGS": "-mod=mod -buildvcs=false", "GOWORK": "off"}

_REPLACE = re.compile(
    r"^(?P<lead>\s*(?:replace\s+)?)(?P<module>\S+)(?:\s+(?P<version>v\S+))?\s+=>\s+"
    r"(?P<target>\S+)(?:\s+(?P<target_version>v\S+))?\s*(?://.*)?$")
_PROXY_STATUS = re.compile(
    r"(?P<what>[\w./~!-]+@[\w.+~!-]+): (?:reading|verifying|downloading)[^:]*?"
    r"(?: (?P<url>https?://\S+))?: (?P<status>[1-5]\d\d [A-Za-z][A-Za-z ]*)")
_UNREACHABLE = re.compile(
    r"(?P<what>[\w./~!-]+@[\w.+~!-]+):.*?(?P<why>dial tcp[^\n\"\\]*|i/o timeout|"
    r"no such host|connection refused|TLS handshake timeout)")


@dataclass(frozen=True)
class KubeEdgeBinaries:
    edgecore: Path
    cloudcore: Path
    crds: Path  # build/crds of the module, in the Go module cache (read-only)
    version: str


def _noop(_: str) -> None:
    pass


def kubeedge_dir(version: str = KUBEEDGE_VERSION) -> Path:
    """Where the binaries of ``version`` are cached: ``kubeedge_dir() / "edgecore"``."""
    return cache_root() / "kubeedge" / version


def ensure_kubeedge(version: str = KUBEEDGE_VERSION, *, log: Log = _noop) -> KubeEdgeBinaries:
    """Return upstream's edgecore and cloudcore of ``version``, building what is missing."""
    allow_builds()
    target = kubeedge_dir(version)
    root = cache_root()
    if any(not is_executable(target / name) for name in PACKAGES):
        with build_lock(root):
            missing = [n for n in PACKAGES if not is_executable(target / n)]
            if missing:
                _build(version, missing, target, root / "build" / f"kubeedge-{version}", log)
    return KubeEdgeBinaries(edgecore=target / EDGECORE, cloudcore=target / CLOUDCORE,
                            crds=module_dir(version, log=log) / "build" / "crds",
                            version=version)


def _build(version: str, names: list[str], target: Path, work: Path, log: Log) -> None:
    cc = os.environ.get("CC", "gcc")
    if any(CGO_ENABLED[n] == "1" for n in names) and shutil.which(cc) is None:
        raise ControlPlaneError(f"building upstream edgecore needs cgo (SQLite), and {cc} "
                                "is not installed: apt-get install gcc libc6-dev")
    log(f"building upstream KubeEdge {version} {', '.join(names)} from the Go module proxy "
        "(once per machine; about 8 min on 2 cores)")
    fresh_module(work, WRAPPER_MODULE)
    info = _download(version, work, log)
    upstream = Path(info["Dir"])
    (work / "go.mod").write_text(
        wrapper_gomod(Path(info["GoMod"]).read_text(), version=version))
    # Upstream's sums, unchanged; -mod=mod adds the lines of the stand-ins and of the module.
    (work / "go.sum").write_text((upstream / "go.sum").read_text())
    ldflags = version_ldflags(version, KUBEEDGE_COMMITS.get(version, ""),
                              time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    for name in names:
        started = time.monotonic()
        env = {**BUILD_ENV, "CGO_ENABLED": CGO_ENABLED[name]}
        _one_line_refusal(go_build, work, target, [PACKAGES[name]], ldflags, log, env=env)
        log(f"built {name} {version} in {time.monotonic() - started:.0f}s: {target / name}")


def _download(version: str, work: Path, log: Log) -> dict[str, str]:
    """``go mod download -json`` of the kubeedge module: its Dir, GoMod, ... (or an error)."""
    out = _one_line_refusal(run_go, ["mod", "download", "-json", f"{KUBEEDGE_MODULE}@{version}"],
                            work, log, capture=True, env=BUILD_ENV)
    try:
        info: dict[str, str] = json.loads(out)
    except ValueError as exc:
        raise ControlPlaneError(f"`go mod download -json` printed no JSON: {out[:300]}") from exc
    if info.get("Error"):
        raise ControlPlaneError(proxy_refusal(info["Error"]) or info["Error"])
    return info


def module_dir(version: str = KUBEEDGE_VERSION, *, log: Log = _noop) -> Path:
    """The extracted kubeedge module in the Go module cache (downloaded if it is not there)."""
    cache = run_go(["env", "GOMODCACHE"], cache_root(), log, capture=True, env=BUILD_ENV)
    d = Path(cache.strip()) / f"{KUBEEDGE_MODULE}@{version}"
    if d.is_dir():
        return d
    work = cache_root() / "build" / f"kubeedge-{version}-download"
    fresh_module(work, WRAPPER_MODULE)
    return Path(_download(version, work, log)["Dir"])


def crd_files(crds: Path) -> list[Path]:
    """Every CRD manifest under upstream's ``build/crds`` (sorted, so applied in one order)."""
    files = sorted(crds.rglob("*.yaml"))
    if not files:
        raise ControlPlaneError(f"no CRD manifests under {crds}")
    return files


def wrapper_gomod(upstream: str, *, version: str = KUBEEDGE_VERSION,
                  stand_ins: Mapping[str, str] = STAGING_STAND_INS,
                  module: str = WRAPPER_MODULE) -> str:
    """Upstream's go.mod as our wrapper module's: renamed, requiring the kubeedge module at
    ``version``, its local-path replaces pointed at ``stand_ins``, all else unchanged.

    ``wrapper_gomod(Path("go.mod").read_text())``
    """
    out: list[str] = []
    in_replace_block = False
    renamed = False
    seen: set[str] = set()
    for line in upstream.splitlines():
        bare = line.split("//", 1)[0].strip()
        if re.fullmatch(r"module\s+\S+", bare):
            out.append(f"module {module}")
            renamed = True
            continue
        if bare == "replace (":
            in_replace_block = True
        elif in_replace_block and bare == ")":
            in_replace_block = False
        elif in_replace_block or bare.startswith("replace "):
            line = _stand_in(line, stand_ins, seen)
        out.append(line)
    if not renamed:
        raise ControlPlaneError("upstream go.mod has no module line")
    absent = sorted(set(stand_ins) - seen)
    if absent:
        raise ControlPlaneError(f"upstream go.mod does not replace {', '.join(absent)} "
                                "with a local path any more: review STAGING_STAND_INS")
    out += ["", f"require {KUBEEDGE_MODULE} {version}", ""]
    return "\n".join(out)


def _stand_in(line: str, stand_ins: Mapping[str, str], seen: set[str]) -> str:
    m = _REPLACE.match(line)
    if m is None or not _is_local_path(m["target"]):
        return line
    name = m["module"]
    if name not in stand_ins:
        raise ControlPlaneError(f"upstream go.mod replaces {name} with the local path "
                                f"{m['target']}, which the module zip lacks, and no "
                                "published stand-in is known")
    seen.add(name)
    return f"{m['lead']}{name} => {name} {stand_ins[name]}"


def _is_local_path(target: str) -> bool:
    return target.startswith(("./", "../", "/"))


def version_ldflags(version: str, commit: str, build_date: str) -> str:
    """``-ldflags`` stamping upstream's pkg/version (else the node reports v0.0.0-master),
    stripped like upstream's release builds."""
    major, minor = version.lstrip("v").split(".")[:2]
    values = {"gitVersion": version, "gitMajor": major, "gitMinor": minor,
              "gitCommit": commit, "gitTreeState": "clean", "buildDate": build_date}
    stamps = " ".join(f"-X {KUBEEDGE_MODULE}/pkg/version.{k}={v}"
                      for k, v in values.items() if v)
    return f"-s -w {stamps}"


def proxy_refusal(output: str) -> str | None:
    """One line saying which module the Go module proxy refused (or could not be reached
    for), found in go's output; None if the failure is something else."""
    m = _PROXY_STATUS.search(output)
    if m:
        where = f" ({m['url']})" if m["url"] else ""
        return f"the Go module proxy refused {m['what']}: {m['status'].strip()}{where}"
    m = _UNREACHABLE.search(output)
    if m:
        return f"the Go module proxy could not be reached for {m['what']}: {m['why'].strip()}"
    return None


def _one_line_refusal(step: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``step(*args, **kwargs)``; a refusal by the proxy becomes a one-line error."""
    try:
        return step(*args, **kwargs)
    except BuildAborted:
        raise
    except ControlPlaneError as exc:
        one_line = proxy_refusal(str(exc))
        if one_line is None:
            raise
        raise ControlPlaneError(one_line) from exc
