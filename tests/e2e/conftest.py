"""End-to-end: the whole system as real processes (control plane, cloudcore, edgecore)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from pykubeedge.keadm.localup import LocalUp


@pytest.fixture(scope="session")
async def local(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalUp]:
    # Real containers (a private containerd) on a bridge of its own, apart from local-up's.
    async with LocalUp(tier="full", workdir=tmp_path_factory.mktemp("local-up"),
                       runtime="containerd", network="bridge", bridge="pkee2e1",
                       pod_subnet="10.254.79.0/24") as up:
        yield up


def edge_rows(db: Path, rtype: str) -> dict[str, dict[str, Any]]:
    """What the edge has stored, read straight from its SQLite file (read-only)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute("SELECT key, value FROM meta WHERE type = ?", (rtype,)).fetchall()
    finally:
        conn.close()
    return {key: orjson.loads(value) for key, value in rows}
