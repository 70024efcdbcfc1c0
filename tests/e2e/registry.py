"""A real image registry on loopback for the image tests: Debian's ``docker-registry``
(distribution 2.8) with htpasswd auth on a free 127.0.0.1 port, and a tiny pusher speaking the
registry v2 API (blob uploads, then the manifest) from the OCI archive
``devcluster.localimages`` builds::

    async with LocalRegistry(tmp / "registry", user="e2e", password="s3cret") as registry:
        await registry.push(archive_bytes, "team/app", "1.0")
        # pull "127.0.0.1:<port>/team/app:1.0" with the credentials
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import aiohttp

from pykubeedge.devcluster.process import ManagedProcess, free_port

REGISTRY_BINARY = "docker-registry"
HTPASSWD_BINARY = "htpasswd"


class LocalRegistry:
    def __init__(self, base: Path, *, user: str, password: str) -> None:
        self.base = base
        self.user = user
        self.password = password
        self.port = free_port()
        self.process: ManagedProcess | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write_files(self) -> Path:
        for tool in (REGISTRY_BINARY, HTPASSWD_BINARY):
            if shutil.which(tool) is None:
                raise RuntimeError(f"{tool} not found: install Debian's docker-registry and "
                                   "apache2-utils (scripts/setup.sh does)")
        self.base.mkdir(parents=True, exist_ok=True)
        htpasswd = subprocess.run([HTPASSWD_BINARY, "-Bbn", self.user, self.password],
                                  capture_output=True, text=True, check=True, timeout=30)
        (self.base / "htpasswd").write_text(htpasswd.stdout)
        config = self.base / "config.yml"
        config.write_text(json.dumps({
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(self.base / "data")},
                        "delete": {"enabled": True}},
            "http": {"addr": self.host},
            "auth": {"htpasswd": {"realm": "pykubeedge-e2e",
                                  "path": str(self.base / "htpasswd")}},
        }))
        return config

    async def __aenter__(self) -> LocalRegistry:
        config = await asyncio.to_thread(self._write_files)
        self.process = ManagedProcess("registry", [REGISTRY_BINARY, "serve", str(config)],
                                      self.base / "registry.log")
        await self.process.start()
        await self.process.wait_port(self.port, timeout=30)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.process is not None:
            await self.process.stop()

    async def push(self, archive: bytes, repository: str, tag: str) -> str:
        """Push the first image of an OCI archive as ``repository:tag``; its manifest digest."""
        files = _read_archive(archive)
        index = json.loads(files["index.json"])
        descriptor = index["manifests"][0]
        manifest_bytes = files[_blob_path(descriptor["digest"])]
        manifest = json.loads(manifest_bytes)
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        base = f"http://{self.host}/v2/{repository}"
        async with aiohttp.ClientSession(headers={"Authorization": f"Basic {token}"}) as session:
            for blob in [manifest["config"], *manifest["layers"]]:
                data = files[_blob_path(blob["digest"])]
                async with session.post(f"{base}/blobs/uploads/") as started:
                    assert started.status == 202, await started.text()
                    location = started.headers["Location"]
                if location.startswith("/"):
                    location = f"http://{self.host}{location}"
                joiner = "&" if "?" in location else "?"
                async with session.put(f"{location}{joiner}digest={blob['digest']}", data=data,
                                       headers={"Content-Type": "application/octet-stream"}) \
                        as done:
                    assert done.status == 201, await done.text()
            async with session.put(f"{base}/manifests/{tag}", data=manifest_bytes,
                                   headers={"Content-Type": manifest["mediaType"]}) as put:
                assert put.status == 201, await put.text()
        return "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()


def _blob_path(digest: str) -> str:
    return "blobs/sha256/" + digest.removeprefix("sha256:")


def _read_archive(archive: bytes) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                files[member.name] = handle.read()
    return files


def docker_config_secret(name: str, host: str, user: str, password: str) -> dict[str, Any]:
    """A ``kubernetes.io/dockerconfigjson`` Secret for ``host``."""
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = json.dumps({"auths": {host: {"username": user, "password": password,
                                          "auth": auth}}})
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": name},
            "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()}}
