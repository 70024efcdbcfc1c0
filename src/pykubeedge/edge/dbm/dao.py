"""What every module's DAO shares: the database it works on, and its own closed state.

A DAO is opened on the process's :class:`Database` (or, in tests and tools, on a path: then
it opens a database of its own and closes it with itself)::

    class SubTopics(DAO):
        @classmethod
        async def open(cls, db: Database | str | Path) -> SubTopics:
            database, owns, _ = await open_for(db, SCHEMA)
            return cls(database, owns_db=owns)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pykubeedge.core.errors import StoreClosedError
from pykubeedge.edge.dbm.database import Database
from pykubeedge.edge.dbm.schema import Schema

T = TypeVar("T")


async def open_for(target: Database | str | Path, schema: Schema, *,
                   load: Callable[[sqlite3.Connection], T] | None = None,
                   **options: Any) -> tuple[Database, bool, T | None]:
    """The database a DAO works on, with ``schema`` registered: ``target`` itself, or one
    opened on the path ``target`` (``options`` as :meth:`Database.open` takes them). Returns
    it, whether the DAO owns it, and what ``load`` read from it (None without ``load``).

    >>> db, owns, count = await open_for(database, SCHEMA, load=count_rows)  # doctest: +SKIP
    """
    owns = not isinstance(target, Database)
    if isinstance(target, Database):
        if options:
            raise TypeError(f"options {sorted(options)} are for a database of its own")
        database = target
    else:
        database = await Database.open(target, **options)
    try:
        await database.register(schema)
        loaded = await database.read(load) if load is not None else None
    except BaseException:
        if owns:
            await database.close()
        raise
    return database, owns, loaded


class DAO:
    """Base of a module's DAO: ``db``, and :meth:`close` that refuses further work (and
    closes the database when the DAO opened it)."""

    def __init__(self, db: Database, *, owns_db: bool = False) -> None:
        self.db = db
        self._owns_db = owns_db
        self._closed = False

    @property
    def path(self) -> str:
        return self.db.path

    async def close(self) -> None:
        """Refuse further work; close the database if this DAO opened it (after its queued
        writes are done)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_db:
            await self.db.close()

    async def __aenter__(self: T) -> T:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"{type(self).__name__} on {self.db.path} is closed")
