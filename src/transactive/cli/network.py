"""``transactive powerflow``, ``opf`` and ``feeder-day``: run a feeder from the command line.

A face only: it parses arguments, calls :mod:`transactive.network` (and
:mod:`transactive.report` for the PNG figures) and prints a rich table or one strict JSON object
(no ``NaN`` or ``Infinity``: an unrated loading is ``null``). A bad feeder or option exits with
status 1 and the ValidationError's message, before any power flow runs (``--out`` is created and
``--map``'s folder probed with a real file first, :mod:`transactive.cli._paths`); a power flow
that does not converge exits with status 2. Names and paths are printed as they are (rich markup
in them is escaped).

numpy, pandapower, cvxpy, matplotlib and :mod:`transactive.network` are imported inside the
commands, so ``transactive --help`` does not pay for them.
"""

from __future__ import annotations

import json
import math
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from transactive.errors import ValidationError
    from transactive.network.day import FeederDay
    from transactive.network.feeders import Feeder
    from transactive.network.opf import OpfResult

__all__ = ["register"]

FEEDER_HELP = (
    "Built-in feeder (case33bw, cigre_lv, cigre_mv, cigre_mv_pv_wind, four_loads), a SimBench "
    "code shipped with simbench (e.g. 1-MV-rural--0-sw) or a pandapower JSON file."
)
RATING_HELP = (
    "Rate every line at this current in kA: a positive number, x>0 (pandapower's max_i_ka; df "
    "and parallel still apply). A feeder whose lines carry placeholder ratings (case33bw's "
    "99999 kA) is otherwise reported as unrated."
)
UNRATED = "unrated"


class FormulationChoice(StrEnum):
    """OPF formulations offered on the command line."""

    socp = "socp"
    lindistflow = "lindistflow"


def _fail(exc: ValidationError) -> typer.Exit:
    typer.echo(str(exc), err=True)
    return typer.Exit(code=1)


def _load(feeder: str, line_max_i_ka: float | None) -> Feeder:
    from transactive.errors import Problem, ValidationError  # noqa: PLC0415
    from transactive.network.feeders import load_feeder  # noqa: PLC0415

    if line_max_i_ka is not None and not (math.isfinite(line_max_i_ka) and line_max_i_ka > 0):
        reason = f"must be a positive finite number of kA (--line-max-i-ka), got {line_max_i_ka:g}"
        raise _fail(ValidationError([Problem("max_i_ka", reason)], subject="options"))
    try:
        return load_feeder(feeder, line_max_i_ka=line_max_i_ka)
    except ValidationError as exc:
        raise _fail(exc) from None


def _num(value: float | None) -> float | None:
    """A finite float, or None (JSON null) for NaN / inf / missing."""
    return None if value is None or not math.isfinite(value) else float(value)


def _dumps(out: dict[str, Any]) -> str:
    return json.dumps(out, allow_nan=False)


def _png_target(path: Path, option: str) -> None:
    """Reject a PNG path that cannot be written, before any work is done (probed for real)."""
    from transactive.cli._paths import check_output_file  # noqa: PLC0415
    from transactive.errors import ValidationError  # noqa: PLC0415

    try:
        check_output_file(path, option, suffix=".png")
    except ValidationError as exc:
        raise _fail(exc) from None


def _out_target(path: Path) -> None:
    """Create the output folder and probe it, before any work is done."""
    from transactive.cli._paths import check_output_folder  # noqa: PLC0415
    from transactive.errors import ValidationError  # noqa: PLC0415

    try:
        check_output_folder(path, "--out")
    except ValidationError as exc:
        raise _fail(exc) from None


def _pct(value: float | None) -> str:
    return UNRATED if _num(value) is None else f"{value:.1f} %"


