"""The ``transactive`` console command (typer + rich). Faces only translate and call down."""

from __future__ import annotations

import typer

from transactive.cli import ledger, market, mechanisms, network, platform, sim

app = typer.Typer(
    name="transactive",
    help="Transactive energy: clear markets, run feeders, simulate device populations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ledger.register(app)
market.register(app)
mechanisms.register(app)
network.register(app)
platform.register(app)
sim.register(app)


def main() -> None:
    """Entry point of the console script."""
    app()
