"""``transactive clear`` and ``transactive demo``: clear a bid file and print the result."""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from transactive.cli.bidfile import BidFile, parse_bids, read_bids
from transactive.errors import ValidationError
from transactive.market import ClearingResult, Supply, clear

__all__ = ["register"]

SUPPLY_NAME = "<supply>"


def register(app: typer.Typer) -> None:
    """Add the market commands to the console app."""
    app.command("clear")(clear_command)
    app.command("demo")(demo_command)


def clear_command(
    file: Annotated[
        Path,
        typer.Argument(
            help="Bids as CSV or JSON (.json): rows of bidder, price_per_kwh, power_kw. Several "
            "rows of one bidder are its curve's breakpoints sorted by price; one row is a block "
            "(positive power buys up to the price, negative sells from it).",
            show_default=False,
        ),
    ],
    price_cap: Annotated[float, typer.Option(help="Highest price (currency/kWh).")] = 1.0,
    price_floor: Annotated[float, typer.Option(help="Lowest price (currency/kWh).")] = 0.0,
    supply_price: Annotated[
        float | None,
        typer.Option(help="Add a fixed-price supply (a feeder buying at this wholesale price)."),
    ] = None,
    supply_capacity: Annotated[
        float, typer.Option(help="Rating of that supply (kW); unlimited by default.")
    ] = math.inf,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON object: clearing_price, clearing_quantity_kw, clearing_type, "
            "allocations [{bidder, power_kw}].",
        ),
    ] = False,
) -> None:
    """Clear a uniform-price double auction over the bids in FILE and print the result."""
    supply = None if supply_price is None else Supply(supply_price, supply_capacity)
    try:
        bids = read_bids(file, price_floor=price_floor, price_cap=price_cap)
        result = clear(bids.curves, price_cap=price_cap, price_floor=price_floor, supply=supply)
    except ValidationError as error:
        Console(stderr=True).print(f"[bold red]error:[/] {error}", markup=True, highlight=False)
        raise typer.Exit(code=1) from None
    _print(bids, result, as_json=as_json)


def demo_command() -> None:
    """Clear the sample 5-minute feeder market shipped with the package and print the result."""
    text = resources.files("transactive.cli").joinpath("sample_market.csv").read_text("utf-8")
    bids = parse_bids(text, fmt="csv", name="sample_market.csv")
    supply = Supply(price_per_kwh=0.065, capacity_kw=45.0)
    result = clear(bids.curves, price_cap=1.0, price_floor=0.0, supply=supply)
    console = Console()
    console.print(
        f"[bold]Sample feeder market[/]: {len(bids.bidders)} bidders (HVAC, EV, water heater, PV, "
        "battery, genset, unresponsive homes) and the substation selling up to "
        f"{supply.capacity_kw:g} kW at {supply.price_per_kwh:g}/kWh.",
        highlight=False,
    )
    _print(bids, result, as_json=False)


def _report(bids: BidFile, result: ClearingResult) -> dict[str, Any]:
    allocations = [
        {"bidder": bidder, "power_kw": float(power)}
        for bidder, power in zip(bids.bidders, result.allocation_kw, strict=True)
    ]
    if result.supply_kw or SUPPLY_NAME not in bids.bidders:
        allocations.append({"bidder": SUPPLY_NAME, "power_kw": -result.supply_kw})
    return {
        "clearing_price": result.clearing_price,
        "clearing_quantity_kw": result.clearing_quantity_kw,
        "clearing_type": result.clearing_type.value,
        "allocations": allocations,
    }


def _print(bids: BidFile, result: ClearingResult, *, as_json: bool) -> None:
    if as_json:
        report = _report(bids, result)
        if result.supply_kw == 0.0:
            report["allocations"] = [a for a in report["allocations"] if a["bidder"] != SUPPLY_NAME]
        typer.echo(json.dumps(report))
        return
    console = Console()
    summary = Table(show_header=False, box=None)
    summary.add_row("clearing price", f"{result.clearing_price:.6g} /kWh")
    summary.add_row("traded power", f"{result.clearing_quantity_kw:.6g} kW")
    summary.add_row("clearing type", result.clearing_type.value)
    summary.add_row("price chosen by", result.price_rule)
    if result.price_range is not None:
        summary.add_row(
            "clearing prices", f"{result.price_range[0]:.6g} to {result.price_range[1]:.6g}"
        )
    summary.add_row("buyers' marginal blocks served", f"{100 * result.buyer_fill:.4g} %")
    summary.add_row("sellers' marginal blocks taken", f"{100 * result.seller_fill:.4g} %")
    if result.shortage_kw:
        summary.add_row("unserved demand", f"{result.shortage_kw:.6g} kW")
    if result.surplus_kw:
        summary.add_row("supply not taken", f"{result.surplus_kw:.6g} kW")
    console.print(summary)
    table = Table("bidder", "power_kw", "role")
    for bidder, power in zip(bids.bidders, result.allocation_kw, strict=True):
        role = "buys" if power > 0 else "sells" if power < 0 else "-"
        table.add_row(bidder, f"{power:.4f}", role)
    if result.supply_kw:
        table.add_row(
            SUPPLY_NAME, f"{-result.supply_kw:.4f}", "sells" if result.supply_kw > 0 else "buys"
        )
    console.print(table)
