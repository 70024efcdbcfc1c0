"""EdgeHub's outbox: messages for the cloud produced while the connection is down, kept in
edgecore.db (so a restart of edgecore does not lose them either) and sent in order on
reconnect. Upstream drops them (kubeedge#6615).

The outbox is bounded: when full, ``put`` refuses and the caller answers the producer with an
error instead of losing a message silently. It is a DAO on the process's
:class:`~pykubeedge.edge.dbm.Database` (table ``edgehub_outbox``), so its writes share the
one writer thread with every other module's::

    box = await Outbox.open(db)
    await box.put(msg)
    for seq, msg in await box.peek(100):
        send(msg)
        await box.delete_through(seq)
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any, Final, Protocol

from pykubeedge.core import codec
from pykubeedge.core.errors import DecodeError
from pykubeedge.core.message import Message
from pykubeedge.edge.dbm import DAO, Database, Schema, columns, open_for

log = logging.getLogger(__name__)

DEFAULT_LIMIT: Final = 10_000


def _add_rkey(conn: sqlite3.Connection) -> None:
    if "rkey" not in columns(conn, "edgehub_outbox"):  # a database from before coalescing
        conn.execute("ALTER TABLE edgehub_outbox ADD COLUMN rkey TEXT")
    conn.execute("CREATE INDEX IF NOT EXISTS edgehub_outbox_rkey ON edgehub_outbox (rkey)")


SCHEMA: Final = Schema("edgehub", (
    """CREATE TABLE IF NOT EXISTS edgehub_outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        data BLOB NOT NULL,
        rkey TEXT
    )""",
), migrate=_add_rkey)


class MessageStore(Protocol):
    """What EdgeHub needs of its outbox (:class:`Outbox`; a list in unit tests)."""

    limit: int

    def __len__(self) -> int: ...

    async def put(self, msg: Message, *, replace: str | None = None) -> bool: ...

    async def peek(self, n: int) -> list[tuple[int, Message | None]]: ...

    async def delete_through(self, seq: int) -> None: ...


def _count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM edgehub_outbox").fetchone()[0])


class Outbox(DAO):
    """EdgeHub's DAO. Open with :meth:`open`."""

    def __init__(self, db: Database, limit: int, count: int, *, owns_db: bool = False) -> None:
        # Use Outbox.open(); the constructor only sets fields.
        super().__init__(db, owns_db=owns_db)
        self.limit = limit
        self._count = count

    @classmethod
    async def open(cls, db: Database | str | Path, *, limit: int = DEFAULT_LIMIT,
                   **options: Any) -> Outbox:
        """The outbox on ``db`` (the process's :class:`Database`; a path opens one for the
        outbox alone, closed with it).

        >>> box = await Outbox.open(db, limit=10_000)    # doctest: +SKIP
        """
        database, owns, count = await open_for(db, SCHEMA, load=_count, **options)
        if count:
            log.info("outbox holds %d message(s) from before; they go first", count)
        return cls(database, limit, count or 0, owns_db=owns)

    def __len__(self) -> int:
        return self._count

    def _set_count(self, count: int) -> None:
        self._count = count  # on commit, in commit order: the last one is the truth

    async def put(self, msg: Message, *, replace: str | None = None) -> bool:
        """Keep ``msg``; False when the outbox is full. With ``replace``, an older message kept
        under the same key is dropped first: only the newest node status, pod status or lease
        is worth sending after a long outage (and sending the old ones first would be wrong)."""
        self._check_open()
        data = codec.encode(msg)
        limit = self.limit

        def insert(conn: sqlite3.Connection) -> int:
            count = _count(conn)
            older = 0
            if replace is not None:
                older = int(conn.execute("SELECT COUNT(*) FROM edgehub_outbox WHERE rkey = ?",
                                         (replace,)).fetchone()[0])
            if count - older >= limit:
                return -1
            if older:
                conn.execute("DELETE FROM edgehub_outbox WHERE rkey = ?", (replace,))
            conn.execute("INSERT INTO edgehub_outbox (data, rkey) VALUES (?, ?)",
                         (data, replace))
            return count - older + 1

        def committed(count: int) -> None:
            if count >= 0:
                self._set_count(count)

        return await self.db.write(insert, on_commit=committed) >= 0

    async def peek(self, n: int) -> list[tuple[int, Message | None]]:
        """The oldest ``n`` rows as (seq, message); an unreadable row comes as (seq, None) so
        the caller can delete past it."""
        self._check_open()
        rows = await self.db.read(lambda conn: conn.execute(
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
        """Forget every row up to ``seq`` (they were sent)."""
        self._check_open()

        def delete(conn: sqlite3.Connection) -> int:
            conn.execute("DELETE FROM edgehub_outbox WHERE seq <= ?", (seq,))
            return _count(conn)

        await self.db.write(delete, on_commit=self._set_count)
