"""Interop tests: upstream KubeEdge v1.23.1 binaries (built once from the Go module proxy and
cached, see pykubeedge.devcluster.kubeedge) on one side, pykubeedge on the other.

Each test module starts its rig once (module scope) and tears it all down, even on failure.
After every test, the upstream processes' log lines written since the previous check (for the
first test of a module: since its rig started) are checked against rig.UPSTREAM_LOG_ERRORS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.interop.rig import InteropRig, forbidden_lines


@pytest.fixture(autouse=True)
def upstream_log_is_clean(rig: InteropRig) -> Iterator[None]:
    """Fails the test (at teardown) if upstream logged a forbidden line since the last check."""
    yield
    outage, rig.outage = rig.outage, False
    found = forbidden_lines(rig.unchecked_log(), outage=outage)
    assert not found, ("upstream logged, since the previous check:\n" +
                       "\n".join(f"[{name}] {line[:400]}" for name, line in found[:20]) +
                       (f"\n... and {len(found) - 20} more" if len(found) > 20 else ""))
