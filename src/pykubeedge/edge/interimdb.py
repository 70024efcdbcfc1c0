"""INTERIM database adapter for the DeviceTwin and EventBus DAOs, until ``edge/dbm`` lands
(issue 7: one writer thread for edgecore.db, modules register their tables and get DAOs).

It opens ANOTHER writer connection on edgecore.db (MetaStore and EdgeHub's outbox have their
own): acceptable for now under WAL with a busy timeout, NOT the final design. When edge/dbm
lands, ``edge/app.py`` hands the DAOs a dbm handle instead of this class; the DAOs only rely on
the two methods of their ``Database`` protocol (``write`` and ``read``), so nothing else changes.

    db = await InterimDatabase.open("/var/lib/kubeedge/edgecore.db")
    await db.write(lambda conn: conn.execute("INSERT INTO sub_topics VALUES (?)", ("a/b",)))
    rows = await db.read(lambda conn: conn.execute("SELECT topic FROM sub_topics").fetchall())
    await db.close()
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

BUSY_TIMEOUT_MS = 10_000


class InterimDatabase:
    """One connection on one thread: ``write`` runs ``fn(conn)`` in a transaction (committed
    when it returns, rolled back when it raises), ``read`` runs it outside one."""

    def __init__(self, conn: sqlite3.Connection, executor: ThreadPoolExecutor) -> None:
        self._conn = conn
        self._executor = executor
        self._closed = False

    @classmethod
    async def open(cls, path: str | Path) -> InterimDatabase:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="interim-db")

        def connect() -> sqlite3.Connection:
            if str(path) != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            return conn

        conn = await asyncio.get_running_loop().run_in_executor(executor, connect)
        return cls(conn, executor)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return result

        return await self._run(run)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(lambda: fn(self._conn))

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise sqlite3.ProgrammingError("the database is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def close(self) -> None:
        if self._closed:
            return
        await self._run(self._conn.close)
        self._closed = True
        self._executor.shutdown(wait=False)
