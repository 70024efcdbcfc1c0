"""MetaManager's tables in edgecore.db, behind one DAO: ``meta`` and ``meta_v2``, exactly as
upstream lays them out, and the revision the change feed (:mod:`.feed`) counts in.

- ``meta``: ``key`` (the edge resource string, e.g. ``default/pod/nginx``), ``type``, ``value``
  (JSON text); this is what Edged gets back after a restart.
- ``meta_v2``: the objects MetaServer serves (pods, configmaps, secrets, services, endpoints,
  nodes; see :mod:`.resources`), keyed ``/<group|core>/<version>/<plural>/<ns|null>/<name>``.
  Its ``resource_version`` is the store's own **revision**, and the served object carries it as
  ``metadata.resourceVersion``: one monotonic sequence, like etcd's, so list-then-watch and
  watch resumption work for any client.
- Every write that changes something takes the next revision (persisted in ``meta_revision``
  within the same savepoint, so it survives restarts and a failed write takes none) and
  publishes :class:`~.feed.Change` records to :attr:`MetaStore.feed` right after its commit.

Writes and reads go through the process's :class:`~pykubeedge.edge.dbm.Database` (one batching
writer thread, reader threads)::

    store = await MetaStore.open(db)          # or a path: a database of its own (tests)
    await store.upsert("default/pod/nginx", pod)
    pods = await store.list_by_type("pod")              # every namespace
    outcome = await store.delete("default/pod/nginx", uid=pod["metadata"]["uid"])
    await store.close()
"""

from __future__ import annotations

import enum
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import orjson

