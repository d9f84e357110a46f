import json
import math
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from transactive import BidCurves
from transactive.cli import app
from transactive.market import clear

runner = CliRunner()


@pytest.fixture
def bids_csv(tmp_path):
    path = tmp_path / "bids.csv"
    path.write_text(
        "bidder,price_per_kwh,power_kw\n"
        "house-1,0.10,5\n"
        "house-2,0.08,3\n"
        "pv,0.05,-4\n"
        "genset,0.07,-6\n"
    )
    return path


def test_clear_prints_the_result_as_json(bids_csv):
    result = runner.invoke(app, ["clear", str(bids_csv), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["clearing_price"] == pytest.approx(0.07)
    assert report["clearing_type"] == "marginal_seller"
    assert report["clearing_quantity_kw"] == pytest.approx(8.0)
    assert report["price_rule"] == "crossing of demand and supply"
    assert report["price_range"] is None
    assert report["seller_fill"] == pytest.approx(4.0 / 6.0)
    assert report["shortage_kw"] == 0.0 and report["surplus_kw"] == 0.0
    assert report["supply"] is None
    assert report["allocations"] == [
        {"bidder": "house-1", "power_kw": 5.0, "role": "buys"},
        {"bidder": "house-2", "power_kw": 3.0, "role": "buys"},
        {"bidder": "pv", "power_kw": -4.0, "role": "sells"},
        {"bidder": "genset", "power_kw": -4.0, "role": "sells"},
    ]


def test_json_carries_what_the_table_shows_and_is_strict(tmp_path):
    # unresponsive demand beyond the supply: the price goes to the cap and demand is unserved
    path = tmp_path / "short.csv"
    path.write_text("bidder,price_per_kwh,power_kw\nhomes,1.0,50\nev,0.4,10\n")
    args = ["clear", str(path), "--supply-price", "0.05", "--supply-capacity", "35"]
    table = runner.invoke(app, args)
    assert table.exit_code == 0, table.output
    assert "unserved demand" in table.stdout and "supply draw" in table.stdout
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    # strict JSON: no NaN or Infinity anywhere
    report = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert report["clearing_type"] == "failure"
    assert report["clearing_price"] == 1.0
    assert report["shortage_kw"] == pytest.approx(15.0)  # the EV does not buy at the cap
    assert report["price_rule"] == "price cap: demand exceeds supply"
    assert report["supply"] == {"price_per_kwh": 0.05, "capacity_kw": 35.0, "power_kw": 35.0}
    # an unlimited supply is null, not Infinity
    unlimited = runner.invoke(app, ["clear", str(path), "--supply-price", "0.05", "--json"])
    assert json.loads(unlimited.stdout)["supply"]["capacity_kw"] is None


def test_a_price_range_is_in_the_json(tmp_path):
    path = tmp_path / "range.csv"
    path.write_text("bidder,price_per_kwh,power_kw\nbuyer,0.10,5\nseller,0.05,-5\n")
    report = json.loads(runner.invoke(app, ["clear", str(path), "--json"]).stdout)
    assert report["clearing_type"] == "price_range"
    assert report["price_range"] == pytest.approx([0.05, 0.10])
    assert "midpoint" in report["price_rule"]


def test_a_supply_capacity_without_a_supply_price_is_an_error(bids_csv):
    result = runner.invoke(app, ["clear", str(bids_csv), "--supply-capacity", "5"])
    assert result.exit_code == 1
    assert "--supply-capacity" in result.output and "needs --supply-price" in result.output


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--supply-price", "nan"], "supply: 2 problems"),
        (["--supply-price", "0.1", "--supply-capacity", "-3"], "non-negative"),
        (["--price-cap", "nan"], "finite"),
        (["--price-floor", "2"], "must exceed price_floor"),
    ],
)
def test_bad_options_exit_with_a_message_not_a_traceback(bids_csv, options, expected):
    result = runner.invoke(app, ["clear", str(bids_csv), *options])
    assert result.exit_code == 1
    assert expected in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_rows_of_one_bidder_form_one_curve_and_json_files_work(tmp_path):
    path = tmp_path / "bids.json"
    rows = [
        {"bidder": "ev", "price_per_kwh": 0.0, "power_kw": 10},
        {"bidder": "ev", "price_per_kwh": 1.0, "power_kw": 0},
        {"bidder": "pv", "price_per_kwh": 0.0, "power_kw": 0},
        {"bidder": "pv", "price_per_kwh": 1.0, "power_kw": -10},
    ]
    path.write_text(json.dumps({"bids": rows}))
    result = runner.invoke(app, ["clear", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["clearing_price"] == pytest.approx(0.5)
    assert report["clearing_type"] == "exact"
    assert [a["power_kw"] for a in report["allocations"]] == pytest.approx([5.0, -5.0])


def test_price_limits_and_supply_options(bids_csv):
    result = runner.invoke(
        app,
        [
            "clear",
            str(bids_csv),
            "--json",
            "--price-cap",
            "0.5",
            "--supply-price",
            "0.06",
            "--supply-capacity",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["supply"]["power_kw"] == pytest.approx(2.0)  # the supply delivers 2 kW
    assert report["price_cap"] == 0.5
    assert {a["bidder"] for a in report["allocations"]} == {"house-1", "house-2", "pv", "genset"}


def test_table_output(bids_csv):
    result = runner.invoke(app, ["clear", str(bids_csv)])
    assert result.exit_code == 0
    assert "clearing price" in result.stdout and "genset" in result.stdout


def test_a_bad_file_exits_non_zero_with_every_problem_and_no_traceback(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(
        "bidder,price_per_kwh,power_kw\na,0.10,5\na,0.05,6\nb,cheap,3\nc,0.2,nan\n,0.1,1\nd,5.0,1\n"
    )
    result = runner.invoke(app, ["clear", str(path)])
    assert result.exit_code != 0
    output = result.output
    assert "Traceback" not in output
    assert "line 4" in output and "cheap" in output  # not a number
    assert "line 5" in output  # NaN power
    assert "line 6" in output  # no bidder
    assert "not sorted" in output and "(entry a)" in output
    assert "above the market's price cap 1.0" in output and "(entry d)" in output


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("missing.csv", None, "cannot be read"),
        ("cols.csv", "who,price,power\na,1,2\n", "missing column"),
        ("broken.json", "{not json", "not valid JSON"),
        ("empty.csv", "", "empty"),
    ],
)
def test_unreadable_files_are_reported(tmp_path, name, text, expected):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    result = runner.invoke(app, ["clear", str(path)])
    assert result.exit_code != 0
    assert expected in result.output
    assert "Traceback" not in result.output


def test_demo_clears_the_sample_market():
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert "clearing price" in result.stdout


@pytest.mark.parametrize("command", [[], ["clear"], ["demo"]])
def test_help_on_every_command(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.stdout


def negative_zeros(value: object, path: str = "$") -> list[str]:
    """Where a JSON value holds -0.0."""
    if isinstance(value, float):
        return [path] if value == 0.0 and math.copysign(1.0, value) < 0 else []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in negative_zeros(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in negative_zeros(v, f"{path}[{i}]")]
    return []


@pytest.mark.parametrize(
    ("rows", "options"),
    [
        ("h1,0.2,5\nh2,0.1,3\n", []),  # demand only: buyer_fill was -0.0, shown as "-0 %"
        ("g1,0.2,-5\n", []),  # supply only
        ("h1,0.2,5\n", ["--supply-price", "0.5"]),  # a supply that delivers nothing
        ("h1,0.2,5\ng1,0.3,-5\n", []),  # no crossing
    ],
)
def test_no_negative_zero_in_the_result_or_the_output(tmp_path, rows, options):
    path = tmp_path / "bids.csv"
    path.write_text("bidder,price_per_kwh,power_kw\n" + rows)
    result = runner.invoke(app, ["clear", str(path), "--json", *options])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert negative_zeros(report) == []
    assert "-0.0" not in result.stdout
    table = runner.invoke(app, ["clear", str(path), *options])
    assert table.exit_code == 0, table.output
    assert re.search(r"(?<![\w.])-0(?![.\d]*[1-9])", table.stdout) is None, table.stdout


def test_a_demand_only_clearing_serves_no_marginal_block():
    bids = BidCurves.from_points(np.array([0, 1]), [0.2, 0.1], [5.0, 3.0], n_curves=2)
    result = clear(bids, price_cap=1.0, price_floor=0.0)
    numbers = [
        result.clearing_price,
        result.clearing_quantity_kw,
        result.buyer_fill,
        result.seller_fill,
        result.supply_kw,
        result.shortage_kw,
        result.surplus_kw,
        *result.allocation_kw,
        *result.marginal_fill,
    ]
    assert all(math.copysign(1.0, x) > 0 for x in numbers if x == 0.0), numbers
    assert result.buyer_fill == 0.0 and result.clearing_quantity_kw == 0.0
