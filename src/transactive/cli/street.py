"""``transactive run brooklyn``: the face of a P2P street (:mod:`transactive.sim.p2p_street`).

Called by ``transactive run`` when the scenario (a built-in name or a TOML file) has a
``[street]`` table: it validates the street, checks ``--out``, runs the day on real ledger nodes
(the homes' and the DSO's stores in ``OUT/ledger/``), writes the results directory and
``report.html`` (:mod:`transactive.report.street`) and prints the headline figures. A bad
scenario, an ``--out`` that cannot be written or a missing NATS server exits with status 1 and
the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["run_street_command"]


def run_street_command(scenario: str, out: Path, *, quiet: bool, live: str | None) -> None:
    """Run a street scenario and write its results directory (see the module docstring)."""
    from transactive.cli._paths import check_output_folder  # noqa: PLC0415
    from transactive.errors import Problem, ValidationError  # noqa: PLC0415
    from transactive.report.street import write_street_report  # noqa: PLC0415
    from transactive.sim.p2p_street import (  # noqa: PLC0415
        load_street,
        run_street,
        street_summary,
        write_street_results,
    )

    console = Console()
    try:
        if live is not None:
            raise ValidationError(
                [Problem("--live", "a P2P street trades on its own ledger nodes, not a service")],
                subject=f"scenario {scenario!r}",
            )
        sc = load_street(scenario)
        check_output_folder(out, "--out")
        if quiet:
            res = run_street(sc, out / "ledger")
        else:
            res = _with_progress(sc, out, console, run_street)
    except ValidationError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=1) from None
    except RuntimeError as exc:
        typer.echo(f"the street's ledger failed: {exc}", err=True)
        raise typer.Exit(code=1) from None
    files = write_street_results(res, out)
    report = write_street_report(out)
    if quiet:
        return
    s = street_summary(res)
    cur = s["currency"]
    table = Table(title=f"{escape(sc.name)}: {s['homes']} homes on {escape(sc.street.grid)}")
    table.add_column("home")
    table.add_column("PV kWp", justify="right")
    table.add_column("sold kWh", justify="right")
    table.add_column("bought kWh", justify="right")
    table.add_column(f"baseline {cur}", justify="right")
    table.add_column(f"P2P {cur}", justify="right")
    for h in res.homes:
        table.add_row(
            h.home_id,
            f"{h.pv_kwp:g}",
            f"{h.sold_kwh:.2f}",
            f"{h.bought_kwh:.2f}",
            f"{h.baseline_bill:.2f}",
            f"{h.bill:.2f}",
        )
    console.print(table)
    led = s["ledger"]
    lines = [
        f"trades: {s['trades']} ({s['traded_kwh']:.2f} kWh)",
        f"PV used on the street: {s['pv_used_on_street_pct']:.1f} % "
        f"(baseline {s['baseline_pv_used_on_street_pct']:.1f} %: its own home only; "
        f"physically {s['pv_used_on_street_physical_pct']:.1f} % in both)",
        f"PV exported upstream: {s['pv_exported_upstream_kwh']:.2f} kWh "
        f"(baseline {s['baseline_pv_exported_kwh']:.2f} kWh)",
        f"street's bill: {s['street_bill']:.2f} {cur} (baseline {s['baseline_street_bill']:.2f})",
        f"fees on the ledger: platform {s['platform_fees']:.4f} {cur}; the DSO's network "
        f"charges {s['network_charges'] + s['loss_charges']:.4f} {cur} (use of system "
        f"{s['network_charges']:.4f}, losses {s['loss_charges']:.4f}; computed "
        f"{s['ac_network_charges']:.6f}), flat network fee {s['network_fees_flat']:.4f} {cur}; "
        f"trade losses {s['ac_trade_loss_kwh'] * 1000:.2f} Wh",
        f"DSO check: {s['refused_trades']} trades refused and reversed on the ledger "
        f"({s['refused_kwh']:.3f} kWh); {s['insecure_intervals']} insecure intervals",
        f"ledger {led['ledger_id']}: {led['blocks']} blocks on {len(led['nodes'])} nodes "
        f"({s['homes']} homes and the DSO {led['dso']!r}), heads equal {led['heads_equal']}, "
        f"every node's store verified {led['all_verified']}",
    ]
    for line in lines:
        console.print(escape(line))
    for note in s["notes"]:
        console.print(f"note: {escape(note)}")
    console.print(f"results in {escape(str(files['summary'].parent))} ({res.wall_s:.1f} s)")
    console.print(f"report: {escape(str(report))}")


def _with_progress(sc: Any, out: Path, console: Console, run: Any) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn  # noqa: PLC0415

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("ledger steps", total=sc.street.n_intervals + 2)

        def progress(_name: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return run(sc, out / "ledger", progress=progress)
