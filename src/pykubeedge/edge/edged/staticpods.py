"""Static pods (kubelet's file source and mirror client): pods from the files of
``staticPodPath`` (edged's default ``/etc/kubeedge/manifests``), re-read every
``fileCheckFrequency`` (20 s), run by Edged without the API server, and shown there as
**mirror pods** created and deleted through MetaManager as upstream edged does (``<ns>/pod/<name>``
``insert`` with the Pod, ``delete`` with DeleteOptions)::

    source = StaticPodSource(Path("/etc/kubeedge/manifests"), node_name="edge-1")
    pods = await asyncio.to_thread(source.scan)      # {uid: pod}
    task_group.create_task(StaticPods(state, pod_manager, node_status, source).run())
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import hashlib
import logging
from pathlib import Path
from typing import Any, Final

import orjson
import yaml

from pykubeedge.core.constants import Operation, ResourceType
from pykubeedge.core.objects import name_of, namespace_of, uid_of
from pykubeedge.core.resource import build_edge
from pykubeedge.edge.edged.metaclient import MetaRequestError, object_resp
from pykubeedge.edge.edged.nodestatus import NodeStatus
from pykubeedge.edge.edged.podmanager import CONFIG_MIRROR, PodManager
from pykubeedge.edge.edged.state import EdgedState

log = logging.getLogger(__name__)

DEFAULT_STATIC_POD_PATH: Final = "/etc/kubeedge/manifests"
FILE_CHECK_FREQUENCY: Final = 20.0
MAX_FILE_BYTES: Final = 10 * 1024 * 1024
CONFIG_HASH: Final = "kubernetes.io/config.hash"
CONFIG_SOURCE: Final = "kubernetes.io/config.source"
CONFIG_SEEN: Final = "kubernetes.io/config.seen"
MAX_STATIC_PODS: Final = 256


class StaticPodSource:
    """Reads the manifest directory (top level, no dot files, one Pod per file)."""

    def __init__(self, path: Path, *, node_name: str) -> None:
        self.path = path
        self.node_name = node_name
        self._seen: dict[str, str] = {}

    def scan(self) -> dict[str, dict[str, Any]]:
        """Every valid static pod now, by UID (blocking: disk). A bad file is logged and
        skipped, never fatal."""
        pods: dict[str, dict[str, Any]] = {}
        try:
            entries = sorted(self.path.iterdir())
        except FileNotFoundError:
            return pods
        except OSError as exc:
            log.warning("static pods: cannot list %s: %s", self.path, exc)
            return pods
        for entry in entries:
            if entry.name.startswith(".") or len(pods) >= MAX_STATIC_PODS:
                continue
            if entry.is_dir():
                log.info("static pods: %s is a directory; skipped", entry)
                continue
            try:
                pod = self.read(entry)
            except (OSError, ValueError, yaml.YAMLError) as exc:
                log.warning("static pods: %s skipped: %s", entry, exc)
                continue
            pods[uid_of(pod)] = pod
        return pods

    def read(self, path: Path) -> dict[str, Any]:
        """One manifest file as the Pod Edged runs (kubelet's ``applyDefaults``)."""
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
        doc = yaml.safe_load(path.read_text())
        if not isinstance(doc, dict) or doc.get("kind", "Pod") != "Pod":
            raise ValueError("not a Pod")
        if not isinstance(doc.get("metadata"), dict) or not doc["metadata"].get("name"):
            raise ValueError("the pod has no metadata.name")
        if not isinstance(doc.get("spec"), dict):
            raise ValueError("the pod has no spec")
        return self.with_defaults(doc, str(path))

    def with_defaults(self, doc: dict[str, Any], source: str) -> dict[str, Any]:
        pod = copy.deepcopy(doc)
        meta = pod["metadata"]
        uid = uid_of(pod)
        if not uid:
            digest = hashlib.md5(usedforsecurity=False)
            digest.update(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))
            digest.update(f"host:{self.node_name}".encode())
            digest.update(f"file:{source}".encode())
            uid = digest.hexdigest()
        meta["uid"] = uid
        meta["name"] = f"{meta['name']}-{self.node_name.lower()}"
        meta["namespace"] = namespace_of(pod)
        annotations = meta.setdefault("annotations", {})
        annotations[CONFIG_HASH] = uid
        annotations[CONFIG_SOURCE] = "file"
        first = self._seen.setdefault(uid, datetime.datetime.now(datetime.UTC).strftime(
            "%Y-%m-%dT%H:%M:%S.%f000Z"))
        annotations[CONFIG_SEEN] = first
        spec = pod["spec"]
        spec["nodeName"] = self.node_name
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("enableServiceLinks", True)
        tolerations = spec.setdefault("tolerations", [])
        tolerations.append({"operator": "Exists", "effect": "NoExecute"})
        for key in ("initContainers", "containers"):
            for container in spec.get(key) or []:
                if isinstance(container, dict):
                    container.setdefault("terminationMessagePath", "/dev/termination-log")
                    container.setdefault("terminationMessagePolicy", "File")
        pod["apiVersion"], pod["kind"] = "v1", "Pod"
        pod["status"] = {"phase": "Pending"}
        return pod


