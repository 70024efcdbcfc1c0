"""DeviceTwin's tables in edgecore.db: upstream's ``device``, ``device_attr`` and ``device_twin``
(columns as ``edge/pkg/metamanager/dao/models/device.go``), plus ``device_cloud_pending``
(PROJECT): what the cloud has not confirmed yet, so reports made offline survive a restart.

It is a DAO on the process's :class:`~pykubeedge.edge.dbm.Database` (``docs/edge-database.md``),
so its writes share the one writer thread with every other module's. Writes are built as small
functions of the connection (``Op``) so DeviceTwin can commit many of them as one write (all of
them or none)::

    dao = await DeviceDAO.open(db)
    devices, pending = await dao.load()
    await dao.run([dao.add_device(record), dao.put_twins(record.id, {"temp": twin})])
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from pykubeedge.core.twin import TYPE_STRING, MsgTwin, TwinValue, TwinVersion
from pykubeedge.edge.dbm import DAO, Database, Schema, open_for

Op = Callable[[sqlite3.Connection], object]


SCHEMA: Final = Schema("devicetwin", (
    """CREATE TABLE IF NOT EXISTS device (
        id TEXT PRIMARY KEY,
        name TEXT,
        description TEXT,
        state TEXT,
        last_online TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS device_attr (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        deviceid TEXT,
        name TEXT,
        description TEXT,
        value TEXT,
        optional NUMERIC,
        attr_type TEXT,
        metadata TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS device_attr_deviceid ON device_attr (deviceid)",
    """CREATE TABLE IF NOT EXISTS device_twin (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        deviceid TEXT,
        name TEXT,
        description TEXT,
        expected TEXT,
        actual TEXT,
        expected_meta TEXT,
        actual_meta TEXT,
        expected_version TEXT,
        actual_version TEXT,
        optional NUMERIC,
        attr_type TEXT,
        metadata TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS device_twin_deviceid ON device_twin (deviceid, name)",
    """CREATE TABLE IF NOT EXISTS device_cloud_pending (
        deviceid TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        entry TEXT,
        PRIMARY KEY (deviceid, kind, name)
    )""",
))

PENDING_TWIN = "twin"
PENDING_STATE = "state"


@dataclass
class DeviceRecord:
    """A member device as DeviceTwin holds it (upstream ``dttype.Device``)."""

    id: str
    name: str = ""
    description: str = ""
    state: str = ""
    last_online: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    twins: dict[str, MsgTwin] = field(default_factory=dict)


@dataclass(frozen=True)
class PendingRow:
    device_id: str
    kind: str
    name: str
    entry: Any  # decoded JSON (a twin with versions, null for a deleted twin, or a state)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def twin_row(twin: MsgTwin) -> tuple[Any, ...]:
    """The device_twin columns expected..metadata of ``twin``."""
    def value(v: TwinValue | None) -> tuple[str | None, str | None]:
        if v is None or v.value is None:
            return (None, None) if v is not None else ("", "")
        meta = "" if v.timestamp is None and not v.error else _json(v.to_json()["metadata"])
        return v.value, meta

    expected, expected_meta = value(twin.expected)
    actual, actual_meta = value(twin.actual)
    return (expected, actual, expected_meta, actual_meta,
            _json(twin.expected_version.to_json()) if twin.expected_version else "",
            _json(twin.actual_version.to_json()) if twin.actual_version else "",
            1 if twin.optional is not False else 0,
            TYPE_STRING if twin.type is None else twin.type, twin.meta_column)


def twin_from_row(row: tuple[Any, ...]) -> MsgTwin:
    """Upstream's ``DeviceTwinToMsgTwin``: a value only where its column is non-empty."""
    (expected, actual, expected_meta, actual_meta, expected_version, actual_version,
     optional, attr_type, metadata) = row

    def value(text: str | None, meta: str | None) -> TwinValue | None:
        parsed = orjson.loads(meta) if meta else None
        error = parsed.get("error") if isinstance(parsed, dict) else None
        error = error if isinstance(error, str) else ""
        if not text and not error:
            return None
        ts: int | None = None
        if meta:
            ts = int(parsed.get("timestamp") or 0) if isinstance(parsed, dict) else 0
        return TwinValue(text or "", ts, error)

    def version(text: str | None) -> TwinVersion | None:
        if not text:
            return None
        parsed = orjson.loads(text)
        return TwinVersion(int(parsed.get("cloud", 0)), int(parsed.get("edge", 0)))

    return MsgTwin(expected=value(expected, expected_meta), actual=value(actual, actual_meta),
                   optional=bool(optional), type=attr_type or "",
                   expected_version=version(expected_version),
                   actual_version=version(actual_version), meta_column=metadata or "")


class DeviceDAO(DAO):
    """DeviceTwin's DAO. Open with :meth:`open`."""

    @classmethod
    async def open(cls, db: Database | str | Path, **options: Any) -> DeviceDAO:
        """The DAO on ``db`` (the process's :class:`Database`; a path opens one for the DAO
        alone, closed with it), its tables registered.

        >>> dao = await DeviceDAO.open(database)                    # doctest: +SKIP
        """
        database, owns, _ = await open_for(db, SCHEMA, **options)
        return cls(database, owns_db=owns)

    async def run(self, ops: Iterable[Op]) -> None:
        """Run ``ops`` as one write: all of them or none (StoreError when it fails).

        >>> await dao.run([dao.add_device(record), dao.put_twins(record.id, twins)])
        ...                                                         # doctest: +SKIP
        """
        self._check_open()
        batch = list(ops)

        def apply(conn: sqlite3.Connection) -> None:
            for op in batch:
                op(conn)

        await self.db.write(apply)

    async def load(self, device_ids: Iterable[str] | None = None
                   ) -> tuple[dict[str, DeviceRecord], list[PendingRow]]:
        """Every device (or those of ``device_ids``) with attributes and twins, and what the
        cloud has not confirmed (upstream ``SyncSqlite``)."""
        self._check_open()
        wanted = None if device_ids is None else sorted(set(device_ids))
        return await self.db.read(lambda conn: _load(conn, wanted))

    # -- writes -------------------------------------------------------------------------------

    @staticmethod
    def add_device(dev: DeviceRecord) -> Op:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO device (id, name, description, state, "
                         "last_online) VALUES (?, ?, ?, ?, ?)",
                         (dev.id, dev.name, dev.description, dev.state, dev.last_online))
        return op

    @staticmethod
    def delete_device(device_id: str) -> Op:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM device WHERE id = ?", (device_id,))
            for table in ("device_attr", "device_twin", "device_cloud_pending"):
                conn.execute(f"DELETE FROM {table} WHERE deviceid = ?", (device_id,))
        return op

    @staticmethod
    def update_state(device_id: str, state: str, last_online: str) -> Op:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE device SET state = ?, last_online = ? WHERE id = ?",
                         (state, last_online, device_id))
        return op

    @staticmethod
    def put_twins(device_id: str, twins: Mapping[str, MsgTwin]) -> Op:
        """Write each twin's row, inserting those that have none yet."""
        rows = [(name, twin_row(twin)) for name, twin in twins.items()]

        def op(conn: sqlite3.Connection) -> None:
            for name, cols in rows:
                cur = conn.execute(
                    "UPDATE device_twin SET expected = ?, actual = ?, expected_meta = ?, "
                    "actual_meta = ?, expected_version = ?, actual_version = ?, optional = ?, "
                    "attr_type = ?, metadata = ? WHERE deviceid = ? AND name = ?",
                    (*cols, device_id, name))
                if cur.rowcount == 0:
                    conn.execute(
                        "INSERT INTO device_twin (deviceid, name, description, expected, "
                        "actual, expected_meta, actual_meta, expected_version, actual_version, "
                        "optional, attr_type, metadata) "
                        "VALUES (?, ?, '', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (device_id, name, *cols))
        return op

    @staticmethod
    def put_pending(rows: Iterable[PendingRow]) -> Op:
        values = [(r.device_id, r.kind, r.name, _json(r.entry)) for r in rows]

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany("INSERT OR REPLACE INTO device_cloud_pending (deviceid, kind, "
                             "name, entry) VALUES (?, ?, ?, ?)", values)
        return op

    @staticmethod
    def drop_pending(keys: Iterable[tuple[str, str, str]]) -> Op:
        values = list(keys)

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM device_cloud_pending WHERE deviceid = ? AND kind = ? "
                             "AND name = ?", values)
        return op


def _load(conn: sqlite3.Connection, wanted: list[str] | None
          ) -> tuple[dict[str, DeviceRecord], list[PendingRow]]:
    where, args = "", tuple[str, ...]()
    if wanted is not None:
        marks = ",".join("?" * len(wanted))
        where, args = f" WHERE {{col}} IN ({marks})", tuple(wanted)
    devices: dict[str, DeviceRecord] = {}
    for row in conn.execute("SELECT id, name, description, state, last_online FROM device"
                            + where.format(col="id"), args):
        devices[row[0]] = DeviceRecord(row[0], row[1] or "", row[2] or "", row[3] or "",
                                       row[4] or "")
    for dev_id, name, value, optional, attr_type in conn.execute(
            "SELECT deviceid, name, value, optional, attr_type FROM device_attr"
            + where.format(col="deviceid"), args):
        dev = devices.get(dev_id)
        if dev is not None:
            dev.attributes[name] = {"value": value or "", "optional": bool(optional),
                                    "metadata": {"type": attr_type} if attr_type else {}}
    for dev_id, name, *cols in conn.execute(
            "SELECT deviceid, name, expected, actual, expected_meta, actual_meta, "
            "expected_version, actual_version, optional, attr_type, metadata FROM device_twin"
            + where.format(col="deviceid") + " ORDER BY id", args):
        dev = devices.get(dev_id)
        if dev is not None:
            dev.twins[name] = twin_from_row(tuple(cols))
    pending = [PendingRow(d, k, n, orjson.loads(e) if e else None) for d, k, n, e in
               conn.execute("SELECT deviceid, kind, name, entry FROM device_cloud_pending"
                            + where.format(col="deviceid") + " ORDER BY rowid", args)
               if d in devices]
    return devices, pending


async def load_device_objects(dao: DeviceDAO) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The Device and DeviceModel objects MetaManager keeps in its ``meta`` table (for DMI after
    a restart; upstream's dmiworker reads them the same way). None when there is no table."""

    def read(conn: sqlite3.Connection) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        devices: list[dict[str, Any]] = []
        models: list[dict[str, Any]] = []
        try:
            rows = conn.execute("SELECT type, value FROM meta WHERE type IN "
                                "('device', 'devicemodel')").fetchall()
        except sqlite3.OperationalError:
            return devices, models
        for kind, value in rows:
            try:
                obj = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                (devices if kind == "device" else models).append(obj)
        return devices, models

    return await dao.db.read(read)
