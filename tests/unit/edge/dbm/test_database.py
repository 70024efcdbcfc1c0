"""edgecore.db's one owner: modules' schemas, one writer for every DAO, batches with a savepoint
per write, commit hooks in commit order, reads beside the writer."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from pykubeedge.core.errors import StoreClosedError, StoreError
from pykubeedge.core.message import new_message
from pykubeedge.edge.dbm import BUSY_TIMEOUT_MS, Database, Schema
from pykubeedge.edge.edgehub.outbox import Outbox
from pykubeedge.edge.metamanager.dao import MetaStore
from tests.unit.edge.metamanager.objects import configmap, pod

WAIT = 5.0  # a safety net for a hung test, never reached when the code works

NOTES = Schema("notes", ("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT)",))


class Notes:
    """A third module's DAO, as DeviceTwin's or EventBus's will be: a schema and a few
    functions run on the database's threads. It records where its writes ran."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.writers: set[tuple[int, int]] = set()  # (thread, connection)

    @classmethod
    async def open(cls, db: Database) -> Notes:
        await db.register(NOTES)
        return cls(db)

    async def add(self, text: str) -> int:
        def insert(conn: sqlite3.Connection) -> int:
            self.writers.add((threading.get_ident(), id(conn)))
            return int(conn.execute("INSERT INTO notes (text) VALUES (?)", (text,)).lastrowid)

        return await self.db.write(insert)

    async def all(self) -> list[str]:
        rows = await self.db.read(lambda conn: conn.execute(
            "SELECT text FROM notes ORDER BY id").fetchall())
        return [text for (text,) in rows]


def open_files(path: Path) -> int:
    """How many descriptors of this process are open on ``path`` (not its -wal/-shm)."""
    target = str(path.resolve())
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == target:
                count += 1
        except OSError:
            continue
    return count


async def test_three_modules_share_one_writer_connection(tmp_path: Path) -> None:
    path = tmp_path / "edgecore.db"
    async with await Database.open(path) as db:
        store = await MetaStore.open(db)
        outbox = await Outbox.open(db)
        notes = await Notes.open(db)
        assert db.modules == ("metamanager", "edgehub", "notes")
        seen: set[tuple[int, int]] = set()

        def spy(conn: sqlite3.Connection, op: object) -> None:
            seen.add((threading.get_ident(), id(conn)))

        async with asyncio.timeout(WAIT):
            await asyncio.gather(
                *(store.upsert(f"default/pod/p{i}", pod(f"p{i}")) for i in range(200)),
                *(outbox.put(new_message(source="metamanager", group="resource",
                                         operation="insert", resource=f"default/event/e{i}"))
                  for i in range(200)),
                *(notes.add(f"n{i}") for i in range(200)),
                *(store._write(spy) for _ in range(20)))
        seen |= notes.writers
        assert len(seen) == 1, f"writes ran on {len(seen)} (thread, connection) pairs"
        assert db.batches < 600 / 5, f"{db.batches} transactions for 600 writes"
        assert len(await store.list_by_type("pod")) == 200
        assert len(outbox) == 200
        assert len(await notes.all()) == 200
        # One writer connection, one reader connection (readers=1), whatever the modules.
        assert open_files(path) == 2
    assert open_files(path) == 0


async def test_a_failing_write_rolls_back_alone(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "db") as db:
        notes = await Notes.open(db)

        def half_then_fail(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO notes (text) VALUES ('half')")
            raise ValueError("broken")

        results = await asyncio.gather(notes.add("a"), db.write(half_then_fail), notes.add("b"),
                                       return_exceptions=True)
        assert isinstance(results[1], StoreError)
        assert isinstance(results[1].__cause__, ValueError)
        assert await notes.all() == ["a", "b"]


async def test_commit_hooks_run_in_commit_order_even_when_nobody_waits(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "db") as db:
        await db.register(NOTES)
        order: list[int] = []

        def write(i: int) -> asyncio.Future[int]:
            return asyncio.ensure_future(db.write(
                lambda conn: conn.execute("INSERT INTO notes (text) VALUES (?)",
                                          (str(i),)).lastrowid,
                on_commit=order.append))

        tasks = [write(i) for i in range(50)]
        await asyncio.sleep(0)
        tasks[10].cancel()  # its caller gave up; the write was queued and is committed
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*tasks, return_exceptions=True)
        # The cancelled write was queued before the last ones: committed, its hook run.
        assert order == sorted(order) and len(order) == 50


async def test_schemas_register_once_and_keep_existing_tables(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with sqlite3.connect(path) as conn:  # as an older version left it
        conn.execute("CREATE TABLE edgehub_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                     "data BLOB NOT NULL)")
    async with await Database.open(path) as db:
        await db.register(NOTES)
        await db.register(NOTES)  # again: nothing happens
        with pytest.raises(ValueError, match="another schema"):
            await db.register(Schema("notes", ("CREATE TABLE IF NOT EXISTS x (y)",)))
        box = await Outbox.open(db)  # migrates the old outbox table
        assert await box.put(new_message(source="m", group="g", operation="insert",
                                         resource="default/event/e"), replace="k")
    with sqlite3.connect(path) as conn:
        assert [r[1] for r in conn.execute("PRAGMA table_info(edgehub_outbox)")] == [
            "seq", "data", "rkey"]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_every_connection_has_the_busy_policy(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "db") as db:
        def pragmas(conn: sqlite3.Connection) -> tuple[int, int]:
            return (conn.execute("PRAGMA busy_timeout").fetchone()[0],
                    conn.execute("PRAGMA synchronous").fetchone()[0])

        assert await db.write(pragmas) == (BUSY_TIMEOUT_MS, 1)  # 1: NORMAL
        assert await db.read(pragmas) == (BUSY_TIMEOUT_MS, 1)


async def test_a_lock_held_by_another_process_fails_the_batch_not_the_writer(
        tmp_path: Path) -> None:
    path = tmp_path / "db"
    async with await Database.open(path) as db:
        notes = await Notes.open(db)

        def quick(conn: sqlite3.Connection) -> None:
            conn.execute("PRAGMA busy_timeout = 50")  # the test need not wait 10 s

        await db.write(quick)
        other = sqlite3.connect(path, isolation_level=None)  # e.g. the sqlite3 shell
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreError, match="locked"):
                await notes.add("refused")
        finally:
            other.execute("ROLLBACK")
            other.close()
        await notes.add("accepted")
        assert await notes.all() == ["accepted"]


async def test_memory_database_reads_on_the_writer() -> None:
    async with await Database.open(":memory:") as db:
        notes = await Notes.open(db)
        await notes.add("x")
        assert db.readers == 0
        assert await notes.all() == ["x"]


async def test_closed_database_refuses_and_finishes_what_was_queued(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "db")
    notes = await Notes.open(db)
    pending = asyncio.ensure_future(notes.add("queued"))
    await asyncio.sleep(0)
    await db.close()
    assert await pending == 1
    with pytest.raises(StoreClosedError):
        await notes.add("late")
    with pytest.raises(StoreClosedError):
        await db.read(lambda conn: None)


async def test_a_dao_closed_on_a_shared_database_refuses_alone(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "db") as db:
        store = await MetaStore.open(db)
        notes = await Notes.open(db)
        await store.close()
        with pytest.raises(StoreClosedError):
            await store.upsert("default/configmap/c", configmap("c"))
        assert not db.closed
        assert await notes.add("still fine") == 1
