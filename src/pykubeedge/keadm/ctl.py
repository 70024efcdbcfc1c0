"""``keadm ctl``: commands run on an edge node against its MetaServer.

    keadm ctl unhold-upgrade pod web -n default      # release a pod held by hold-upgrade
    keadm ctl unhold-upgrade node                     # every held pod of this node
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import aiohttp
import typer

from pykubeedge.core.config import DEFAULT_EDGECORE_CONFIG, EdgeCoreConfig, load_edgecore_config
from pykubeedge.core.errors import PyKubeEdgeError

ctl = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Commands for an edge node (through its MetaServer).")


def metaserver_url(cfg: EdgeCoreConfig) -> str:
    """``http://<metaServer.server>``; an error if the MetaServer is off (as upstream)."""
    meta = cfg.modules.metaManager.metaServer
    if not meta.enable:
        raise typer.BadParameter("metaserver don't open")
    return f"http://{meta.server}"


async def post_unhold(base: str, plural: str, body: str, timeout: float = 30) -> None:
    """POST the body to ``/api/v1/<plural>/unhold-upgrade``; RuntimeError on failure."""
    url = f"{base}/api/v1/{plural}/unhold-upgrade"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s, \
                s.post(url, data=body.encode(), headers={"Content-Type": "text/plain"}) as r:
            text = (await r.text()).strip()
            if r.status != 200:
                raise RuntimeError(f"failed to unhold {plural} upgrade, status code: "
                                   f"{r.status}, message: {text}")
    except aiohttp.ClientError as exc:
        raise RuntimeError(f"failed to send unhold request to MetaService API, err: {exc}") \
            from None


@ctl.command("unhold-upgrade")
def unhold_upgrade(
    resource_type: Annotated[str, typer.Argument(help="pod or node")],
    name: Annotated[str, typer.Argument(help="the pod's name (pod), or the node's "
                                             "(node; default: this node)")] = "",
    namespace: Annotated[str, typer.Option("--namespace", "-n",
                                           help="the pod's namespace")] = "default",
    config: Annotated[Path, typer.Option("--config", help="edgecore.yaml")] =
        DEFAULT_EDGECORE_CONFIG,
) -> None:
    """Release pods held by the ``edge.kubeedge.io/hold-upgrade`` annotation."""
    try:
        cfg = load_edgecore_config(config)
    except PyKubeEdgeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    base = metaserver_url(cfg)
    if resource_type == "pod":
        if not name:
            typer.echo("error: pod name is required", err=True)
            raise typer.Exit(1)
        plural, body = "pods", f"{namespace}/{name}"
    elif resource_type == "node":
        plural, body = "nodes", name or cfg.node_name
    else:
        typer.echo(f"error: unknown resource type: {resource_type}", err=True)
        raise typer.Exit(1)
    try:
        asyncio.run(post_unhold(base, plural, body))
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"unhold-upgrade sent for {resource_type} {body}")
