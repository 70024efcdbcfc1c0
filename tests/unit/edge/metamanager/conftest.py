"""Fixtures for MetaManager tests: a real store on a temporary SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pykubeedge.edge.metamanager.dao import MetaStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[MetaStore]:
    s = await MetaStore.open(tmp_path / "edgecore.db")
    try:
        yield s
    finally:
        await s.close()
