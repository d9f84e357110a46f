"""``transactive powerflow`` and ``transactive opf``: run a feeder from the command line.

A face only: it parses arguments, calls :mod:`transactive.network` and prints a rich table or
one JSON object. A bad feeder exits with status 1 and the ValidationError's message.
"""

from __future__ import annotations

import json
import math
from enum import StrEnum
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from transactive.errors import ValidationError
from transactive.network.feeders import Feeder, load_feeder
from transactive.network.opf import OpfModel, OpfResult
from transactive.network.powerflow import run_powerflow

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


def powerflow(
    feeder: Annotated[str, typer.Argument(help=FEEDER_HELP)],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run an AC power flow (pandapower) with the feeder's own loads and generation."""
    fd = _load(feeder)
    res = run_powerflow(fd)
    if not res.converged:
        typer.echo(f"power flow of {feeder!r} did not converge", err=True)
        raise typer.Exit(code=2)
    names = fd.node_name
    if as_json:
        out = {
            "losses_kw": res.losses_kw,
            "vmin_pu": res.vmin_pu,
            "vmin_bus": names[res.vmin_bus],
            "vmax_pu": res.vmax_pu,
            "vmax_bus": names[res.vmax_bus],
            "max_line_loading_pct": _num(res.max_line_loading_pct),
        }
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


def register(app: typer.Typer) -> None:
    """Add the ``powerflow`` and ``opf`` commands to ``app``."""
    app.command("powerflow")(powerflow)
    app.command("opf")(opf)
