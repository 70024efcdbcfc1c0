"""``python -m pykubeedge.devcluster build [--tier full]``: build and cache the control plane.

The set-up step calls this so that tests and ``keadm local-up`` find the binaries ready.
"""

from __future__ import annotations

import argparse
import sys
import time

from pykubeedge.core.errors import ControlPlaneError
from pykubeedge.devcluster.binaries import cache_root, ensure_binaries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pykubeedge.devcluster")
    sub = parser.add_subparsers(dest="cmd", required=True)
    build = sub.add_parser("build", help="build (or find cached) control-plane binaries")
    build.add_argument("--tier", choices=("minimal", "full"), default="full")
    build.add_argument("--quiet", action="store_true", help="do not echo the Go build output")
    args = parser.parse_args(argv)

    started = time.monotonic()
    log = (lambda _s: None) if args.quiet else (lambda s: print(s, flush=True))
    try:
        bins = ensure_binaries(args.tier, log=log)
    except ControlPlaneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"control plane {bins.kube_version} ({args.tier}) ready in "
          f"{time.monotonic() - started:.0f}s; cache: {cache_root()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
