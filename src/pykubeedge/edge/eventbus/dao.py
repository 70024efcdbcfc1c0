"""EventBus's table in edgecore.db: ``sub_topics`` (upstream ``SubTopics``: one column
``topic``), the topics the cloud asked the edge to subscribe to, kept across restarts.

    dao = SubTopicsDAO(db)
    await dao.create_tables()
    await dao.add("default/user/events")
    topics = await dao.all()
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Database(Protocol):
    """The narrow interface the DAO needs of the edge database manager."""

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...


SCHEMA = ("CREATE TABLE IF NOT EXISTS sub_topics (topic TEXT PRIMARY KEY)",)


class SubTopicsDAO:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_tables(self) -> None:
        def create(conn: sqlite3.Connection) -> None:
            for statement in SCHEMA:
                conn.execute(statement)

        await self.db.write(create)

    async def add(self, topic: str) -> None:
        await self.db.write(lambda c: c.execute(
            "INSERT OR REPLACE INTO sub_topics (topic) VALUES (?)", (topic,)))

    async def remove(self, topic: str) -> None:
        await self.db.write(lambda c: c.execute("DELETE FROM sub_topics WHERE topic = ?",
                                                (topic,)))

    async def all(self) -> list[str]:
        rows = await self.db.read(lambda c: c.execute(
            "SELECT topic FROM sub_topics ORDER BY rowid").fetchall())
        return [str(r[0]) for r in rows]
