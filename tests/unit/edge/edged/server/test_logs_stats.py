"""Log files and node figures without a server: tails, since, rotation while followed, the
root cgroup of v1 and v2 hosts, and CPU rates between samples."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from pykubeedge.edge.edged.server.logs import (
    LogOptions,
    LogOptionsError,
    format_cri_line,
    parse_log_options,
    stream_log,
    tail_offset,
)
from pykubeedge.edge.edged.server.stats import CPURates, node_cpu_nanoseconds, node_memory
from pykubeedge.edge.edged.streaming import ResourceUsage


def lines(n: int, start: float = 1000.0) -> bytes:
    return b"".join(format_cri_line(start + i, "stdout", f"l{i}") for i in range(n))


@pytest.mark.parametrize(("count", "want"), [(0, 5), (1, 4), (2, 3), (5, 0), (9, 0)])
def test_tail_offset_counts_lines_from_the_end(tmp_path: Path, count: int, want: int) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(lines(5))
    offset = tail_offset(str(path), count)
    assert path.read_bytes()[offset:].count(b"\n") == 5 - want


async def collect(path: Path, opts: LogOptions, **kw: object) -> bytes:
    out = bytearray()

    async def write(data: bytes) -> None:
        out.extend(data)

    async def running() -> bool:
        return False

    await stream_log(str(path), opts, write=write, running=running, **kw)  # type: ignore[arg-type]
    return bytes(out)


async def test_since_and_tail_combine(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    await asyncio.to_thread(path.write_bytes, lines(10))
    got = await collect(path, LogOptions(tail_lines=4, since=1007.5))
    assert got == b"l8\nl9\n"


async def test_a_rotated_file_is_followed_into_its_successor(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    await asyncio.to_thread(path.write_bytes, lines(2))
    out = bytearray()
    alive = True

    async def write(data: bytes) -> None:
        out.extend(data)

    async def running() -> bool:
        return alive

    follower = asyncio.create_task(stream_log(str(path), LogOptions(follow=True), write=write,
                                              running=running, poll=0.01, running_check=0.05))
    for _ in range(200):
        if out:
            break
        await asyncio.sleep(0.01)
    await asyncio.to_thread(os.rename, path, tmp_path / "0.log.1")
    await asyncio.to_thread(path.write_bytes, format_cri_line(2000, "stderr", "fresh"))
    for _ in range(300):
        if b"fresh" in out:
            break
        await asyncio.sleep(0.01)
    alive = False
    await asyncio.wait_for(follower, 5)
    assert bytes(out) == b"l0\nl1\nfresh\n"


@pytest.mark.parametrize(("query", "code"), [
    ({"sinceSeconds": ["1"], "sinceTime": ["2024-01-01T00:00:00Z"]}, 422),
    ({"limitBytes": ["0"]}, 422),
    ({"follow": ["maybe"]}, 400),
    ({"sinceTime": ["yesterday"]}, 400),
])
def test_bad_log_queries_are_kubelets_errors(query: dict[str, list[str]], code: int) -> None:
    with pytest.raises(LogOptionsError) as err:
        parse_log_options(query, now=0)
    assert err.value.code == code


def test_tail_is_kubelets_old_alias_and_negative_means_all() -> None:
    assert parse_log_options({"tail": ["3"]}, now=0).tail_lines == 3
    assert parse_log_options({"tail": ["all"]}, now=0).tail_lines is None
    assert parse_log_options({"tailLines": ["-1"]}, now=0).tail_lines is None


def test_cgroup_v1_and_v2_node_figures(tmp_path: Path) -> None:
    v1 = tmp_path / "v1"
    (v1 / "cpuacct").mkdir(parents=True)
    (v1 / "memory").mkdir()
    (v1 / "cpuacct" / "cpuacct.usage").write_text("123456789\n")
    (v1 / "memory" / "memory.usage_in_bytes").write_text("1000\n")
    (v1 / "memory" / "memory.stat").write_text("total_inactive_file 300\ntotal_rss 200\n")
    assert node_cpu_nanoseconds(v1) == 123456789
    assert node_memory(v1) == (1000, 700, 200)
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.stat").write_text("usage_usec 42\nuser_usec 40\n")
    (v2 / "memory.stat").write_text("anon 500\nfile 400\ninactive_file 1000\n")
    assert node_cpu_nanoseconds(v2) == 42000
    assert node_memory(v2) == (900, 0, 500)  # working set never below zero


def test_cpu_rates_need_two_samples_and_ignore_a_counter_going_back() -> None:
    rates = CPURates(max_keys=2)
    assert rates.nano_cores("c", ResourceUsage(10.0, 1_000_000_000, 1)) is None
    assert rates.nano_cores("c", ResourceUsage(12.0, 2_000_000_000, 1)) == 500_000_000
    assert rates.nano_cores("c", ResourceUsage(13.0, 1_000_000_000, 1)) is None  # restarted
    for key in ("a", "b"):
        rates.nano_cores(key, ResourceUsage(1.0, 1, 1))
    assert rates.nano_cores("c", ResourceUsage(14.0, 2, 1)) is None  # evicted: bounded
