"""DeviceTwin's group commit on edge/dbm's errors: a failed write (StoreError) is tried again,
5 times, 1 s apart, as upstream; a closed database (edgecore stopping) is not."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pykubeedge.core.errors import StoreClosedError, StoreError
from pykubeedge.edge.devicetwin.committer import Committer
from pykubeedge.edge.devicetwin.dao import Op


async def commit_once(error: Exception) -> tuple[int, list[float], Exception | None]:
    calls = 0
    slept: list[float] = []
    outcome: list[Exception | None] = []

    async def run_ops(ops: Sequence[Op]) -> None:
        nonlocal calls
        calls += 1
        raise error

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def done(err: Exception | None) -> None:
        outcome.append(err)

    committer = Committer(run_ops, sleep=sleep)
    runner = asyncio.create_task(committer.run())
    try:
        await committer.submit([lambda conn: None], done)
        async with asyncio.timeout(5):
            await committer.idle()
    finally:
        runner.cancel()
    return calls, slept, outcome[0]


async def test_a_failed_write_is_tried_five_times_one_second_apart() -> None:
    error = StoreError("write to edgecore.db failed: disk I/O error")
    calls, slept, outcome = await commit_once(error)
    assert (calls, slept, outcome) == (5, [1.0] * 4, error)


async def test_a_closed_database_is_not_tried_again() -> None:
    error = StoreClosedError("DeviceDAO on edgecore.db is closed")
    calls, slept, outcome = await commit_once(error)
    assert (calls, slept, outcome) == (1, [], error)
