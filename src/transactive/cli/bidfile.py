"""Reading bids from CSV or JSON files: rows of ``bidder, price_per_kwh, power_kw``.

Several rows with one bidder are the breakpoints of that bidder's curve, in order of price; a
bidder with a single row bids one block (buys up to, or sells from, its price). The bidder names
become the curves' ids (:meth:`transactive.curves.BidCurves.with_ids`), so a clearing's
allocations are keyed by them.

Every problem in a file is reported at once, by line (CSV) or by row and line (JSON), never as a
traceback, and no row is dropped without a word:

- a file saved by Excel as "CSV UTF-8" starts with a byte-order mark, which is read as such;
- a field may be quoted (RFC 4180) and hold commas; a row with more or fewer fields than the
  header, a quote that is never closed, and a name holding a line break or another control
  character are reported;
- a bidder's rows must be consecutive: the same name again after other bidders' rows is
  reported (two bidders sharing a name would otherwise merge into one curve), as is a row that
  repeats an earlier row of its bidder exactly (read as two breakpoints it would turn a block bid
  into a flat, unresponsive one);
- a JSON ``null``, number or list as a bidder, a key given twice in one JSON object, and JSON
  nested too deeply are reported;
- the name ``<supply>`` is reserved for the market's supply, which the command line adds.

Comments are lines starting with ``#`` above the header (a preamble); blank lines are skipped
anywhere. Below the header every line is a bid row, and one starting with ``#`` is reported rather
than guessed at: dropped as a comment it could make a bidder named ``#2`` vanish, read as a row it
could make a row the user meant to switch off bid. A name starting with ``#`` is written quoted
(``"#2",0.1,3``); JSON has no comments, so there ``"#2"`` is simply a name.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transactive.curves import BidCurves
from transactive.errors import Problem, Problems, ValidationError

__all__ = ["SUPPLY_NAME", "BidFile", "parse_bids", "read_bids"]

COLUMNS = ("bidder", "price_per_kwh", "power_kw")
#: The name under which results show the market's supply; no bidder may take it.
SUPPLY_NAME = "<supply>"
#: How much of a bad value an error message repeats.
_SHOWN_CHARS = 40
#: Where csv's reader ends a line (``io.StringIO(newline="")`` splits at these only).
_LINE_BREAK = re.compile(r"(\r\n|\r|\n)")


@dataclass(frozen=True)
class BidFile:
    """The curves of a bid file and the bidder of each curve, in order of first appearance.

    ``curves.ids`` are the bidders' names, so ``curves.ids[i] == bidders[i]``.
    """

    bidders: tuple[str, ...]
    curves: BidCurves


@dataclass(frozen=True)
class _Row:
    where: str  # "line 7" or "row 3 (line 7)"
    bidder: Any
    price: Any
    power: Any


def read_bids(
    path: Path, *, price_floor: float | None = None, price_cap: float | None = None
) -> BidFile:
    """Read a bid file; the format follows the suffix (``.json``, else CSV).

    The text must be UTF-8 (a leading byte-order mark is allowed). With the market's limits given,
    bids outside them are reported with the file's other problems.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        reason = (
            f"is not UTF-8 text (byte {error.start}): save it as UTF-8, e.g. Excel's 'CSV UTF-8'"
        )
        raise ValidationError([Problem("file", reason)], subject=f"bid file {path}") from None
    except OSError as error:
        reason = f"cannot be read: {error.strerror or error}"
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
    """Parse bid rows from CSV or JSON text (``fmt`` is ``csv`` or ``json``).

    Raises
    ------
    ValidationError
        Naming every bad row (by line) and every bad curve (by bidder).

    """
    problems = Problems(subject=f"bid file {name}")
    if fmt not in ("csv", "json"):
        problems.add("fmt", f"must be 'csv' or 'json', got {fmt!r}")
        problems.raise_if_any()
    text = text.removeprefix("\ufeff")  # Excel's "CSV UTF-8" starts with a byte-order mark
    rows = _json_rows(text, problems) if fmt == "json" else _csv_rows(text, problems)
    problems.raise_if_any()
    if not rows:
        problems.add("rows", "the file holds no bids")
        problems.raise_if_any()

    bidders: dict[str, int] = {}
    first_seen: dict[str, str] = {}
    seen_points: dict[tuple[str, float, float], str] = {}
    previous: str | None = None
    curve: list[int] = []
    prices: list[float] = []
    powers: list[float] = []
    for row in rows:
        bidder = _bidder(row, problems)
        price = _number(row.price)
        power = _number(row.power)
        if price is None:
            problems.add("price_per_kwh", f"not a finite number: {_shown(row.price)}", [row.where])
        if power is None:
            problems.add("power_kw", f"not a finite number: {_shown(row.power)}", [row.where])
        if bidder is None:
            previous = None
            continue
        if bidder in bidders and bidder != previous:
            problems.add(
                "bidder",
                f"{bidder!r} was already bidding at {first_seen[bidder]} and other bidders' rows "
                "come between: a bidder's rows must be consecutive (or two bidders share a name)",
                [row.where],
            )
        previous = bidder
        if price is None or power is None:
            continue
        point = (bidder, price, power)
        if point in seen_points:
            problems.add(
                "row",
                f"repeats {seen_points[point]} (bidder {bidder!r}, same price and power): "
                "delete one of them",
                [row.where],
            )
            continue
        seen_points[point] = row.where
        first_seen.setdefault(bidder, row.where)
        curve.append(bidders.setdefault(bidder, len(bidders)))
        prices.append(price)
        powers.append(power)

    names = tuple(bidders)
    if not names:
        problems.raise_if_any()
        problems.add("rows", "the file holds no bids")
        problems.raise_if_any()
    curves = None
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
    assert curves is not None
    return BidFile(names, curves.with_ids(list(names)))


