"""Helpers the benchmark scripts share (they run as scripts: ``bench/`` is on sys.path)."""

from __future__ import annotations

import contextlib
import resource


def raise_nofile() -> int:
    """Raise the open-files soft limit to the hard limit (thousands of sockets); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def percentiles(values: list[float]) -> dict[str, float]:
    """n, min, p50, p90, p99, max of ``values`` (nearest rank)."""
    if not values:
        return {"n": 0}
    v = sorted(values)

    def q(p: float) -> float:
        return v[min(len(v) - 1, round(p * (len(v) - 1)))]

    return {"n": len(v), "min": v[0], "p50": q(0.5), "p90": q(0.9), "p99": q(0.99),
            "max": v[-1]}
