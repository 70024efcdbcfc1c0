"""Shared fixtures. Integration tests run against a real control plane, started once per
session (the binaries are built once per machine and cached; see README)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from pykubeedge.devcluster.cluster import DevCluster
from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.resources import NAMESPACES

logging.getLogger("pykubeedge").setLevel(logging.DEBUG)


@pytest.fixture(scope="session")
async def cluster() -> AsyncIterator[DevCluster]:
    async with DevCluster(tier="minimal") as c:
        yield c


@pytest.fixture(scope="session")
async def full_cluster() -> AsyncIterator[DevCluster]:
    async with DevCluster(tier="full") as c:
        yield c


@pytest.fixture
async def kube(cluster: DevCluster) -> AsyncIterator[KubeClient]:
    async with cluster.client() as k:
        yield k


@pytest.fixture
async def ns(kube: KubeClient) -> str:
    """A fresh namespace per test, so tests never see each other's objects."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    await kube.create(NAMESPACES, {"metadata": {"name": name}})
    return name


async def eventually(check: Callable[[], Awaitable[bool] | bool], *, timeout: float = 30.0,
                     interval: float = 0.05, what: str = "condition") -> None:
    """Poll ``check`` until it is true; bounded in time. Never a timed assertion on speed."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
            result = await result  # type: ignore[misc]
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(interval)
