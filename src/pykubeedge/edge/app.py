"""The ``edgecore`` command. Today it prints its version; EdgeHub, MetaManager and Edged are
wired here as they land."""

from __future__ import annotations

import sys

import typer

from pykubeedge import __version__

app = typer.Typer(add_completion=False, help="pykubeedge edgecore (edge side of KubeEdge).")


@app.command()
def run() -> None:
    typer.echo(f"edgecore {__version__}")


def main() -> None:
    sys.exit(app())
