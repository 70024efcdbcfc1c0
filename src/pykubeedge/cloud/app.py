"""The ``cloudcore`` command.

Today it loads and validates cloudcore.yaml, prints the version and the effective config, and
checks that the Kubernetes API server named by ``kubeAPIConfig`` answers. The CloudHub and
controller modules are wired here as they land.

    cloudcore --config /etc/kubeedge/config/cloudcore.yaml
    cloudcore --defaultconfig          # print the defaults as YAML
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from pykubeedge import __version__
from pykubeedge.core.config import CloudCoreConfig, load_cloudcore_config
from pykubeedge.core.errors import PyKubeEdgeError
from pykubeedge.kube.client import KubeClient
from pykubeedge.kube.config import load_kubeconfig

app = typer.Typer(add_completion=False, help="pykubeedge cloudcore (cloud side of KubeEdge).")


async def check_api_server(cfg: CloudCoreConfig) -> str:
    """Return the API server's gitVersion, or raise a one-line PyKubeEdgeError."""
    kubeconfig = load_kubeconfig(cfg.kubeAPIConfig.kubeConfig or None)
    async with KubeClient(kubeconfig, timeout=10) as kube:
        info = await kube.request("GET", "/version")
    return str(info.get("gitVersion", "unknown"))


@app.command()
def run(
    config: Annotated[Path | None, typer.Option("--config", help="cloudcore.yaml")] = None,
    kubeconfig: Annotated[str | None, typer.Option(
        "--kubeconfig", help="overrides kubeAPIConfig.kubeConfig")] = None,
    defaultconfig: Annotated[bool, typer.Option("--defaultconfig",
                                                help="print the default config and exit")] = False,
) -> None:
    if defaultconfig:
        typer.echo(yaml.safe_dump(CloudCoreConfig().model_dump(), sort_keys=False))
        return
    try:
        cfg = load_cloudcore_config(config)
        if kubeconfig:
            cfg.kubeAPIConfig.kubeConfig = kubeconfig
        typer.echo(f"cloudcore {__version__}")
        typer.echo(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
        version = asyncio.run(check_api_server(cfg))
    except PyKubeEdgeError as exc:
        typer.echo(f"cloudcore: error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"Kubernetes API server {version} is reachable")


def main() -> None:
    sys.exit(app())
