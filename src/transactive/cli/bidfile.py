"""Reading bids from CSV or JSON files: rows of ``bidder, price_per_kwh, power_kw``.

Several rows with one bidder are the breakpoints of that bidder's curve, in order of price; a
bidder with a single row bids one block (buys up to, or sells from, its price). Every problem in a
file (missing columns, values that are not numbers, bad curves) is reported at once, by line and
by bidder.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transactive.curves import BidCurves
from transactive.errors import Problem, Problems, ValidationError

__all__ = ["BidFile", "parse_bids", "read_bids"]

COLUMNS = ("bidder", "price_per_kwh", "power_kw")


@dataclass(frozen=True)
class BidFile:
    """The curves of a bid file and the bidder of each curve, in order of first appearance."""

    bidders: tuple[str, ...]
    curves: BidCurves


def read_bids(
    path: Path, *, price_floor: float | None = None, price_cap: float | None = None
) -> BidFile:
    """Read a bid file; the format follows the suffix (``.json``, else CSV).

    With the market's limits given, bids outside them are reported with the file's other problems.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = f"cannot be read: {getattr(error, 'strerror', None) or error}"
        raise ValidationError([Problem("file", reason)], subject=f"bid file {path}") from None
    fmt = "json" if path.suffix.lower() == ".json" else "csv"
    return parse_bids(text, fmt=fmt, name=str(path), price_floor=price_floor, price_cap=price_cap)


def parse_bids(
    text: str,
    *,
    fmt: str,
    name: str = "bids",
    price_floor: float | None = None,
    price_cap: float | None = None,
) -> BidFile:
    """Parse bid rows from CSV or JSON text (``fmt`` is ``csv`` or ``json``)."""
    problems = Problems(subject=f"bid file {name}")
    rows = _json_rows(text, problems) if fmt == "json" else _csv_rows(text, problems)
    problems.raise_if_any()
    bidders: dict[str, int] = {}
    curve, prices, powers = [], [], []
    for where, row in rows:
        bidder = str(row.get("bidder", "")).strip()
        price = _number(row.get("price_per_kwh"))
        power = _number(row.get("power_kw"))
        if not bidder:
            problems.add("bidder", "is empty", [where])
        if price is None:
            problems.add(
                "price_per_kwh", f"not a finite number: {row.get('price_per_kwh')!r}", [where]
            )
        if power is None:
            problems.add("power_kw", f"not a finite number: {row.get('power_kw')!r}", [where])
        if bidder and price is not None and power is not None:
            curve.append(bidders.setdefault(bidder, len(bidders)))
            prices.append(price)
            powers.append(power)
    if not rows:
        problems.add("rows", "the file holds no bids")
    names = tuple(bidders)
    if not names:
        problems.raise_if_any()
    try:  # check the curves of the good rows too, so one run reports every problem
        curves = BidCurves.from_points(
            np.array(curve, dtype=np.int64), prices, powers, n_curves=len(names), labels=list(names)
        )
    except ValidationError as error:
        problems.found.extend(error.problems)
    if price_floor is not None and price_cap is not None:
        price_of = np.array(prices)
        owner = np.array(curve, dtype=np.int64)
        for bad, reason in (
            (price_of < price_floor, f"below the market's price floor {price_floor}"),
            (price_of > price_cap, f"above the market's price cap {price_cap}"),
        ):
            offenders = np.unique(owner[bad])
            if offenders.size:
                problems.add("price_per_kwh", reason, [names[i] for i in offenders])
    problems.raise_if_any()
    return BidFile(names, curves)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _csv_rows(text: str, problems: Problems) -> list[tuple[str, dict[str, Any]]]:
    lines = [
        (number, line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        problems.add("file", "is empty")
        return []
    reader = csv.DictReader(io.StringIO("\n".join(line for _, line in lines)))
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        problems.add("header", f"missing column(s) {', '.join(missing)}; found {', '.join(header)}")
        return []
    return [(f"line {number}", row) for (number, _), row in zip(lines[1:], reader, strict=True)]


def _json_rows(text: str, problems: Problems) -> list[tuple[str, dict[str, Any]]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        problems.add("file", f"is not valid JSON: {error.msg} at line {error.lineno}")
        return []
    if isinstance(data, dict) and "bids" in data:
        data = data["bids"]
    if not isinstance(data, list):
        problems.add("file", "must be a list of bid rows, or an object with a 'bids' list")
        return []
    rows = []
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            problems.add(
                "row", "must be an object with bidder, price_per_kwh, power_kw", [f"row {i}"]
            )
            continue
        missing = [c for c in COLUMNS if c not in row]
        if missing:
            problems.add("row", f"missing {', '.join(missing)}", [f"row {i}"])
            continue
        rows.append((f"row {i}", row))
    return rows
