"""``transactive powerflow``, ``opf`` and ``feeder-day``: run a feeder from the command line.

A face only: it parses arguments, calls :mod:`transactive.network` (and
:mod:`transactive.report` for the PNG figures) and prints a rich table or one JSON object. A bad
feeder or option exits with status 1 and the ValidationError's message; a power flow that does not
converge exits with status 2.
"""

from __future__ import annotations

import json
import math
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from transactive.errors import Problems, ValidationError
from transactive.network.day import FeederDay, feeder_day_load, run_day
from transactive.network.feeders import Feeder, load_feeder
from transactive.network.opf import OpfModel, OpfResult
from transactive.network.powerflow import run_powerflow
from transactive.network.security import ViolationKind

__all__ = ["register"]

FEEDER_HELP = (
    "Built-in feeder (case33bw, cigre_lv, cigre_mv, cigre_mv_pv_wind, four_loads), a SimBench "
    "code shipped with simbench (e.g. 1-MV-rural--0-sw) or a pandapower JSON file."
)


class FormulationChoice(StrEnum):
    """OPF formulations offered on the command line."""

    socp = "socp"
    lindistflow = "lindistflow"


def _load(feeder: str) -> Feeder:
    try:
        return load_feeder(feeder)
    except ValidationError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=1) from None


