"""``transactive clear`` and ``transactive demo``: clear a bid file and print the result.

A face only: it reads the bid file (:mod:`transactive.cli.bidfile`), calls
:func:`transactive.market.clear` and prints a rich table or one strict JSON object. The numerical
modules are imported inside the commands, so ``transactive --help`` starts without them. Names and
paths are printed as they are (never read as rich markup).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from transactive.cli.bidfile import BidFile
    from transactive.errors import ValidationError
    from transactive.market import ClearingResult, Supply

__all__ = ["register"]

#: Shown for the supply in tables: ``transactive.cli.bidfile.SUPPLY_NAME``, which no bidder may
#: take (spelled here so that registering the commands does not import numpy).
SUPPLY_LABEL = "<supply>"


def register(app: typer.Typer) -> None:
    """Add the market commands to the console app."""
    app.command("clear")(clear_command)
    app.command("demo")(demo_command)


def clear_command(
    file: Annotated[
        Path,
        typer.Argument(
            help="Bids as CSV or JSON (.json): rows of bidder, price_per_kwh, power_kw. Several "
            "rows of one bidder (consecutive) are its curve's breakpoints sorted by price; one "
            "row is a block (positive power buys up to the price, negative sells from it). "
            "CSV comments (lines starting with #) go above the header; below it a name starting "
            "with # is quoted.",
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
        float | None,
        typer.Option(
            help="Rating of that supply (kW); unlimited when not given.", show_default=False
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one strict JSON object: the price, quantity, type and rule, the price "
            "range, fills, shortage and surplus, the supply's draw and the allocations "
            "[{bidder, power_kw, role}].",
        ),
    ] = False,
) -> None:
    """Clear a uniform-price double auction over the bids in FILE and print the result."""
    from transactive.cli.bidfile import read_bids  # noqa: PLC0415 (light start-up)
    from transactive.errors import Problem, ValidationError  # noqa: PLC0415 (light start-up)
    from transactive.market import Supply, clear  # noqa: PLC0415 (light start-up)

    try:
        supply = None
        if supply_price is not None:
            capacity = math.inf if supply_capacity is None else supply_capacity
            supply = Supply(supply_price, capacity)
        elif supply_capacity is not None:
            raise ValidationError(
                [Problem("--supply-capacity", "needs --supply-price (the supply's price)")],
                subject="options",
            )
        limits_ok = math.isfinite(price_floor) and math.isfinite(price_cap)
        if limits_ok and price_floor < price_cap:  # else clear() names the bad limits
            bids = read_bids(file, price_floor=price_floor, price_cap=price_cap)
        else:
            bids = read_bids(file)
        result = clear(bids.curves, price_cap=price_cap, price_floor=price_floor, supply=supply)
    except ValidationError as error:
        _fail(error)
    _print(bids, result, supply, as_json=as_json)


def demo_command() -> None:
    """Clear the sample 5-minute feeder market shipped with the package and print the result."""
    from importlib import resources  # noqa: PLC0415 (light start-up)

    from transactive.cli.bidfile import parse_bids  # noqa: PLC0415 (light start-up)
    from transactive.market import Supply, clear  # noqa: PLC0415 (light start-up)

    text = resources.files("transactive.cli").joinpath("sample_market.csv").read_text("utf-8")
    bids = parse_bids(text, fmt="csv", name="sample_market.csv")
    supply = Supply(price_per_kwh=0.065, capacity_kw=45.0)
    result = clear(bids.curves, price_cap=1.0, price_floor=0.0, supply=supply)
    Console().print(
        Text.assemble(
            ("Sample feeder market", "bold"),
            f": {len(bids.bidders)} bidders (HVAC, EV, water heater, PV, battery, genset, "
            "unresponsive homes) and the substation selling up to "
            f"{supply.capacity_kw:g} kW at {supply.price_per_kwh:g}/kWh.",
        )
    )
    _print(bids, result, supply, as_json=False)


def _fail(error: ValidationError) -> NoReturn:
    """Print a ValidationError (as plain text: names may hold brackets) and exit with 1."""
    Console(stderr=True, soft_wrap=True).print(
        Text.assemble(("error: ", "bold red"), str(error)), highlight=False
    )
    raise typer.Exit(code=1)


def _role(power_kw: float) -> str:
    return "buys" if power_kw > 0 else "sells" if power_kw < 0 else "-"


def _report(bids: BidFile, result: ClearingResult, supply: Supply | None) -> dict[str, Any]:
    """What the table shows, as JSON-ready values (every number finite; no limit is null)."""
    by_bidder = result.allocation_by_id()
    supply_part = None
    if supply is not None:
        capacity = float(supply.capacity_kw)
        supply_part = {
            "price_per_kwh": float(supply.price_per_kwh),
            "capacity_kw": capacity if math.isfinite(capacity) else None,  # null: unlimited
            "power_kw": result.supply_kw,
        }
    return {
        "clearing_price": result.clearing_price,
        "clearing_quantity_kw": result.clearing_quantity_kw,
        "clearing_type": result.clearing_type.value,
        "price_rule": result.price_rule,
        "price_range": None if result.price_range is None else list(result.price_range),
        "buyer_fill": result.buyer_fill,
        "seller_fill": result.seller_fill,
        "shortage_kw": result.shortage_kw,
        "surplus_kw": result.surplus_kw,
        "price_cap": result.price_cap,
        "price_floor": result.price_floor,
        "supply": supply_part,
        "allocations": [
            {"bidder": bidder, "power_kw": by_bidder[bidder], "role": _role(by_bidder[bidder])}
            for bidder in bids.bidders
        ],
    }


def _print(bids: BidFile, result: ClearingResult, supply: Supply | None, *, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(_report(bids, result, supply), allow_nan=False, ensure_ascii=False))
        return
    console = Console()
    summary = Table(show_header=False, box=None)
    summary.add_row("clearing price", f"{result.clearing_price:.6g} /kWh")
    summary.add_row("traded power", f"{result.clearing_quantity_kw:.6g} kW")
    summary.add_row("clearing type", result.clearing_type.value)
    summary.add_row("price chosen by", Text(result.price_rule))
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
    if supply is not None:
        summary.add_row("supply draw", f"{result.supply_kw:.6g} kW")
    console.print(summary)
    table = Table("bidder", "power_kw", "role")
    for bidder, power in result.allocation_by_id().items():
        table.add_row(Text(bidder), f"{power:.4f}", _role(power))
    if supply is not None:
        delivered = 0.0 - result.supply_kw  # the supply sells what it delivers; never -0.0
        table.add_row(SUPPLY_LABEL, f"{delivered:.4f}", _role(delivered))
    console.print(table)