def mirror_pod(pod: dict[str, Any], *, node_name: str, node_uid: str) -> dict[str, Any]:
    """The mirror pod of a static pod (kubelet's ``CreateMirrorPod``)."""
    mirror = copy.deepcopy(pod)
    meta = mirror["metadata"]
    meta.pop("uid", None)
    meta.pop("resourceVersion", None)
    meta["annotations"][CONFIG_MIRROR] = meta["annotations"][CONFIG_HASH]
    meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node_name,
                                "uid": node_uid, "controller": True}]
    mirror.pop("status", None)
    return mirror


class StaticPods:
    """Keeps the static pods running and their mirror pods in the API server."""

    def __init__(self, state: EdgedState, pods: PodManager, node: NodeStatus,
                 source: StaticPodSource, *, period: float = FILE_CHECK_FREQUENCY) -> None:
        self.s = state
        self.pods = pods
        self.node = node
        self.source = source
        self.period = period
        self._mirrored: dict[str, str] = {}  # static uid -> mirror uid it was created as

    async def run(self) -> None:
        """Re-read the directory every period; make mirror pods once the node is known."""
        await self.pods.pods_loaded.wait()
        while True:
            await self.sync()
            await self.s.sleep(self.period)

    async def sync(self) -> None:
        """One pass: start new static pods, stop removed ones, fix mirror pods."""
        found = await asyncio.to_thread(self.source.scan)
        for uid in [u for u in self.pods.static if u not in found]:
            pod = self.pods.static[uid]
            log.info("static pods: %s/%s removed", namespace_of(pod), name_of(pod))
            self.pods.remove_static(uid)
            await self._delete_mirror(pod)
        for _uid, pod in found.items():
            self.pods.apply_static(pod)
        if not self.node.registered.is_set() or not self.node.node_uid:
            return
        for uid, pod in found.items():
            if not self.pods.mirror_uid(namespace_of(pod), name_of(pod)):
                await self._create_mirror(uid, pod)

    async def _create_mirror(self, uid: str, pod: dict[str, Any]) -> None:
        mirror = mirror_pod(pod, node_name=self.s.node_name, node_uid=self.node.node_uid)
        resource = build_edge(namespace_of(pod), ResourceType.POD, name_of(pod))
        try:
            content = await self.s.meta.request(Operation.INSERT, resource, mirror)
        except MetaRequestError as exc:
            if "already exists" not in str(exc):
                log.info("static pods: mirror pod %s not created yet: %s", resource, exc)
            return
        created, err = object_resp(content)
        if err and "already exists" not in err:
            log.info("static pods: mirror pod %s refused: %s", resource, err)
            return
        if created is not None:
            self.pods.mirror_of(created)
            log.info("static pods: mirror pod %s created (uid %s)", resource, uid_of(created))

    async def _delete_mirror(self, pod: dict[str, Any]) -> None:
        namespace, name = namespace_of(pod), name_of(pod)
        mirror_uid = self.pods.mirror_uid(namespace, name)
        options: dict[str, Any] = {"gracePeriodSeconds": 0}
        if mirror_uid:
            options["preconditions"] = {"uid": mirror_uid}
        resource = build_edge(namespace, ResourceType.POD, name)
        try:
            await self.s.meta.request(Operation.DELETE, resource, options)
        except MetaRequestError as exc:
            log.info("static pods: mirror pod %s not deleted: %s", resource, exc)