from pykubeedge.core.constants import NULL_NAMESPACE, RESOURCE_SEP, ResourceType
from pykubeedge.core.content import maybe_json
from pykubeedge.core.errors import DecodeError, StoreError
from pykubeedge.core.objects import uid_of
from pykubeedge.core.resource import build_edge, parse_edge
from pykubeedge.edge.dbm import DAO, Database, Schema, open_for, snapshot
from pykubeedge.edge.metamanager.feed import DEFAULT_FEED_SIZE, Change, ChangeFeed, ChangeType
from pykubeedge.edge.metamanager.resources import BY_PLURAL, BY_TYPE, V2Resource

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA: Final = Schema("metamanager", (
    """CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY,
        type TEXT,
        value TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS meta_type ON meta (type)",
    """CREATE TABLE IF NOT EXISTS meta_v2 (
        key TEXT PRIMARY KEY,
        group_version_resource TEXT,
        namespace TEXT,
        name TEXT,
        resource_version INTEGER,
        value TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS meta_v2_gvr_ns ON meta_v2 (group_version_resource, namespace)",
    """CREATE TABLE IF NOT EXISTS meta_revision (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        revision INTEGER NOT NULL
    )""",
    "INSERT OR IGNORE INTO meta_revision (id, revision) VALUES (1, 0)",
))
"""MetaManager's tables (``meta`` and ``meta_v2`` as upstream; ``meta_revision`` ours)."""


class DeleteOutcome(enum.Enum):
    """What :meth:`MetaStore.delete` did."""

    DELETED = "deleted"
    MISSING = "missing"
    UID_MISMATCH = "uid-mismatch"
    """The stored pod has another UID: nothing was removed."""


@dataclass(slots=True)
class _Op:
    """What one write does on the writer thread: its revision (taken on the first change)
    and its changes; both are dropped if the write fails."""

    base: int
    revision: int = 0
    changes: list[Change] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.revision = self.base

    def bump(self) -> int:
        if self.revision == self.base:
            self.revision = self.base + 1
        return self.revision


_WriteFn = Callable[[sqlite3.Connection, _Op], Any]


class MetaStore(DAO):
    """MetaManager's DAO. Open with :meth:`open`; one per database."""

    def __init__(self, db: Database, feed: ChangeFeed, *, owns_db: bool = False) -> None:
        # Use MetaStore.open(); the constructor only sets fields.
        super().__init__(db, owns_db=owns_db)
        self.feed = feed

    @classmethod
    async def open(cls, db: Database | str | Path, *, feed_size: int = DEFAULT_FEED_SIZE,
                   **options: Any) -> MetaStore:
        """MetaManager's tables on ``db`` (created if missing).

        ``db`` is the process's :class:`Database`; a path opens a database for this store
        alone (closed with it), with ``options`` as :meth:`Database.open` takes them.

        >>> store = await MetaStore.open(db)    # doctest: +SKIP
        """
        database, owns, revision = await open_for(db, SCHEMA, load=_stored_revision,
                                                  **options)
        assert revision is not None
        log.info("meta store on %s at revision %d", database.path, revision)
        return cls(database, ChangeFeed(revision, feed_size), owns_db=owns)

    @property
    def batches(self) -> int:
        """Transactions the database has committed (writes / batches = batching)."""
        return self.db.batches

    @property
    def revision(self) -> int:
        """The latest committed and published revision."""
        return self.feed.revision

    # -- writes ------------------------------------------------------------------------------

    async def upsert(self, key: str, value: Any, *, resource_type: str | None = None) -> int:
        """Insert or replace the ``meta`` row ``key`` (an edge resource string) and, for a
        served type whose value is an object, its ``meta_v2`` row. Returns the row's revision;
        an identical value is not rewritten (no new revision, no change published).

        ``value``: a ``str`` is stored as it is (it must be JSON text, e.g. a patch), anything
        else as its JSON.

        >>> await store.upsert("default/configmap/app", configmap)    # doctest: +SKIP
        7
        """
        namespace, rtype, name = _split_key(key, resource_type)
        text = _to_json_text(value)
        obj = value if not isinstance(value, str) else None
        served = BY_TYPE.get(rtype) if isinstance(obj, dict) else None

        def write(conn: sqlite3.Connection, op: _Op) -> int:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            if row is not None and row[0] == text:
                if served is None:
                    return op.base
                unchanged = _row_revision(conn, served, namespace, name)
                if unchanged is not None:
                    return unchanged
            conn.execute(
                "INSERT INTO meta (key, type, value) VALUES (?, ?, ?) ON CONFLICT (key) "
                "DO UPDATE SET type = excluded.type, value = excluded.value",
                (key, rtype, text))
            revision = op.bump()
            if served is not None:
                assert isinstance(obj, dict)
                shown, previous = _v2_put(conn, served, namespace, name, obj, revision)
                kind = ChangeType.ADDED if previous is None else ChangeType.MODIFIED
                op.changes.append(Change(revision, kind, key, rtype, namespace, name, shown,
                                         previous))
            else:
                kind = ChangeType.ADDED if row is None else ChangeType.MODIFIED
                op.changes.append(Change(revision, kind, key, rtype, namespace, name, value))
            return revision

        result: int = await self._write(write)
        return result

    async def save_pod_patch(self, key: str, patch: str, *, uid: str = "",
                             status: dict[str, Any] | None = None) -> int:
        """Store a pod status patch under ``<ns>/podpatch/<name>`` and, when the stored pod
        exists (and has ``uid``, if given), show ``status`` in the pod MetaServer serves.

        The status is merged key by key (each top-level status field in the patch replaces
        the stored one); strategic-merge directives (``$...`` keys) are ignored.

        >>> await store.save_pod_patch("default/podpatch/web", text, uid=uid,
        ...                            status={"phase": "Running"})    # doctest: +SKIP
        """
        namespace, rtype, name = _split_key(key, ResourceType.POD_PATCH)
        if rtype != ResourceType.POD_PATCH:
            raise StoreError(f"{key!r} is not a podpatch resource")
        text = _to_json_text(patch)
        pod_type = BY_TYPE[ResourceType.POD]
        pod_key = build_edge(namespace, ResourceType.POD, name)
        fields = {k: _without_directives(v) for k, v in (status or {}).items()
                  if not k.startswith("$")}

        def write(conn: sqlite3.Connection, op: _Op) -> int:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            if row is None or row[0] != text:
                conn.execute(
                    "INSERT INTO meta (key, type, value) VALUES (?, ?, ?) ON CONFLICT (key) "
                    "DO UPDATE SET type = excluded.type, value = excluded.value",
                    (key, rtype, text))
                op.changes.append(Change(
                    op.bump(), ChangeType.ADDED if row is None else ChangeType.MODIFIED,
                    key, rtype, namespace, name, patch))
            if not fields:
                return op.revision
            v2_key = pod_type.v2_key(namespace, name)
            found = conn.execute("SELECT value FROM meta_v2 WHERE key = ?", (v2_key,)).fetchone()
            pod = _loads_or_none(found[0]) if found else None
            if not isinstance(pod, dict):
                return op.revision
            if uid and uid_of(pod) not in ("", uid):
                return op.revision
            stored_status = pod.get("status")
            old_status = stored_status if isinstance(stored_status, dict) else {}
            new_status = {**old_status, **fields}
            if new_status == old_status:
                return op.revision
            revision = op.bump()
            shown, _ = _v2_put(conn, pod_type, namespace, name, {**pod, "status": new_status},
                               revision)
            op.changes.append(Change(revision, ChangeType.MODIFIED, pod_key, ResourceType.POD,
                                     namespace, name, shown, pod))
            return revision

        result: int = await self._write(write)
        return result

    async def delete(self, key: str, *, uid: str | None = None,
                     also: tuple[str, ...] = ()) -> DeleteOutcome:
        """Delete the row ``key`` (and its ``meta_v2`` row), then the rows in ``also``.

        With ``uid``, nothing is removed when the stored object has another UID (a late
        delete of an earlier pod of the same name must not remove its successor).

        >>> await store.delete("default/pod/web", uid=uid,
        ...                    also=("default/podpatch/web",))    # doctest: +SKIP
        <DeleteOutcome.DELETED: 'deleted'>
        """
        parts = [_split_key(k, None) for k in (key, *also)]

        def write(conn: sqlite3.Connection, op: _Op) -> DeleteOutcome:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            if uid and row is not None:
                stored = _loads_or_none(row[0])
                if isinstance(stored, dict) and uid_of(stored) not in ("", uid):
                    return DeleteOutcome.UID_MISMATCH
            removed = False
            for k, (namespace, rtype, name) in zip((key, *also), parts, strict=True):
                removed |= _delete_row(conn, op, k, namespace, rtype, name)
            return DeleteOutcome.DELETED if removed else DeleteOutcome.MISSING

        result: DeleteOutcome = await self._write(write)
        return result

    # -- reads -------------------------------------------------------------------------------

    async def get(self, key: str) -> Any | None:
        """The value stored under ``key`` (parsed JSON), or None.

        >>> await store.get("null/node/edge-1")    # doctest: +SKIP
        {'metadata': {'name': 'edge-1', ...}, ...}
        """

        def read(conn: sqlite3.Connection) -> Any | None:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            return None if row is None else _loads_lenient(row[0])

        return await self._read(read)

    async def list_by_type(self, resource_type: str,
                           namespace: str | None = None) -> list[Any]:
        """Values of every ``meta`` row of ``resource_type`` (in one namespace if given; the
        ``null`` namespace or None means all), ordered by key.

        >>> [p["metadata"]["name"] for p in await store.list_by_type("pod")]    # doctest: +SKIP
        ['nginx', 'web']
        """
        if namespace and namespace != NULL_NAMESPACE:
            prefix = build_edge(namespace, resource_type) + RESOURCE_SEP
            sql = "SELECT value FROM meta WHERE key >= ? AND key < ? AND type = ? ORDER BY key"
            args: tuple[str, ...] = (prefix, _prefix_end(prefix), resource_type)
        else:
            sql, args = "SELECT value FROM meta WHERE type = ? ORDER BY key", (resource_type,)

        def read(conn: sqlite3.Connection) -> list[Any]:
            return [_loads_lenient(v) for (v,) in conn.execute(sql, args)]

        return await self._read(read)

    async def get_object(self, plural: str, namespace: str, name: str) -> tuple[Any | None, int]:
        """A served object (``meta_v2``) and the store revision it was read at.

        >>> obj, rev = await store.get_object("pods", "default", "web")    # doctest: +SKIP
        """
        resource = BY_PLURAL[plural]
        v2_key = resource.v2_key(namespace, name)

        def read(conn: sqlite3.Connection) -> tuple[Any | None, int]:
            with snapshot(conn):
                row = conn.execute("SELECT value FROM meta_v2 WHERE key = ?",
                                   (v2_key,)).fetchone()
                revision = _stored_revision(conn)
            return (None if row is None else _loads_lenient(row[0])), revision

        return await self._read(read)

    async def list_objects(self, plural: str,
                           namespace: str | None = None) -> tuple[list[Any], int]:
        """Served objects of ``plural`` (one namespace, or all when None) and the revision of
        that snapshot, ordered by namespace and name.

        >>> pods, rev = await store.list_objects("pods")    # doctest: +SKIP
        """
        resource = BY_PLURAL[plural]
        if namespace:
            sql = ("SELECT value FROM meta_v2 WHERE group_version_resource = ? "
                   "AND namespace = ? ORDER BY namespace, name")
            args: tuple[str, ...] = (resource.gvr, namespace)
        else:
            sql = ("SELECT value FROM meta_v2 WHERE group_version_resource = ? "
                   "ORDER BY namespace, name")
            args = (resource.gvr,)

        def read(conn: sqlite3.Connection) -> tuple[list[Any], int]:
            with snapshot(conn):
                items = [_loads_lenient(v) for (v,) in conn.execute(sql, args)]
                revision = _stored_revision(conn)
            return items, revision

        return await self._read(read)

    # -- machinery ---------------------------------------------------------------------------

    # -- machinery ---------------------------------------------------------------------------

    async def _write(self, fn: _WriteFn) -> Any:
        """Run ``fn(conn, op)`` in the next batch; its revision and changes are stored and
        published with the commit."""
        self._check_open()

        def run(conn: sqlite3.Connection) -> tuple[Any, _Op]:
            op = _Op(_stored_revision(conn))
            result = fn(conn, op)
            if op.revision != op.base:
                conn.execute("UPDATE meta_revision SET revision = ? WHERE id = 1",
                             (op.revision,))
            return result, op

        def publish(outcome: tuple[Any, _Op]) -> None:
            # Before the writer resumes: it finds its change in the feed already.
            _, op = outcome
            self.feed.publish(op.changes, op.revision)

        result, _ = await self.db.write(run, on_commit=publish)
        return result

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        self._check_open()
        return await self.db.read(fn)


# -- helpers (writer and reader threads) ----------------------------------------------------


def _stored_revision(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT revision FROM meta_revision WHERE id = 1").fetchone()
    return int(row[0]) if row else 0


def _row_revision(conn: sqlite3.Connection, served: V2Resource, namespace: str,
                  name: str) -> int | None:
    row = conn.execute("SELECT resource_version FROM meta_v2 WHERE key = ?",
                       (served.v2_key(namespace, name),)).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def _v2_put(conn: sqlite3.Connection, served: V2Resource, namespace: str, name: str,
            obj: dict[str, Any], revision: int) -> tuple[dict[str, Any], Any | None]:
    """Write the served form of ``obj``; returns it and the previous served object."""
    v2_key = served.v2_key(namespace, name)
    row = conn.execute("SELECT value FROM meta_v2 WHERE key = ?", (v2_key,)).fetchone()
    shown = _served_object(served, obj, revision)
    conn.execute(
        "INSERT OR REPLACE INTO meta_v2 (key, group_version_resource, namespace, name, "
        "resource_version, value) VALUES (?, ?, ?, ?, ?, ?)",
        (v2_key, served.gvr, namespace if served.namespaced else NULL_NAMESPACE, name,
         revision, orjson.dumps(shown).decode()))
    return shown, (None if row is None else _loads_or_none(row[0]))


def _delete_row(conn: sqlite3.Connection, op: _Op, key: str, namespace: str, rtype: str,
                name: str) -> bool:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    served = BY_TYPE.get(rtype)
    v2_row = None
    if served is not None:
        v2_key = served.v2_key(namespace, name)
        v2_row = conn.execute("SELECT value FROM meta_v2 WHERE key = ?", (v2_key,)).fetchone()
        if v2_row is not None:
            conn.execute("DELETE FROM meta_v2 WHERE key = ?", (v2_key,))
    if row is not None:
        conn.execute("DELETE FROM meta WHERE key = ?", (key,))
    if row is None and v2_row is None:
        return False
    revision = op.bump()
    if served is not None and v2_row is not None:
        last = _loads_or_none(v2_row[0])
        shown = (_served_object(served, last, revision) if isinstance(last, dict) else last)
        op.changes.append(Change(revision, ChangeType.DELETED, key, rtype, namespace, name,
                                 shown, last))
    else:
        op.changes.append(Change(revision, ChangeType.DELETED, key, rtype, namespace, name,
                                 _loads_lenient(row[0]) if row else None))
    return True


def _served_object(served: V2Resource, obj: dict[str, Any], revision: int) -> dict[str, Any]:
    """``obj`` as MetaServer serves it: kind, apiVersion, and our revision as its RV."""
    metadata = obj.get("metadata")
    metadata = dict(metadata) if isinstance(metadata, dict) else {}
    metadata["resourceVersion"] = str(revision)
    return {**obj, "kind": served.kind, "apiVersion": served.api_version, "metadata": metadata}


def _split_key(key: str, resource_type: str | None) -> tuple[str, str, str]:
    try:
        res = parse_edge(key)
    except DecodeError as exc:
        raise StoreError(f"store key {key!r}: {exc}") from None
    if res.is_list:
        raise StoreError(f"store key {key!r} is not <namespace>/<type>/<name>")
    return res.namespace, resource_type or res.resource_type, res.name


def _to_json_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError as exc:
        raise StoreError(f"value cannot be stored as JSON: {exc}") from None


def _loads_or_none(text: str | bytes | None) -> Any | None:
    """Parsed JSON, or None when a row is not JSON."""
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


# Parsed JSON, or the text itself when a row (written by someone else) is not JSON.
_loads_lenient = maybe_json


def _prefix_end(prefix: str) -> str:
    """The smallest string greater than every string starting with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)



def _without_directives(value: Any) -> Any:
    """A list as a strategic-merge patch may send it, minus ``{"$patch": ...}`` elements."""
    if isinstance(value, list):
        return [v for v in value if not (isinstance(v, dict) and "$patch" in v)]
    return value