def _num(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


def _fail(exc: ValidationError) -> typer.Exit:
    typer.echo(str(exc), err=True)
    return typer.Exit(code=1)


def _png_target(path: Path, option: str) -> None:
    """Reject a PNG path before any work is done (same rules as ``save_png``)."""
    problems = Problems(subject=f"{option} {str(path)!r}")
    if path.suffix.lower() != ".png":
        problems.add(option, "must end in .png")
    if not path.parent.is_dir():
        problems.add(option, f"folder {str(path.parent)!r} does not exist")
    if path.is_dir():
        problems.add(option, "is a folder, not a file")
    try:
        problems.raise_if_any()
    except ValidationError as exc:
        raise _fail(exc) from None


def powerflow(
    feeder: Annotated[str, typer.Argument(help=FEEDER_HELP)],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    map_png: Annotated[
        Path | None,
        typer.Option(
            "--map",
            help="Also write the feeder map (nodes coloured by voltage, branches by loading) "
            "to this PNG file.",
        ),
    ] = None,
) -> None:
    """Run an AC power flow (pandapower) with the feeder's own loads and generation."""
    if map_png is not None:
        _png_target(map_png, "--map")
    fd = _load(feeder)
    res = run_powerflow(fd)
    if not res.converged:
        typer.echo(f"power flow of {feeder!r} did not converge", err=True)
        raise typer.Exit(code=2)
    if map_png is not None:
        from transactive.report.figures import feeder_map, save_png  # noqa: PLC0415

        try:
            figure = feeder_map(
                fd, res.vm_pu, res.branch_loading_pct, title=f"{feeder}: AC power flow"
            )
            save_png(figure, map_png)
        except ValidationError as exc:
            raise _fail(exc) from None
    names = fd.node_name
    if as_json:
        out: dict[str, Any] = {
            "losses_kw": res.losses_kw,
            "vmin_pu": res.vmin_pu,
            "vmin_bus": names[res.vmin_bus],
            "vmax_pu": res.vmax_pu,
            "vmax_bus": names[res.vmax_bus],
            "max_line_loading_pct": _num(res.max_line_loading_pct),
        }
        if map_png is not None:
            out["map"] = str(map_png)
        typer.echo(json.dumps(out))
        return
    table = Table(title=f"AC power flow: {feeder}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("where")
    table.add_row("losses", f"{res.losses_kw:.2f} kW", "")
    table.add_row("substation draw", f"{res.p_slack_kw:.1f} kW, {res.q_slack_kvar:.1f} kvar", "")
    table.add_row("minimum voltage", f"{res.vmin_pu:.4f} pu", f"bus {names[res.vmin_bus]}")
    table.add_row("maximum voltage", f"{res.vmax_pu:.4f} pu", f"bus {names[res.vmax_bus]}")
    if res.max_loading_line >= 0:
        table.add_row(
            "most loaded line", f"{res.max_line_loading_pct:.1f} %", f"line {res.max_loading_line}"
        )
    if res.trafo_index.size:
        table.add_row("most loaded transformer", f"{res.max_trafo_loading_pct:.1f} %", "")
    Console().print(table)
    if map_png is not None:
        typer.echo(f"feeder map written to {map_png}")


def opf(
    feeder: Annotated[str, typer.Argument(help=FEEDER_HELP)],
    formulation: Annotated[
        FormulationChoice, typer.Option(help="SOC relaxation or linearized DistFlow.")
    ] = FormulationChoice.socp,
    price: Annotated[float, typer.Option(help="Substation energy price per kWh.", min=0.0)] = 0.1,
    vmin_pu: Annotated[
        float | None,
        typer.Option(help="Lower voltage limit at every node (default: the feeder's)."),
    ] = None,
    vmax_pu: Annotated[
        float | None,
        typer.Option(help="Upper voltage limit at every node (default: the feeder's)."),
    ] = None,
    rating_pct: Annotated[
        float, typer.Option(help="Branch ratings in percent of the feeder's.", min=0.0)
    ] = 100.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Solve a single-period convex OPF with the feeder's own loads; print cost and DLMPs."""
    fd = _load(feeder)
    try:
        model = OpfModel(fd, formulation=formulation.value)
        res = model.solve(
            price,
            s_max_kva=np.asarray(fd.branch_s_max_kva) * rating_pct / 100.0,
            vmin_pu=vmin_pu,
            vmax_pu=vmax_pu,
            ac_check=False,
        )
    except ValidationError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=1) from None
    if not res.optimal:
        typer.echo(
            f"OPF of {feeder!r} is {res.status} (the feeder's own loads violate its limits; "
            "try --vmin-pu, --vmax-pu or --rating-pct)",
            err=True,
        )
        raise typer.Exit(code=2)
    if as_json:
        typer.echo(json.dumps(_opf_json(fd, res)))
        return
    console = Console()
    gap = "n/a (LinDistFlow)" if res.relaxation_gap is None else f"{res.relaxation_gap:.2e}"
    summary = Table(title=f"{formulation.value} OPF: {feeder}")
    summary.add_column("quantity")
    summary.add_column("value", justify="right")
    summary.add_row("cost", f"{res.cost:.4f}")
    summary.add_row("losses", f"{float(res.losses_kw[0]):.2f} kW")
    summary.add_row("relaxation gap", gap)
    summary.add_row("minimum voltage", f"{res.vmin_pu:.4f} pu")
    console.print(summary)
    prices = Table(title="DLMP per kWh")
    for col in ("bus", "energy", "loss", "congestion", "voltage", "total"):
        prices.add_column(col, justify="right")
    for row in _dlmp_rows(fd, res):
        prices.add_row(
            str(row["bus"]),
            *(f"{row[k]:.5f}" for k in ("energy", "loss", "congestion", "voltage", "total")),
        )
    console.print(prices)


def _dlmp_rows(fd: Feeder, res: OpfResult) -> list[dict[str, Any]]:
    d = res.dlmp
    return [
        {
            "bus": fd.node_name[i],
            "energy": float(d.energy[i, 0]),
            "loss": float(d.loss[i, 0]),
            "congestion": float(d.congestion[i, 0]),
            "voltage": float(d.voltage[i, 0]),
            "total": float(d.total[i, 0]),
        }
        for i in range(fd.n_nodes)
    ]


def _opf_json(fd: Feeder, res: OpfResult) -> dict[str, Any]:
    return {
        "cost": res.cost,
        "losses_kw": float(res.losses_kw[0]),
        "relaxation_gap": res.relaxation_gap,
        "vmin_pu": res.vmin_pu,
        "dlmp": _dlmp_rows(fd, res),
    }


def feeder_day(
    feeder: Annotated[str, typer.Argument(help=FEEDER_HELP)],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for feeder_map_peak.png (the map at the peak interval) and "
            "vmin_day.png (the minimum voltage over the day); created if missing."
        ),
    ] = None,
    scale: Annotated[
        float,
        typer.Option(
            help="Factor on every node's net consumption (loads and generation alike), to "
            "push the feeder towards or past its limits."
        ),
    ] = 1.0,
    day: Annotated[
        int | None,
        typer.Option(
            help="Day of 2016 (0-365). Default: SimBench grids their peak day, other feeders "
            "the year-average day of SimBench's household profiles."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run a day of the feeder's own load through the AC power flow and the DSO's check.

    SimBench grids use their shipped profiles; other feeders their nominal loads times SimBench's
    household load shape. Prints the peak interval, the lowest voltage (when and where), the
    highest loading, the intervals with violations and the energy losses.
    """
    if out is not None and out.exists() and not out.is_dir():
        problems = Problems(subject=f"--out {str(out)!r}")
        problems.add("--out", "is a file, not a folder")
        raise _fail(ValidationError(problems.found, subject=problems.subject))
    fd = _load(feeder)
    try:
        load = feeder_day_load(fd, day=day, scale=scale)
        result = run_day(fd, load.p_kw, load.q_kvar, interval_s=load.interval_s)
    except ValidationError as exc:
        raise _fail(exc) from None
    if not result.converged.any():
        typer.echo(
            f"no interval of the day of {feeder!r} converged (try a smaller --scale)", err=True
        )
        raise typer.Exit(code=2)
    summary = _day_summary(fd, result, load.source, load.start)
    files: list[str] = []
    if out is not None:
        files = _write_day_figures(fd, result, out, scale, summary)
    summary["files"] = files
    if as_json:
        typer.echo(json.dumps(summary))
        return
    _print_day(summary, feeder)


def _clock(hours: float) -> str:
    h, m = divmod(round(hours * 60.0), 60)
    return f"{h:02d}:{m:02d}"


def _day_summary(fd: Feeder, d: FeederDay, source: str, start: Any) -> dict[str, Any]:
    t_peak = d.peak_interval
    t_low = int(np.nanargmin(d.vmin_pu))
    node_low = int(d.vmin_node[t_low])
    kinds, elements = np.asarray(fd.branch_kind), np.asarray(fd.branch_element)
    loading: dict[str, Any] = {"value_pct": None, "time": None, "branch": None}
    if np.isfinite(d.max_loading_pct).any():
        t_load = int(np.nanargmax(d.max_loading_pct))
        b = int(d.max_loading_branch[t_load])
        loading = {
            "value_pct": float(d.max_loading_pct[t_load]),
            "time": _clock(float(d.time_h[t_load])),
            "branch": f"{kinds[b]} {elements[b]}",
        }
    by_kind = {str(k): int(d.intervals_with(k).size) for k in ViolationKind}
    checked = np.arange(fd.n_nodes) != fd.slack
    return {
        "feeder": fd.name,
        "source": source,
        "date": "year-average day" if start is None else f"{start:%Y-%m-%d}",
        "intervals": d.n_intervals,
        "interval_s": d.interval_s,
        "peak_interval": t_peak,
        "peak_time": _clock(float(d.time_h[t_peak])),
        "peak_import_kw": float(d.p_slack_kw[t_peak]),
        "vmin_pu": float(d.vmin_pu[t_low]),
        "vmin_time": _clock(float(d.time_h[t_low])),
        "vmin_node": fd.node_name[node_low],
        "vmin_limit_pu": float(np.min(d.vmin_limit_pu[checked], initial=np.inf)),
        "vmax_pu": float(np.nanmax(d.vmax_pu)),
        "max_loading_pct": loading["value_pct"],
        "max_loading_time": loading["time"],
        "max_loading_branch": loading["branch"],
        "insecure_intervals": d.n_insecure,
        "intervals_by_violation": by_kind,
        "energy_losses_kwh": d.energy_losses_kwh,
        "energy_import_kwh": d.energy_import_kwh,
    }


def _write_day_figures(
    fd: Feeder, d: FeederDay, out: Path, scale: float, summary: dict[str, Any]
) -> list[str]:
    from transactive.report.figures import (  # noqa: PLC0415
        feeder_map,
        save_png,
        voltage_day_figure,
    )

    out.mkdir(parents=True, exist_ok=True)
    t = d.peak_interval
    label = "own load" if scale == 1.0 else f"own load x {scale:g}"
    peak_map = feeder_map(
        fd,
        d.vm_pu[t],
        d.branch_loading_pct[t],
        title=f"{fd.name} at the peak interval\n{summary['date']}, {summary['peak_time']} "
        f"({summary['peak_import_kw']:.0f} kW import)",
    )
    limit = summary["vmin_limit_pu"]
    vmin_figure = voltage_day_figure(
        d.time_h,
        {label: d.vmin_pu},
        vmin_limit_pu=limit if math.isfinite(limit) else None,
        title=f"{fd.name}: minimum node voltage over the day ({summary['date']})",
    )
    return [
        str(save_png(peak_map, out / "feeder_map_peak.png")),
        str(save_png(vmin_figure, out / "vmin_day.png")),
    ]


def _print_day(summary: dict[str, Any], feeder: str) -> None:
    table = Table(title=f"A day of {feeder}: {summary['date']}, {summary['intervals']} intervals")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("when")
    table.add_column("where")
    table.add_row(
        "peak import", f"{summary['peak_import_kw']:.1f} kW", summary["peak_time"], "substation"
    )
    table.add_row(
        "lowest voltage",
        f"{summary['vmin_pu']:.4f} pu",
        summary["vmin_time"],
        f"node {summary['vmin_node']}",
    )
    if summary["max_loading_pct"] is not None:
        table.add_row(
            "highest loading",
            f"{summary['max_loading_pct']:.1f} %",
            summary["max_loading_time"],
            summary["max_loading_branch"],
        )
    kinds = ", ".join(f"{k} {n}" for k, n in summary["intervals_by_violation"].items() if n)
    table.add_row(
        "intervals with violations",
        f"{summary['insecure_intervals']} of {summary['intervals']}",
        "",
        kinds,
    )
    table.add_row("energy losses", f"{summary['energy_losses_kwh']:.1f} kWh", "day", "")
    table.add_row("energy imported", f"{summary['energy_import_kwh']:.1f} kWh", "day", "")
    console = Console()
    console.print(table)
    console.print(f"load: {summary['source']}")
    for path in summary["files"]:
        console.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add the ``powerflow``, ``opf`` and ``feeder-day`` commands to ``app``."""
    app.command("powerflow")(powerflow)
    app.command("opf")(opf)
    app.command(
        "feeder-day",
        help=(
            "Run a day of the feeder's own load through the AC power flow and the DSO's check. "
            "SimBench grids use their shipped profiles; other feeders their nominal loads times "
            "SimBench's household load shape. Prints the peak interval, the lowest voltage (when "
            "and where), the highest loading, the intervals with violations and the energy losses."
        ),
    )(feeder_day)
