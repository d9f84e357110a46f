"""``transactive run`` and ``transactive scenarios``: simulate a feeder through time.

A face only: it reads a scenario (a built-in name or a TOML file), calls
:func:`transactive.sim.simulate` with a rich progress bar (``--quiet`` for scripts), writes the
results directory (:func:`transactive.sim.write_results`) and its report
(:func:`transactive.report.write_report`, ``report.html``), and prints the summary table, baseline
against transactive. A bad scenario exits with status 1 and every problem with its path in the
file, before anything runs, as does an ``--out`` folder that cannot be created or written (it is
made and probed with a real file first, :mod:`transactive.cli._paths`). The simulator is
imported inside the commands, so ``transactive --help`` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the simulator's commands to the console app."""
    app.command("run")(run_command)
    app.command("scenarios")(scenarios_command)


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}{unit}" if abs(value) >= 10 else f"{value:,.3g}{unit}"


def run_command(
    scenario: Annotated[
        str,
        typer.Argument(help="A built-in scenario (see `transactive scenarios`) or a TOML file."),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Results directory (created if missing).")
    ] = Path("results"),
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar and no table.")] = False,
    live: Annotated[
        str | None,
        typer.Option(
            "--live",
            metavar="URL",
            help="Clear the transactive run on a running `transactive serve` at URL (the "
            "devices' agents speak HTTP to it) instead of in this process.",
        ),
    ] = None,
    operator_id: Annotated[
        str | None,
        typer.Option(
            "--operator-id",
            envvar="TRANSACTIVE_OPERATOR_ID",
            help="With --live: the platform operator's client id.",
        ),
    ] = None,
    operator_secret: Annotated[
        str | None,
        typer.Option(
            "--operator-secret",
            envvar="TRANSACTIVE_OPERATOR_SECRET",
            help="With --live: the platform operator's client secret.",
        ),
    ] = None,
) -> None:
    """Run a scenario (its baseline and its transactive run) and write the results directory.

    With ``--live URL`` the runs with a market clear on the service at URL
    (:class:`transactive.sim.live.LiveService`; the baseline has no market): a scenario the live
    mode does not support, missing credentials or a refusal of the service exit with status 1
    and the reason.
    """
    from transactive.cli._paths import check_output_folder  # noqa: PLC0415
    from transactive.errors import ValidationError  # noqa: PLC0415
    from transactive.sim import load_scenario, summary, write_results  # noqa: PLC0415
    from transactive.sim.p2p_street import is_street_scenario  # noqa: PLC0415

    if is_street_scenario(scenario):  # a P2P street on ledger nodes (transactive.cli.street)
        from transactive.cli.street import run_street_command  # noqa: PLC0415

        run_street_command(scenario, out, quiet=quiet, live=live)
        return
    console = Console()
    service = None
    refusals: tuple[type[Exception], ...] = (ValidationError,)
    try:
        sc, base_dir = load_scenario(scenario)
        check_output_folder(out, "--out")  # before the run, which could not be saved otherwise
        if live is not None:
            from transactive.sim.live import (  # noqa: PLC0415
                LiveService,
                LiveServiceError,
                check_live,
            )

            refusals = (ValidationError, LiveServiceError)
            check_live(sc)
            service = LiveService(
                live, operator_id=operator_id or "", operator_secret=operator_secret or ""
            )
        elif operator_id is not None or operator_secret is not None:
            typer.echo("--operator-id and --operator-secret go with --live URL", err=True)
            raise typer.Exit(code=1)
    except refusals as exc:  # a bad scenario or --out; the service not there or refusing
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=1) from None
    try:
        sim = _simulate(sc, base_dir, quiet=quiet, console=console, market_access=service)
    except refusals as exc:  # a bad scenario, or the live service refused or is not there
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=1) from None
    finally:
        if service is not None:
            service.close()
    from transactive.report import write_report  # noqa: PLC0415

    files = write_results(sim, out)
    report = write_report(out)
    if quiet:
        return
    data = summary(sim)
    table = Table(title=f"{escape(sc.name)}: {data['n_homes']} homes on {escape(sc.feeder.name)}")
    table.add_column("KPI")
    table.add_column("baseline", justify="right")
    table.add_column("transactive", justify="right")
    for key, value in data["runs"]["baseline"].items():
        table.add_row(key, _fmt(value), _fmt(data["runs"]["transactive"][key]))
    console.print(table)
    console.print(f"peak reduction: {_fmt(data['peak_reduction_pct'], ' %')}")
    for note in data["notes"]:
        console.print(f"note: {escape(note)}")
    if service is not None:
        for name, market in service.markets.items():
            console.print(
                f"live: the {escape(name)} run cleared on market {market.market_id} of "
                f"{escape(service.url)} (intervals {market.interval_ids[0]}.."
                f"{market.interval_ids[-1]}, settled)"
            )
    console.print(f"results in {escape(str(files['summary'].parent))} ({sim.wall_s:.1f} s)")
    console.print(f"report: {escape(str(report))}")


def _simulate(
    sc: Any, base_dir: Path | None, *, quiet: bool, console: Console, market_access: Any
) -> Any:
    """:func:`transactive.sim.simulate`, with a progress bar unless ``quiet``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn  # noqa: PLC0415

    from transactive.sim import simulate  # noqa: PLC0415

    if quiet:
        return simulate(sc, base_dir=base_dir, market_access=market_access)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:  # baseline, transactive (and transactive_no_faults)
                tasks[name] = bar.add_task(f"{name} run", total=total)
            bar.update(tasks[name], completed=done, total=total)

        return simulate(sc, base_dir=base_dir, progress=progress, market_access=market_access)


def scenarios_command() -> None:
    """List the built-in scenarios."""
    from transactive.sim import builtin_scenarios  # noqa: PLC0415

    table = Table(title="built-in scenarios (transactive run NAME)")
    table.add_column("name")
    table.add_column("description")
    for name, description in builtin_scenarios().items():
        table.add_row(escape(name), escape(description))
    Console().print(table)
