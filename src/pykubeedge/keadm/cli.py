"""``keadm``: install and run pykubeedge.

    keadm local-up                 # control plane (+ later: cloudcore, an edge node, a demo)
    keadm local-up --tier full     # with kube-scheduler and kube-controller-manager
    keadm version
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pykubeedge import __version__
from pykubeedge.core.errors import PyKubeEdgeError
from pykubeedge.devcluster.cluster import DevCluster

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="keadm: set up pykubeedge (KubeEdge in Python).")
console = Console(stderr=True)


@app.command()
def version() -> None:
    """Print keadm's version."""
    typer.echo(f"keadm {__version__}")


@app.command("local-up")
def local_up(
    tier: Annotated[str, typer.Option(help="minimal (etcd+apiserver) or full "
                                           "(+scheduler, controller-manager)")] = "full",
    bin_dir: Annotated[Path | None, typer.Option(
        help="use control-plane binaries from this directory instead of building them",
        envvar="PYKUBEEDGE_K8S_BIN_DIR")] = None,
    workdir: Annotated[Path | None, typer.Option(
        help="keep state here (default: a temporary directory removed on exit)")] = None,
    run_for: Annotated[float | None, typer.Option(
        help="stop after this many seconds (smoke tests); default: until Ctrl-C")] = None,
) -> None:
    """Run the whole system on this machine until Ctrl-C."""
    if tier not in ("minimal", "full"):
        console.print(f"[red]error:[/] --tier must be 'minimal' or 'full', not {tier!r}")
        raise typer.Exit(2)
    try:
        asyncio.run(_local_up(tier, bin_dir, workdir, run_for))
    except PyKubeEdgeError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None


async def _local_up(tier: str, bin_dir: Path | None, workdir: Path | None,
                    run_for: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    if workdir:
        workdir.mkdir(parents=True, exist_ok=True)
    status = console.status("preparing the control plane")

    def progress(msg: str) -> None:
        status.update(msg[:120])
        if not msg.startswith("go: "):
            console.log(msg)

    cluster = DevCluster(tier=tier, workdir=workdir, bin_dir=bin_dir,  # type: ignore[arg-type]
                         progress=progress)
    with status:
        start = asyncio.create_task(cluster.start())
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({start, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not start.done():
            start.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await start
            await cluster.stop()
            console.print("interrupted; stopped")
            return
        waiter.cancel()
    try:
        start.result()
        kube_version = cluster.binaries.kube_version if cluster.binaries else "?"
        console.print(f"[green]Control plane ready[/] (Kubernetes {kube_version}, tier {tier})")
        console.print(f"  kubeconfig: {cluster.kubeconfig}")
        console.print(f"  try:        kubectl --kubeconfig {cluster.kubeconfig} get ns")
        console.print("Press Ctrl-C to stop everything.")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), run_for)
    finally:
        console.print("stopping")
        await cluster.stop()


def main() -> None:
    sys.exit(app())