# ---------------------------------------------------------------------- powerflow


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
    line_max_i_ka: Annotated[
        float | None, typer.Option("--line-max-i-ka", help=RATING_HELP)
    ] = None,
) -> None:
    """Run an AC power flow (pandapower) with the feeder's own loads and generation."""
    from transactive.errors import ValidationError  # noqa: PLC0415
    from transactive.network.powerflow import run_powerflow  # noqa: PLC0415

    if map_png is not None:
        _png_target(map_png, "--map")
    fd = _load(feeder, line_max_i_ka)
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
    unsupplied = [
        {"bus": int(b), "load_kw": float(p)}
        for b, p in zip(fd.unsupplied_buses, fd.unsupplied_load_kw, strict=True)
    ]
    if as_json:
        out: dict[str, Any] = {
            "losses_kw": res.losses_kw,
            "vmin_pu": res.vmin_pu,
            "vmin_bus": names[res.vmin_bus],
            "vmax_pu": res.vmax_pu,
            "vmax_bus": names[res.vmax_bus],
            "substation_p_kw": res.p_slack_kw,
            "substation_q_kvar": res.q_slack_kvar,
            "max_line_loading_pct": _num(res.max_line_loading_pct),
            "max_loading_line": None if res.max_loading_line < 0 else res.max_loading_line,
            "max_trafo_loading_pct": _num(res.max_trafo_loading_pct),
            "unsupplied_buses": unsupplied,
        }
        if map_png is not None:
            out["map"] = str(map_png)
        typer.echo(_dumps(out))
        return
    table = Table(title=f"AC power flow: {escape(feeder)}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("where")
    table.add_row("losses", f"{res.losses_kw:.2f} kW", "")
    table.add_row("substation draw", f"{res.p_slack_kw:.1f} kW, {res.q_slack_kvar:.1f} kvar", "")
    table.add_row("minimum voltage", f"{res.vmin_pu:.4f} pu", f"bus {escape(names[res.vmin_bus])}")
    table.add_row("maximum voltage", f"{res.vmax_pu:.4f} pu", f"bus {escape(names[res.vmax_bus])}")
    if res.line_index.size:
        where = f"line {res.max_loading_line}" if res.max_loading_line >= 0 else "no line rating"
        table.add_row("most loaded line", _pct(res.max_line_loading_pct), where)
    if res.trafo_index.size:
        table.add_row("most loaded transformer", _pct(res.max_trafo_loading_pct), "")
    if unsupplied:
        buses = ", ".join(str(u["bus"]) for u in unsupplied)
        total = sum(u["load_kw"] for u in unsupplied)
        table.add_row("unsupplied (cut off)", f"{total:.1f} kW of load", f"buses {buses}")
    console = Console()
    console.print(table)
    if map_png is not None:
        console.print(f"feeder map written to {escape(str(map_png))}")


# ---------------------------------------------------------------------- opf


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
    line_max_i_ka: Annotated[
        float | None, typer.Option("--line-max-i-ka", help=RATING_HELP)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Solve a single-period convex OPF with the feeder's own loads; print cost and DLMPs."""
    import numpy as np  # noqa: PLC0415

    from transactive.errors import ValidationError  # noqa: PLC0415
    from transactive.network.opf import OpfModel  # noqa: PLC0415

    fd = _load(feeder, line_max_i_ka)
    try:
        model = OpfModel(fd, formulation=formulation.value)
        res = model.solve(
            price,
            i_max_ka=np.asarray(fd.branch_i_max_ka) * rating_pct / 100.0,
            vmin_pu=vmin_pu,
            vmax_pu=vmax_pu,
            ac_check=False,
        )
    except ValidationError as exc:
        raise _fail(exc) from None
    if not res.optimal:
        typer.echo(
            f"OPF of {feeder!r} is {res.status} (the feeder's own loads violate its limits; "
            "try --vmin-pu, --vmax-pu or --rating-pct)",
            err=True,
        )
        raise typer.Exit(code=2)
    if as_json:
        typer.echo(_dumps(_opf_json(fd, res)))
        return
    console = Console()
    gap = "n/a (LinDistFlow)" if res.relaxation_gap is None else f"{res.relaxation_gap:.2e}"
    summary = Table(title=f"{formulation.value} OPF: {escape(feeder)}")
    summary.add_column("quantity")
    summary.add_column("value", justify="right")
    summary.add_row("cost", f"{res.cost:.4f}")
    summary.add_row("losses", f"{float(res.losses_kw[0]):.2f} kW")
    summary.add_row(
        "substation draw",
        f"{float(res.substation_p_kw[0]):.1f} kW, {float(res.substation_q_kvar[0]):.1f} kvar",
    )
    summary.add_row("relaxation gap", gap)
    summary.add_row("minimum voltage", f"{res.vmin_pu:.4f} pu")
    summary.add_row("highest branch loading", _pct(_max_loading(res)))
    console.print(summary)
    prices = Table(title="DLMP per kWh")
    for col in ("bus", "energy", "loss", "congestion", "voltage", "total"):
        prices.add_column(col, justify="right")
    for row in _dlmp_rows(fd, res):
        prices.add_row(
            escape(str(row["bus"])),
            *(f"{row[k]:.5f}" for k in ("energy", "loss", "congestion", "voltage", "total")),
        )
    console.print(prices)


def _max_loading(res: OpfResult) -> float | None:
    import numpy as np  # noqa: PLC0415

    loading = np.asarray(res.branch_loading_pct[0])
    return float(np.nanmax(loading)) if np.isfinite(loading).any() else None


def _dlmp_rows(fd: Feeder, res: OpfResult) -> list[dict[str, Any]]:
    d = res.dlmp
    return [
        {
            "bus": fd.node_name[i],
            "energy": float(d.energy[0, i]),
            "loss": float(d.loss[0, i]),
            "congestion": float(d.congestion[0, i]),
            "voltage": float(d.voltage[0, i]),
            "total": float(d.total[0, i]),
        }
        for i in range(fd.n_nodes)
    ]


def _opf_json(fd: Feeder, res: OpfResult) -> dict[str, Any]:
    return {
        "cost": res.cost,
        "losses_kw": float(res.losses_kw[0]),
        "substation_p_kw": float(res.substation_p_kw[0]),
        "substation_q_kvar": float(res.substation_q_kvar[0]),
        "relaxation_gap": _num(res.relaxation_gap),
        "vmin_pu": res.vmin_pu,
        "max_branch_loading_pct": _num(_max_loading(res)),
        "dlmp": _dlmp_rows(fd, res),
    }


# ---------------------------------------------------------------------- feeder-day


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
    line_max_i_ka: Annotated[
        float | None, typer.Option("--line-max-i-ka", help=RATING_HELP)
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            help="AC power flow engine: 'pandapower' (one runpp per interval, the reference) or "
            "'pgm' (power-grid-model, every interval in one batch call, within 1e-6 pu)."
        ),
    ] = "pandapower",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run a day of the feeder's own load through the AC power flow and the DSO's check."""
    from transactive.errors import ValidationError  # noqa: PLC0415
    from transactive.network.day import feeder_day_load, run_day  # noqa: PLC0415

    if out is not None:
        _out_target(out)
    fd = _load(feeder, line_max_i_ka)
    try:
        load = feeder_day_load(fd, day=day, scale=scale)
        result = run_day(fd, load.p_kw, load.q_kvar, interval_s=load.interval_s, backend=backend)
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
        typer.echo(_dumps(summary))
        return
    _print_day(summary, feeder)


def _clock(hours: float) -> str:
    h, m = divmod(round(hours * 60.0), 60)
    return f"{h:02d}:{m:02d}"


def _day_summary(fd: Feeder, d: FeederDay, source: str, start: Any) -> dict[str, Any]:
    import numpy as np  # noqa: PLC0415

    from transactive.network.security import ViolationKind  # noqa: PLC0415

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
    trafo_branches = np.flatnonzero(kinds == "trafo")
    trafo_pct: float | None = None
    if trafo_branches.size and np.isfinite(d.branch_loading_pct[:, trafo_branches]).any():
        trafo_pct = float(np.nanmax(d.branch_loading_pct[:, trafo_branches]))
    by_kind = {str(k): int(d.intervals_with(k).size) for k in ViolationKind}
    checked = np.arange(fd.n_nodes) != fd.slack
    failed = d.not_converged
    return {
        "feeder": fd.name,
        "source": source,
        "date": "year-average day" if start is None else f"{start:%Y-%m-%d}",
        "intervals": d.n_intervals,
        "interval_s": d.interval_s,
        "converged_intervals": d.n_converged,
        "not_converged_intervals": [int(t) for t in failed],
        "not_converged_times": [_clock(float(d.time_h[t])) for t in failed],
        "peak_interval": t_peak,
        "peak_time": _clock(float(d.time_h[t_peak])),
        "peak_import_kw": float(d.p_slack_kw[t_peak]),
        "vmin_pu": float(d.vmin_pu[t_low]),
        "vmin_time": _clock(float(d.time_h[t_low])),
        "vmin_node": fd.node_name[node_low],
        "vmin_limit_pu": _num(float(np.min(d.vmin_limit_pu[checked], initial=np.inf))),
        "vmax_pu": float(np.nanmax(d.vmax_pu)),
        "rated": d.rated,
        "max_loading_pct": loading["value_pct"],
        "max_loading_time": loading["time"],
        "max_loading_branch": loading["branch"],
        "max_trafo_loading_pct": trafo_pct,
        "unsupplied_buses": [int(b) for b in fd.unsupplied_buses],
        "unsupplied_load_kw": float(np.sum(fd.unsupplied_load_kw)),
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
    vmin_figure = voltage_day_figure(
        d.time_h,
        {label: d.vmin_pu},
        vmin_limit_pu=summary["vmin_limit_pu"],
        title=f"{fd.name}: minimum node voltage over the day ({summary['date']})",
    )
    return [
        str(save_png(peak_map, out / "feeder_map_peak.png")),
        str(save_png(vmin_figure, out / "vmin_day.png")),
    ]


def _print_day(summary: dict[str, Any], feeder: str) -> None:
    n_all, n_ok = summary["intervals"], summary["converged_intervals"]
    table = Table(title=f"A day of {escape(feeder)}: {escape(summary['date'])}, {n_all} intervals")
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
        f"node {escape(str(summary['vmin_node']))}",
    )
    if summary["max_loading_pct"] is not None:
        table.add_row(
            "highest loading",
            f"{summary['max_loading_pct']:.1f} %",
            summary["max_loading_time"],
            summary["max_loading_branch"],
        )
    else:
        table.add_row("highest loading", UNRATED, "", "no branch has a rating")
    if summary["max_trafo_loading_pct"] is not None:
        table.add_row(
            "highest transformer loading", f"{summary['max_trafo_loading_pct']:.1f} %", "", ""
        )
    if summary["unsupplied_buses"]:
        buses = ", ".join(str(b) for b in summary["unsupplied_buses"])
        table.add_row(
            "unsupplied (cut off)",
            f"{summary['unsupplied_load_kw']:.1f} kW of load",
            "all day",
            f"buses {buses}",
        )
    kinds = ", ".join(f"{k} {n}" for k, n in summary["intervals_by_violation"].items() if n)
    table.add_row("intervals with violations", f"{summary['insecure_intervals']} of {n_all}", "",
                  kinds)  # fmt: skip
    if n_ok < n_all:
        table.add_row("not converged", f"{n_all - n_ok} of {n_all}", "", "left out of totals")
    covered = "day" if n_ok == n_all else f"{n_ok} of {n_all} intervals"
    table.add_row("energy losses", f"{summary['energy_losses_kwh']:.1f} kWh", covered, "")
    table.add_row("energy imported", f"{summary['energy_import_kwh']:.1f} kWh", covered, "")
    console = Console()
    console.print(table)
    if n_ok < n_all:
        console.print(f"not converged at {', '.join(summary['not_converged_times'])}")
    console.print(f"load: {escape(summary['source'])}")
    for path in summary["files"]:
        console.print(f"wrote {escape(path)}")


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
            "and where), the highest loading, the intervals with violations, the intervals that "
            "did not converge (left out of the totals) and the energy losses."
        ),
    )(feeder_day)