# ---------------------------------------------------------------------- values


def _bidder(row: _Row, problems: Problems) -> str | None:
    """The row's bidder name, stripped, or None with the reason recorded."""
    raw = row.bidder
    if raw is None:
        problems.add("bidder", "is null: every row needs its bidder's name", [row.where])
        return None
    if not isinstance(raw, str):
        kind = type(raw).__name__
        problems.add("bidder", f"must be a name (a string), got {kind} {_shown(raw)}", [row.where])
        return None
    bidder = raw.strip()
    if not bidder:
        problems.add("bidder", "is empty", [row.where])
        return None
    if any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in bidder):
        problems.add(
            "bidder",
            f"{bidder!r} holds a line break or another control character: names are one line",
            [row.where],
        )
        return None
    if bidder == SUPPLY_NAME:
        problems.add(
            "bidder",
            f"{SUPPLY_NAME!r} is the market's supply (--supply-price): give this bidder "
            "another name",
            [row.where],
        )
        return None
    return bidder


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _shown(value: Any) -> str:
    """A value as an error message repeats it: its repr, shortened."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


# ---------------------------------------------------------------------- CSV


def _without_preamble(text: str) -> str:
    """Blank the comment and blank lines above the header, keeping line numbers."""
    parts = _LINE_BREAK.split(text)  # lines at even places, their line breaks between
    for i in range(0, len(parts), 2):
        if parts[i].strip() and not parts[i].lstrip().startswith("#"):
            break
        parts[i] = ""
    return "".join(parts)


def _records(text: str, problems: Problems) -> Iterator[tuple[int, list[str], bool]]:
    """CSV records with the line each starts on and whether that line starts with ``#``.

    Comment lines above the header and blank records are skipped; bad quoting is reported. A
    record always starts at the start of a line, so a ``#`` there is outside any quoted field.
    """
    body = _without_preamble(text)
    # the lines as csv counts them (io.StringIO with newline="" splits at \r\n, \r and \n only)
    lines = _LINE_BREAK.split(body)[::2]
    reader = csv.reader(io.StringIO(body, newline=""), strict=True)
    start = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            problems.add(
                "quoting",
                f"{error}: a field holding a comma, a quote or a line break must be quoted, "
                "a quote inside it doubled, and every quote closed",
                [f"line {start}"],
            )
            return
        if any(cell.strip() for cell in cells):
            yield start, cells, lines[start - 1].lstrip().startswith("#")
        start = reader.line_num + 1


def _csv_rows(text: str, problems: Problems) -> list[_Row]:
    records = _records(text, problems)
    first = next(records, None)
    if first is None:
        if not problems:
            problems.add("file", "is empty")
        return []
    header_line, header_cells, _ = first
    header = [h.strip() for h in header_cells]
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        problems.add("header", f"names column(s) {', '.join(twice)} twice", [f"line {header_line}"])
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        problems.add(
            "header",
            f"missing column(s) {', '.join(missing)}; found {', '.join(header)}",
            [f"line {header_line}"],
        )
    if twice or missing:
        return []
    column = {c: header.index(c) for c in COLUMNS}
    rows = []
    for line, cells, hashed in records:
        where = f"line {line}"
        if hashed:
            problems.add(
                "row",
                "starts with '#' below the header: comments go above the header only. A bidder "
                "whose name starts with '#' is written quoted (\"#2\",0.1,3); a row you do not "
                "want is deleted",
                [where],
            )
            continue
        if len(cells) != len(header):
            problems.add(
                "row",
                f"has {len(cells)} fields but the header has {len(header)} (a name holding a "
                "comma must be quoted)",
                [where],
            )
            continue
        rows.append(
            _Row(
                where,
                cells[column["bidder"]],
                cells[column["price_per_kwh"]],
                cells[column["power_kw"]],
            )
        )
    return rows


# ---------------------------------------------------------------------- JSON


class _DuplicateKeyError(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKeyError(key)
        out[key] = value
    return out


def _json_rows(text: str, problems: Problems) -> list[_Row]:
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as error:
        problems.add("file", f"is not valid JSON: {error.msg} at line {error.lineno}")
        return []
    except _DuplicateKeyError as error:
        problems.add("file", f"gives the key {str(error)!r} twice in one object")
        return []
    except RecursionError:
        problems.add("file", "is JSON nested too deeply: bid rows are flat objects in one list")
        return []
    lines = _row_lines(text)
    if isinstance(data, dict):
        if "bids" not in data:
            problems.add("file", "must be a list of bid rows, or an object with a 'bids' list")
            return []
        data = data["bids"]
    if not isinstance(data, list):
        problems.add("file", "must be a list of bid rows, or an object with a 'bids' list")
        return []
    rows = []
    for i, row in enumerate(data):
        where = f"row {i}" if lines is None else f"row {i} (line {lines[i]})"
        if not isinstance(row, dict):
            problems.add("row", "must be an object with bidder, price_per_kwh, power_kw", [where])
            continue
        missing = [c for c in COLUMNS if c not in row]
        if missing:
            problems.add("row", f"missing {', '.join(missing)}", [where])
            continue
        rows.append(_Row(where, row["bidder"], row["price_per_kwh"], row["power_kw"]))
    return rows


def _row_lines(text: str) -> list[int] | None:
    """The line on which each bid row of a valid JSON document starts (None if not a list)."""
    decoder = json.JSONDecoder()
    try:
        start = _skip_space(text, 0)
        if text.startswith("{", start):
            value = _value_of_key(text, start, "bids", decoder)
            if value is None:
                return None
            start = value
        if not text.startswith("[", start):
            return None
        positions = []
        i = _skip_space(text, start + 1)
        while text[i] != "]":
            positions.append(i)
            _, i = decoder.raw_decode(text, i)
            i = _skip_space(text, i)
            if text[i] == ",":
                i = _skip_space(text, i + 1)
    except (RecursionError, ValueError, IndexError):
        return None
    return [text.count("\n", 0, p) + 1 for p in positions]


def _value_of_key(text: str, start: int, key: str, decoder: json.JSONDecoder) -> int | None:
    """Where the value of ``key`` starts in the JSON object at ``start``."""
    i = _skip_space(text, start + 1)
    while text[i] != "}":
        name, i = decoder.raw_decode(text, i)
        i = _skip_space(text, _skip_space(text, i) + 1)  # past the colon
        if name == key:
            return i
        _, i = decoder.raw_decode(text, i)
        i = _skip_space(text, i)
        if text[i] == ",":
            i = _skip_space(text, i + 1)
    return None


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i
