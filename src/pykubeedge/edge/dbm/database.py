"""The one owner of edgecore.db in an edgecore process (upstream ``edge/pkg/common/dbm``).

One writer thread holds the only writing connection. It takes whatever writes have queued up
and commits them in one transaction (``BEGIN IMMEDIATE``, WAL, ``synchronous=NORMAL``), each
write inside its own savepoint, so a failing write fails alone and the others of its batch
commit. Reads run on reader threads with their own read-only connections (WAL lets them read
while the writer writes), so a read never waits behind a batch of writes. Nothing here blocks
the event loop::

    db = await Database.open("/var/lib/kubeedge/edgecore.db")
    await db.register(SCHEMA)                       # a module's tables (see Schema)
    n = await db.write(lambda conn: conn.execute(
        "INSERT INTO sub_topics (topic) VALUES (?)", (topic,)).rowcount)
    rows = await db.read(lambda conn: conn.execute("SELECT topic FROM sub_topics").fetchall())
    await db.close()

Why a reader thread: measured with 20k pods, a read queued behind write batches on the writer
thread took p99 ~220 ms, on a reader thread ~5 ms (the writer does ~10-14k upserts/s when
writes arrive together, ~500 per commit; ~5k/s one by one).

The busy policy, the same for every connection: SQLite's ``busy_timeout`` of
:data:`BUSY_TIMEOUT_MS`. Inside this process nothing else writes, so only another process
(the sqlite3 shell, a backup) can hold the lock; a batch that cannot begin within that time
fails as a whole with :class:`StoreError`, and every write in it is refused, none half done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from pykubeedge.core.errors import StoreClosedError, StoreError
from pykubeedge.edge.dbm.schema import Schema

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_WRITE_QUEUE: Final = 4096
"""Writes waiting for the writer thread before ``write`` callers wait."""
DEFAULT_READ_QUEUE: Final = 256
"""Reads waiting for a reader thread before ``read`` callers wait."""
DEFAULT_BATCH_SIZE: Final = 512
"""Most writes committed in one transaction."""
BUSY_TIMEOUT_MS: Final = 10_000
"""How long any connection waits for a lock another process holds."""

WriteFn = Callable[[sqlite3.Connection], T]
ReadFn = Callable[[sqlite3.Connection], T]
CommitHook = Callable[[Any], None]
_Outcome = tuple["_Write", Any, BaseException | None]


@dataclass(slots=True)
class _Write:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    on_commit: CommitHook | None


class Database:
    """edgecore.db. Open with :meth:`open`; one per database file and process."""

    def __init__(self, path: str, *, write_queue: int, read_queue: int, batch_size: int,
                 readers: int) -> None:
        # Use Database.open(); the constructor only sets fields.
        self.path = path
        self.readers = readers
        self._batch_size = batch_size
        self._write_slots = asyncio.Semaphore(write_queue)
        self._read_slots = asyncio.Semaphore(read_queue)
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._reader_pool: ThreadPoolExecutor | None = None
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_local = threading.local()
        self._reader_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._schemas: dict[str, Schema] = {}
        self._closed = False
        self.batches = 0
        """Transactions committed (for tests and benchmarks: writes / batches = batching)."""

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        readers: int = 1,
        write_queue: int = DEFAULT_WRITE_QUEUE,
        read_queue: int = DEFAULT_READ_QUEUE,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> Database:
        """Open (creating if needed) the database at ``path`` and start its threads.

        ``readers`` = 0 runs reads on the writer thread instead (forced for ``":memory:"``,
        which a second connection would not see).

        >>> db = await Database.open(tmp_path / "edgecore.db")    # doctest: +SKIP
        """
        if min(write_queue, read_queue, batch_size) < 1 or readers < 0:
            raise ValueError("queue and batch sizes must be at least 1, readers at least 0")
        path = str(path)
        if path == ":memory:":
            readers = 0
        db = cls(path, write_queue=write_queue, read_queue=read_queue, batch_size=batch_size,
                 readers=readers)
        await db._start()
        return db

    async def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.path != ":memory:":
            await asyncio.to_thread(Path(self.path).parent.mkdir, parents=True, exist_ok=True)
        ready: asyncio.Future[None] = self._loop.create_future()
        self._writer = threading.Thread(target=self._write_loop, args=(ready,),
                                        name="dbm-writer", daemon=True)
        self._writer.start()
        await ready
        if self.readers:
            self._reader_pool = ThreadPoolExecutor(max_workers=self.readers,
                                                   thread_name_prefix="dbm-reader")
        log.info("database %s open (%d reader thread(s))", self.path, self.readers)

    async def close(self) -> None:
        """Finish the queued writes, then stop the threads and close the connections."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        if self._writer is not None:
            await asyncio.to_thread(self._writer.join)
        if self._reader_pool is not None:
            await asyncio.to_thread(self._reader_pool.shutdown, wait=True)
            with self._reader_lock:
                for conn in self._reader_conns:
                    conn.close()
                self._reader_conns.clear()

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- schemas -----------------------------------------------------------------------------

    async def register(self, schema: Schema) -> None:
        """Create ``schema``'s tables if missing and run its migration (once per module).

        >>> urls = "CREATE TABLE IF NOT EXISTS target_urls (url TEXT PRIMARY KEY)"
        >>> await db.register(Schema("servicebus", (urls,)))    # doctest: +SKIP
        """
        known = self._schemas.get(schema.module)
        if known is not None:
            if known != schema:
                raise ValueError(f"module {schema.module!r} registered another schema already")
            return
        await self.write(schema.apply)
        self._schemas[schema.module] = schema

    @property
    def modules(self) -> tuple[str, ...]:
        """The modules whose schemas are registered."""
        return tuple(self._schemas)

    # -- writes and reads --------------------------------------------------------------------

    async def write(self, fn: WriteFn[T], *, on_commit: Callable[[T], None] | None = None) -> T:
        """Run ``fn(conn)`` on the writer thread, inside the next batch's transaction, and
        return its result once that transaction is committed.

        ``fn`` must only use ``conn`` and its own arguments (it runs on another thread). If it
        raises, its own changes are rolled back and this call raises :class:`StoreError`;
        the rest of the batch commits. ``on_commit(result)`` runs on the event loop right
        after the commit, in commit order, even if the caller has stopped waiting (a change
        feed published there never skips a committed change).

        >>> await db.write(lambda conn: conn.execute("DELETE FROM sub_topics").rowcount)
        ...                                                         # doctest: +SKIP
        3
        """
        if self._closed or self._loop is None:
            raise StoreClosedError(f"database {self.path} is closed")
        async with self._write_slots:
            future: asyncio.Future[T] = self._loop.create_future()
            self._queue.put(_Write(fn, future, on_commit))
            return await future

    async def read(self, fn: ReadFn[T]) -> T:
        """Run ``fn(conn)`` on a reader thread (a read-only connection) and return its result.

        It sees every write that has returned. ``fn`` wanting rows and a value that agree
        wraps them in one transaction (``BEGIN`` ... ``COMMIT``; see :func:`snapshot`).

        >>> await db.read(lambda conn: conn.execute("SELECT COUNT(*) FROM meta").fetchone())
        ...                                                         # doctest: +SKIP
        (12,)
        """
        if self._closed or self._loop is None:
            raise StoreClosedError(f"database {self.path} is closed")
        async with self._read_slots:
            if self._reader_pool is None:
                return await self.write(fn)
            try:
                return await self._loop.run_in_executor(self._reader_pool, self._on_reader, fn)
            except sqlite3.Error as exc:
                raise StoreError(f"reading {self.path} failed: {exc}") from exc

    def _on_reader(self, fn: ReadFn[T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._reader_local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            conn.execute("PRAGMA query_only = ON")
            self._reader_local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return fn(conn)

    # -- the writer thread -------------------------------------------------------------------

    def _write_loop(self, ready: asyncio.Future[None]) -> None:
        loop = self._loop
        assert loop is not None
        try:
            conn = _connect(self.path)
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.Error as exc:
            error = StoreError(f"cannot open the database {self.path}: {exc}")
            loop.call_soon_threadsafe(_fail, ready, error)
            return
        loop.call_soon_threadsafe(_succeed, ready, None)
        try:
            stop = False
            while not stop:
                item = self._queue.get()
                batch: list[_Write] = []
                if item is None:
                    stop = True
                else:
                    batch.append(item)
                while not stop and len(batch) < self._batch_size:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stop = True
                    else:
                        batch.append(item)
                if batch:
                    self._commit_safely(conn, batch, loop)
        finally:
            conn.close()

    def _commit_safely(self, conn: sqlite3.Connection, batch: list[_Write],
                       loop: asyncio.AbstractEventLoop) -> None:
        try:
            self._commit(conn, batch, loop)
        except Exception as exc:  # keep the writer alive whatever happens to one batch
            log.exception("database %s: a write batch failed", self.path)
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            self._fail_all(loop, batch, StoreError(f"write to {self.path} failed: {exc!r}"))

    def _commit(self, conn: sqlite3.Connection, batch: list[_Write],
                loop: asyncio.AbstractEventLoop) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._fail_all(loop, batch, StoreError(f"cannot write {self.path}: {exc}"))
            return
        outcomes: list[_Outcome] = []
        for write in batch:
            conn.execute("SAVEPOINT dbm_write")
            try:
                result = write.fn(conn)
            except Exception as exc:  # one bad write must not fail its batch
                conn.execute("ROLLBACK TO dbm_write")
                conn.execute("RELEASE dbm_write")
                outcomes.append((write, None, exc))
                continue
            conn.execute("RELEASE dbm_write")
            outcomes.append((write, result, None))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._fail_all(loop, batch, StoreError(f"commit to {self.path} failed: {exc}"))
            return
        self.batches += 1
        self._deliver(loop, outcomes)

    def _fail_all(self, loop: asyncio.AbstractEventLoop, batch: list[_Write],
                  error: StoreError) -> None:
        self._deliver(loop, [(write, None, error) for write in batch])

    def _deliver(self, loop: asyncio.AbstractEventLoop, outcomes: list[_Outcome]) -> None:
        try:
            loop.call_soon_threadsafe(self._complete, outcomes)
        except RuntimeError:  # the loop is closed: nobody waits any more
            log.warning("database %s: %d write result(s) lost, event loop closed", self.path,
                        len(outcomes))

    def _complete(self, outcomes: list[_Outcome]) -> None:
        for write, result, error in outcomes:
            if error is None and write.on_commit is not None:
                try:
                    write.on_commit(result)
                except Exception:
                    log.exception("database %s: a commit hook failed", self.path)
            if write.future.done():
                continue
            if error is None:
                write.future.set_result(result)
            elif isinstance(error, StoreError):
                write.future.set_exception(error)
            else:
                store_error = StoreError(f"write to {self.path} failed: {error!r}")
                store_error.__cause__ = error
                write.future.set_exception(store_error)


@contextlib.contextmanager
def snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """One read transaction, so several queries see the same state (a no-op on the writer,
    already inside its batch)::

        with snapshot(conn):
            rows = conn.execute("SELECT value FROM meta_v2").fetchall()
            revision = conn.execute("SELECT revision FROM meta_revision").fetchone()
    """
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def _succeed(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
