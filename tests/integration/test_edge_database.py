"""edgecore.db across a crash: a real process writes through MetaManager's DAO, EdgeHub's
outbox, DeviceTwin's and EventBus's DAOs and a further module's tables at once, on one writer
connection; it is killed (SIGKILL); every write it had been told was committed is there when
the database is opened again."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

from pykubeedge.edge.dbm import Database
from pykubeedge.edge.devicetwin.dao import DeviceDAO
from pykubeedge.edge.edgehub.outbox import Outbox
from pykubeedge.edge.eventbus.dao import SubTopicsDAO
from pykubeedge.edge.metamanager.dao import MetaStore

pytestmark = pytest.mark.integration

ACKS_BEFORE_KILL = 300  # per DAO
TIMEOUT = 60.0

WRITER = textwrap.dedent("""
    import asyncio, sqlite3, sys
    from pykubeedge.core.message import new_message
    from pykubeedge.core.twin import MsgTwin, TwinValue, TwinVersion
    from pykubeedge.edge.dbm import Database, Schema
    from pykubeedge.edge.devicetwin.dao import DeviceDAO, DeviceRecord
    from pykubeedge.edge.edgehub.outbox import Outbox
    from pykubeedge.edge.eventbus.dao import SubTopicsDAO
    from pykubeedge.edge.metamanager.dao import MetaStore

    NOTES = Schema("notes", (
        "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT)",))

    def ack(kind, i):
        sys.stdout.write(f"{kind} {i}\\n")
        sys.stdout.flush()

    async def main(path):
        db = await Database.open(path)
        store = await MetaStore.open(db)
        outbox = await Outbox.open(db)
        devices = await DeviceDAO.open(db)
        topics = await SubTopicsDAO.open(db)
        await db.register(NOTES)

        async def meta(worker):
            for i in range(worker, 10**9, 4):
                cm = {"metadata": {"name": f"c{i}", "namespace": "default", "uid": f"u{i}"},
                      "data": {"i": str(i)}}
                await store.upsert(f"default/configmap/c{i}", cm)
                ack("meta", i)

        async def hub(worker):
            for i in range(worker, 10**9, 4):
                msg = new_message(source="metamanager", group="resource", operation="insert",
                                  resource=f"default/event/e{i}", content={"i": i})
                assert await outbox.put(msg)
                ack("outbox", i)

        async def notes(worker):
            for i in range(worker, 10**9, 4):
                await db.write(lambda conn, i=i: conn.execute(
                    "INSERT INTO notes (id, text) VALUES (?, ?)", (i, f"n{i}")))
                ack("notes", i)

        async def twin(worker):
            for i in range(worker, 10**9, 4):
                device = DeviceRecord(f"default/d{i}", f"d{i}")
                reported = MsgTwin(actual=TwinValue(str(i), 1), optional=True, type="int",
                                   actual_version=TwinVersion(0, 1))
                await devices.run([devices.add_device(device),
                                   devices.put_twins(device.id, {"t": reported})])
                ack("twin", i)

        async def topic(worker):
            for i in range(worker, 10**9, 4):
                await topics.add(f"apps/user/t{i}")
                ack("topics", i)

        print("ready", flush=True)
        await asyncio.gather(*(f(w) for f in (meta, hub, notes, twin, topic)
                               for w in range(4)))

    asyncio.run(main(sys.argv[1]))
""")


def db_descriptors(pid: int, path: Path) -> int:
    """Descriptors ``pid`` holds on the database file itself (not its -wal/-shm)."""
    target = str(path.resolve())
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}") == target
        except OSError:
            continue
    return count


async def test_nothing_committed_is_lost_when_edgecore_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "edgecore.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, str(path), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    acked: dict[str, set[int]] = {kind: set() for kind in
                                  ("meta", "outbox", "notes", "twin", "topics")}
    killed = False
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(TIMEOUT):
            assert (await proc.stdout.readline()).strip() == b"ready"
            while min(len(v) for v in acked.values()) < ACKS_BEFORE_KILL:
                line = await proc.stdout.readline()
                assert line, (await proc.stderr.read()).decode()  # type: ignore[union-attr]
                kind, i = line.decode().split()
                acked[kind].add(int(i))
        # Five modules writing at once, through one writer and one reader connection.
        assert db_descriptors(proc.pid, path) == 2
        proc.send_signal(signal.SIGKILL)
        killed = True
        # Lines already written before the kill are acknowledgements too.
        rest = await proc.stdout.read()
        for line in rest.decode().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] in acked:
                acked[parts[0]].add(int(parts[1]))
    finally:
        # Not kill() again once killed: Popen's kill polls first, and may reap the child
        # before asyncio's watcher does (then the return code reads 255).
        if not killed and proc.returncode is None:
            proc.kill()
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL

    async with await Database.open(path) as db:
        store = await MetaStore.open(db)
        outbox = await Outbox.open(db)
        stored = {int(cm["data"]["i"]) for cm in await store.list_by_type("configmap")}
        kept = {m.content["i"] for _, m in await outbox.peek(1_000_000) if m is not None}
        notes = {i for (i,) in await db.read(
            lambda conn: conn.execute("SELECT id FROM notes").fetchall())}
        loaded, _ = await (await DeviceDAO.open(db)).load()
        twins = {int(t.actual.value) for dev in loaded.values()
                 if (t := dev.twins.get("t")) and t.actual and t.actual.value}
        topics = {int(t.rsplit("/t", 1)[1]) for t in await (await SubTopicsDAO.open(db)).all()}
    assert acked["meta"] <= stored, f"lost: {sorted(acked['meta'] - stored)[:10]}"
    assert acked["outbox"] <= kept, f"lost: {sorted(acked['outbox'] - kept)[:10]}"
    assert acked["notes"] <= notes, f"lost: {sorted(acked['notes'] - notes)[:10]}"
    assert acked["twin"] <= twins, f"lost: {sorted(acked['twin'] - twins)[:10]}"
    assert acked["topics"] <= topics, f"lost: {sorted(acked['topics'] - topics)[:10]}"
    assert set(loaded) == {f"default/d{i}" for i in twins}  # device and twin rows together
    assert len(outbox) == len(kept)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
