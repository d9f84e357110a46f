import json

import pytest
from typer.testing import CliRunner

from transactive.cli import app

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
    assert set(report) == {"clearing_price", "clearing_quantity_kw", "clearing_type", "allocations"}
    assert report["clearing_price"] == pytest.approx(0.07)
    assert report["clearing_type"] == "marginal_seller"
    assert report["clearing_quantity_kw"] == pytest.approx(8.0)
    assert report["allocations"] == [
        {"bidder": "house-1", "power_kw": 5.0},
        {"bidder": "house-2", "power_kw": 3.0},
        {"bidder": "pv", "power_kw": -4.0},
        {"bidder": "genset", "power_kw": -4.0},
    ]


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
    assert report["allocations"][-1]["bidder"] == "<supply>"
    assert report["allocations"][-1]["power_kw"] == pytest.approx(-2.0)


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
