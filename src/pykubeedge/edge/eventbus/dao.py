"""EventBus's table in edgecore.db: ``sub_topics`` (upstream ``SubTopics``: one column
``topic``), the topics the cloud asked the edge to subscribe to, kept across restarts. A DAO on
the process's :class:`~pykubeedge.edge.dbm.Database` (``docs/edge-database.md``)::

    topics = await SubTopicsDAO.open(db)
    await topics.add("default/user/events")
    kept = await topics.all()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from pykubeedge.edge.dbm import DAO, Database, Schema, open_for

SCHEMA: Final = Schema("eventbus", (
    "CREATE TABLE IF NOT EXISTS sub_topics (topic TEXT PRIMARY KEY)",
))


class SubTopicsDAO(DAO):
    """EventBus's DAO. Open with :meth:`open`."""

    @classmethod
    async def open(cls, db: Database | str | Path, **options: Any) -> SubTopicsDAO:
        """The DAO on ``db`` (the process's :class:`Database`; a path opens one for the DAO
        alone, closed with it), its table registered.

        >>> topics = await SubTopicsDAO.open(database)              # doctest: +SKIP
        """
        database, owns, _ = await open_for(db, SCHEMA, **options)
        return cls(database, owns_db=owns)

    async def add(self, topic: str) -> None:
        self._check_open()
        await self.db.write(lambda c: c.execute(
            "INSERT OR REPLACE INTO sub_topics (topic) VALUES (?)", (topic,)))

    async def remove(self, topic: str) -> None:
        self._check_open()
        await self.db.write(lambda c: c.execute("DELETE FROM sub_topics WHERE topic = ?",
                                                (topic,)))

    async def all(self) -> list[str]:
        """The kept topics, the most recently subscribed last."""
        self._check_open()
        rows = await self.db.read(lambda c: c.execute(
            "SELECT topic FROM sub_topics ORDER BY rowid").fetchall())
        return [str(r[0]) for r in rows]
