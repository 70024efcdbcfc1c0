"""EdgeHub's outbox: messages for the cloud produced while the connection is down, kept in
SQLite (so a restart of edgecore does not lose them either) and sent in order on reconnect.

Upstream drops them (kubeedge#6615). The outbox is bounded: when full, ``put`` refuses and the
caller answers the producer with an error instead of losing a message silently.

All SQLite work runs on one dedicated thread, so the event loop never blocks on disk.

    box = await Outbox.open("/var/lib/kubeedge/edgecore.db")
    await box.put(msg)
    for seq, msg in await box.peek(100):
        send(msg)
        await box.delete_through(seq)
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from pykubeedge.core import codec
from pykubeedge.core.errors import DecodeError
from pykubeedge.core.message import Message

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 10_000
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS edgehub_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    data BLOB NOT NULL,
    rkey TEXT
)
"""
_INDEX = "CREATE INDEX IF NOT EXISTS edgehub_outbox_rkey ON edgehub_outbox (rkey)"


class Outbox:
    def __init__(self, conn: sqlite3.Connection, executor: ThreadPoolExecutor, limit: int) -> None:
        self._conn = conn
        self._executor = executor
        self.limit = limit
        self._count = 0

    @classmethod
    async def open(cls, path: str | Path, *, limit: int = DEFAULT_LIMIT) -> Outbox:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgehub-outbox")

        def connect() -> sqlite3.Connection:
            if str(path) != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")  # MetaStore shares the file
            conn.execute(_SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(edgehub_outbox)")}
            if "rkey" not in columns:  # a database from before coalescing
                conn.execute("ALTER TABLE edgehub_outbox ADD COLUMN rkey TEXT")
            conn.execute(_INDEX)
            return conn

        loop = asyncio.get_running_loop()
        conn = await loop.run_in_executor(executor, connect)
        box = cls(conn, executor, limit)
        box._count = await box._run(lambda: conn.execute(
            "SELECT COUNT(*) FROM edgehub_outbox").fetchone()[0])
        if box._count:
            log.info("outbox holds %d message(s) from before; they go first", box._count)
        return box

    async def _run(self, fn: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def __len__(self) -> int:
        return self._count

    async def put(self, msg: Message, *, replace: str | None = None) -> bool:
        """Keep ``msg``; False when the outbox is full. With ``replace``, an older message kept
        under the same key is dropped first: only the newest node status, pod status or lease
        is worth sending after a long outage (and sending the old ones first would be wrong)."""
        data = codec.encode(msg)

        def insert() -> int:
            older = 0
            if replace is not None:
                older = self._conn.execute("SELECT COUNT(*) FROM edgehub_outbox WHERE rkey = ?",
                                           (replace,)).fetchone()[0]
            if self._count - older >= self.limit:
                return -1
            if older:
                self._conn.execute("DELETE FROM edgehub_outbox WHERE rkey = ?", (replace,))
            self._conn.execute("INSERT INTO edgehub_outbox (data, rkey) VALUES (?, ?)",
                               (data, replace))
            return int(older)

        removed = await self._run(insert)
        if removed < 0:
            return False
        self._count += 1 - removed
        return True

    async def peek(self, n: int) -> list[tuple[int, Message | None]]:
        """The oldest ``n`` rows as (seq, message); an unreadable row comes as (seq, None) so
        the caller can delete past it."""
        rows = await self._run(lambda: self._conn.execute(
            "SELECT seq, data FROM edgehub_outbox ORDER BY seq LIMIT ?", (n,)).fetchall())
        out: list[tuple[int, Message | None]] = []
        for seq, data in rows:
            try:
                out.append((seq, codec.decode(data)))
            except DecodeError as exc:
                log.error("outbox row %d is unreadable and is dropped: %s", seq, exc)
                out.append((seq, None))
        return out

    async def delete_through(self, seq: int) -> None:
        def delete() -> int:
            cur = self._conn.execute("DELETE FROM edgehub_outbox WHERE seq <= ?", (seq,))
            return cur.rowcount

        removed = await self._run(delete)
        self._count = max(0, self._count - removed)

    async def close(self) -> None:
        await self._run(self._conn.close)
        self._executor.shutdown(wait=False)
