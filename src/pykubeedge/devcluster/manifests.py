"""pykubeedge's CRDs (shipped in ``devcluster/crds/``) and how to apply YAML manifests.

    async with cluster.client() as kube:
        await install_crds(kube)           # create or update, then wait until Established
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from pykubeedge.core.errors import Conflict, ControlPlaneError, NotFound
from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.resources import CRDS, Resource, for_object

CRD_DIR = Path(__file__).with_name("crds")
ESTABLISHED_TIMEOUT_S = 60.0


def crd_documents(files: Sequence[Path] | None = None) -> list[dict[str, Any]]:
    """The CRDs in ``files`` (default: pykubeedge's own)."""
    docs: list[dict[str, Any]] = []
    for path in sorted(CRD_DIR.glob("*.yaml")) if files is None else files:
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


async def apply(kube: KubeClient, obj: dict[str, Any], res: Resource | None = None) -> Any:
    """Create ``obj``, or replace it (keeping its resourceVersion) if it exists."""
    res = res or for_object(obj)
    meta = obj["metadata"]
    try:
        return await kube.create(res, obj)
    except Conflict:
        current = await kube.get(res, meta["name"], namespace=meta.get("namespace"))
        obj = {**obj, "metadata": {**meta,
                                   "resourceVersion": current["metadata"]["resourceVersion"]}}
        return await kube.replace(res, obj)


async def install_crds(kube: KubeClient, timeout: float = ESTABLISHED_TIMEOUT_S, *,
                       files: Sequence[Path] | None = None) -> list[str]:
    """Apply the CRDs in ``files`` (default: pykubeedge's own) and wait until Established."""
    docs = crd_documents(files)
    if not docs:
        raise ControlPlaneError(f"no CRD manifests found in {files or CRD_DIR}")
    for doc in docs:
        await apply(kube, doc, CRDS)
    names = [d["metadata"]["name"] for d in docs]
    deadline = time.monotonic() + timeout
    for name in names:
        while not await _established(kube, name):
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"CRD {name} not Established after {timeout:.0f}s")
            await asyncio.sleep(0.1)
    return names


async def _established(kube: KubeClient, name: str) -> bool:
    try:
        crd = await kube.get(CRDS, name)
    except NotFound:
        return False
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)
