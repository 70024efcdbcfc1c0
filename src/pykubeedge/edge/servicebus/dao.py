"""ServiceBus's table in edgecore.db: ``target_urls`` (upstream ``TargetUrls``: one column
``url``), the URLs cloud rules allow local callers to reach, kept across restarts. A DAO on the
process's :class:`~pykubeedge.edge.dbm.Database` (``docs/edge-database.md``)::

    urls = await TargetURLsDAO.open(db)
    await urls.add("/cloud/api")
    assert await urls.allowed("/cloud/api")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from pykubeedge.edge.dbm import DAO, Database, Schema, open_for

SCHEMA: Final = Schema("servicebus", (
    "CREATE TABLE IF NOT EXISTS target_urls (url TEXT PRIMARY KEY)",
))


class TargetURLsDAO(DAO):
    """ServiceBus's DAO. Open with :meth:`open`; :meth:`allowed` answers from memory (the table
    is loaded once and kept in step with every write)."""

    def __init__(self, db: Database, urls: list[str], *, owns_db: bool = False) -> None:
        super().__init__(db, owns_db=owns_db)
        self._urls = set(urls)

    @classmethod
    async def open(cls, db: Database | str | Path, **options: Any) -> TargetURLsDAO:
        """The DAO on ``db`` (the process's :class:`Database`; a path opens one for the DAO
        alone, closed with it), its table registered and read.

        >>> urls = await TargetURLsDAO.open(database)              # doctest: +SKIP
        """
        database, owns, urls = await open_for(
            db, SCHEMA, load=lambda c: [str(r[0]) for r in c.execute(
                "SELECT url FROM target_urls ORDER BY rowid")], **options)
        return cls(database, urls or [], owns_db=owns)

    async def add(self, url: str) -> None:
        self._check_open()
        await self.db.write(lambda c: c.execute(
            "INSERT OR REPLACE INTO target_urls (url) VALUES (?)", (url,)))
        self._urls.add(url)

    async def remove(self, url: str) -> None:
        self._check_open()
        await self.db.write(lambda c: c.execute("DELETE FROM target_urls WHERE url = ?",
                                                (url,)))
        self._urls.discard(url)

    def allowed(self, url: str) -> bool:
        return url in self._urls

    def all(self) -> list[str]:
        return sorted(self._urls)
