"""Edged's PLEG (kubelet's pod lifecycle event generator): every ``period`` the runtime is
listed once; a pod whose sandboxes or containers changed wakes its worker, and a sandbox no
pod owns (deleted while Edged was down) is removed, as kubelet's pod cleanup does::

    pleg = PLEG(state, pods, period=1.0)
    task_group.create_task(pleg.run())
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pykubeedge.edge.edged.podmanager import PodManager
from pykubeedge.edge.edged.runtime import ContainerRuntimeError, PodSandboxStatus
from pykubeedge.edge.edged.state import EdgedState

log = logging.getLogger(__name__)


class PLEG:
    def __init__(self, state: EdgedState, pods: PodManager, *, period: float) -> None:
        self.s = state
        self.pods = pods
        self.period = period
        self._seen: dict[str, tuple[Any, ...]] = {}
        self._swept = False

    async def run(self) -> None:
        """Relist every period until cancelled."""
        while True:
            await self.relist()
            await self.s.sleep(self.period)

    async def relist(self) -> None:
        """One relist: wake the workers whose pods changed in the runtime; remove sandboxes
        no pod owns (once the stored pods are loaded)."""
        try:
            sandboxes = await self.s.runtime.list_pods()
        except ContainerRuntimeError as exc:
            self.s.runtime_error = str(exc)
            return
        by_uid: dict[str, list[PodSandboxStatus]] = {}
        for sandbox in sandboxes:
            by_uid.setdefault(sandbox.uid, []).append(sandbox)
        seen: dict[str, tuple[Any, ...]] = {}
        for uid, group in by_uid.items():
            seen[uid] = _fingerprint(group)
            worker = self.pods.workers.get(uid)
            if worker is not None:
                if self._seen.get(uid) != seen[uid]:
                    worker.wake()
            elif self.pods.pods_loaded.is_set():
                await self._remove_orphan(uid, group)
        self._seen = seen
        if self.pods.pods_loaded.is_set() and not self._swept:
            self._swept = True
            await self._remove_orphan_dirs(set(by_uid))

    async def _remove_orphan(self, uid: str, sandboxes: list[PodSandboxStatus]) -> None:
        """A sandbox no pod owns (deleted while Edged was down): kubelet's pod cleanup."""
        for sandbox in sandboxes:
            log.info("edged: removing orphan sandbox %s of %s/%s (uid %s)", sandbox.id[:12],
                     sandbox.namespace, sandbox.name, uid)
            try:
                for container in sandbox.containers:
                    await self.s.runtime.stop_container(container.id, 0)
                await self.s.runtime.stop_pod_sandbox(sandbox.id)
                await self.s.runtime.remove_pod_sandbox(sandbox.id)
            except ContainerRuntimeError as exc:
                log.warning("edged: orphan sandbox %s not removed: %s", sandbox.id[:12], exc)
                return
        await asyncio.to_thread(self.s.volumes.remove, uid)

    async def _remove_orphan_dirs(self, live: set[str]) -> None:
        """Once, after the stored pods are loaded: volumes of pods that are neither known nor
        in the runtime (kubelet's ``cleanupOrphanedPodDirs``), tmpfs mounts included."""
        pods_dir = self.s.volumes.pods_dir
        if pods_dir is None or not pods_dir.is_dir():
            return
        known = live | set(self.pods.workers)
        for entry in await asyncio.to_thread(lambda: list(pods_dir.iterdir())):
            if entry.name not in known:
                log.info("edged: removing the volumes of orphan pod %s", entry.name)
                await asyncio.to_thread(self.s.volumes.remove, entry.name)


def _fingerprint(sandboxes: list[PodSandboxStatus]) -> tuple[Any, ...]:
    return tuple(
        sorted(
            (s.id, s.state, tuple(sorted((c.id, c.state, c.exit_code) for c in s.containers)))
            for s in sandboxes
        )
    )
