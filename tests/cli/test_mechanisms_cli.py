"""``transactive mechanisms compare``: both tables, strict JSON, and bad input refused (exit 2).

The runs use the default scenario at a small size (6 homes, 3 EVs, 6 HVAC houses, 12 periods of
two hours) so the file stays fast; the figures themselves are checked in
``tests/coordination/test_evaluation.py``.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from transactive.cli import app

runner = CliRunner()
SMALL = ["--homes", "6", "--evs", "3", "--hvac", "6", "--period-s", "7200", "--periods", "12"]
NAMES = (
    "double auction",
    "PowerMatcher tree",
    "truthful TCL market (VCG)",
    "TCL market (uniform)",
    "valley filling (Gan et al.)",
    "charging game (Ma et al.)",
    "day-ahead dual decomposition",
    "day-ahead ADMM",
    "incremental cost consensus",
    "network-constrained EV charging",
)


def test_compare_prints_the_mechanisms_and_the_loss_table():
    # rich sizes its tables to COLUMNS; wide enough that no header wraps
    result = runner.invoke(
        app, ["mechanisms", "compare", "default", *SMALL], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "mechanisms on default" in out
    assert "message loss: rounds to tolerance / final gap" in out
    for column in ("eff.", "gap", "rounds", "msgs", "numbers", "probe gain"):
        assert column in out
    for header in ("0 % loss", "10 % loss", "30 % loss"):
        assert header in out
    for name in NAMES:
        assert name in out
    assert "probe, truthful TCL market (VCG):" in out


def test_json_is_strict_and_carries_every_row():
    args = ["mechanisms", "compare", "default", *SMALL, "--losses", "0,0.3", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output

    def refuse(constant: str) -> float:
        pytest.fail(f"non-JSON constant {constant} in the output")

    report = json.loads(result.stdout, parse_constant=refuse)
    assert report["case"] == "default" and report["losses"] == [0.0, 0.3]
    rows = {row["name"]: row for row in report["rows"]}
    assert tuple(rows) == NAMES
    for row in rows.values():
        assert 0.0 <= row["efficiency"] <= 1.0
        assert set(row["incentive_probe"]) >= {"agent", "best_misreport", "gain", "utility"}
        if row["kind"] == "iterative":
            assert [f["loss_probability"] for f in row["losses"]] == [0.0, 0.3]
            assert row["losses"][0]["rounds_to_tolerance"] == row["rounds"]
        else:
            assert row["losses"] == [] and row["rounds"] == 1
    numbers = [
        row[key]
        for row in rows.values()
        for key in ("achieved", "optimum", "relative_gap", "numbers_per_agent")
    ]
    assert all(isinstance(x, float) for x in numbers)  # finite numbers, or null where not


@pytest.mark.parametrize(
    ("losses", "message"),
    [
        ("0,1.2", "'1.2' is not a probability in [0, 1)"),
        ("0.1,abc", "'abc' is not a number"),
        ("-0.1", "'-0.1' is not a probability in [0, 1)"),
        ("nan", "'nan' is not a probability in [0, 1)"),
    ],
)
def test_a_bad_loss_value_exits_2_with_the_reason(losses, message):
    result = runner.invoke(app, ["mechanisms", "compare", "default", "--losses", losses])
    assert result.exit_code == 2
    assert "--losses" in result.output and message in result.output


def test_an_unknown_scenario_exits_2():
    result = runner.invoke(app, ["mechanisms", "compare", "no-such-scenario"])
    assert result.exit_code == 2
    assert "'no-such-scenario' is neither a built-in scenario" in result.output


def test_a_scenario_without_evs_exits_2_naming_the_option():
    result = runner.invoke(app, ["mechanisms", "compare", "gridsmart"])
    assert result.exit_code == 2
    assert "--evs" in result.output
