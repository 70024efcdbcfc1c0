"""``python -m pykubeedge.devcluster build [--tier full]``: build and cache the control plane.
``python -m pykubeedge.devcluster build-kubeedge``: build and cache upstream KubeEdge's
edgecore and cloudcore (the peers of tests/interop).

The set-up step calls both so that tests and ``keadm local-up`` find the binaries ready.
"""

from __future__ import annotations

import argparse
import sys
import time

from pykubeedge.core.errors import ControlPlaneError
from pykubeedge.devcluster.binaries import cache_root, ensure_binaries
from pykubeedge.devcluster.kubeedge import KUBEEDGE_VERSION, ensure_kubeedge


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pykubeedge.devcluster")
    sub = parser.add_subparsers(dest="cmd", required=True)
    build = sub.add_parser("build", help="build (or find cached) control-plane binaries")
    build.add_argument("--tier", choices=("minimal", "full"), default="full")
    build.add_argument("--quiet", action="store_true", help="do not echo the Go build output")
    peers = sub.add_parser("build-kubeedge",
                           help="build (or find cached) upstream KubeEdge edgecore and cloudcore")
    peers.add_argument("--version", default=KUBEEDGE_VERSION, help=argparse.SUPPRESS)
    peers.add_argument("--quiet", action="store_true", help="do not echo the Go build output")
    args = parser.parse_args(argv)

    started = time.monotonic()
    log = (lambda _s: None) if args.quiet else (lambda s: print(s, flush=True))
    try:
        if args.cmd == "build-kubeedge":
            kubeedge = ensure_kubeedge(args.version, log=log)
            what = f"upstream KubeEdge {kubeedge.version} (edgecore, cloudcore)"
        else:
            bins = ensure_binaries(args.tier, log=log)
            what = f"control plane {bins.kube_version} ({args.tier})"
    except ControlPlaneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{what} ready in {time.monotonic() - started:.0f}s; cache: {cache_root()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
