"""The tables one edge module owns in edgecore.db, and how they are brought up to date.

Each module declares its schema once, next to its DAO, and registers it when it attaches to
the :class:`~pykubeedge.edge.dbm.Database`::

    OUTBOX = Schema("edgehub", (
        "CREATE TABLE IF NOT EXISTS edgehub_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
        "data BLOB NOT NULL, rkey TEXT)",
    ), migrate=add_rkey_column)
    await db.register(OUTBOX)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

Migration = Callable[[sqlite3.Connection], None]


@dataclass(frozen=True, slots=True)
class Schema:
    """``statements`` create what is missing (``IF NOT EXISTS``: an existing database,
    upstream's included, is left as it is); then ``migrate`` may alter what an older version
    of the module left behind. Both run on the writer thread, in one transaction.

    >>> Schema("eventbus", ("CREATE TABLE IF NOT EXISTS sub_topics (topic TEXT PRIMARY KEY)",))
    Schema(module='eventbus', statements=(...), migrate=None)
    """

    module: str
    statements: tuple[str, ...]
    migrate: Migration | None = None

    def apply(self, conn: sqlite3.Connection) -> None:
        for statement in self.statements:
            conn.execute(statement)
        if self.migrate is not None:
            self.migrate(conn)


def columns(conn: sqlite3.Connection, table: str) -> set[str]:
    """The column names of ``table`` (empty if it does not exist), for migrations.

    >>> "rkey" in columns(conn, "edgehub_outbox")    # doctest: +SKIP
    True
    """
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
