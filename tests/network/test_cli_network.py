"""The ``powerflow`` and ``opf`` commands, through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from transactive.cli.network import register


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    application = typer.Typer()
    register(application)
    return application


runner = CliRunner()


def test_powerflow_table(app: typer.Typer) -> None:
    result = runner.invoke(app, ["powerflow", "case33bw"])
    assert result.exit_code == 0, result.output
    assert "202.68 kW" in result.output
    assert "0.9131 pu" in result.output
    assert "bus 17" in result.output
    assert "most loaded line" in result.output


def test_powerflow_json(app: typer.Typer) -> None:
    result = runner.invoke(app, ["powerflow", "case33bw", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert set(out) == {
        "losses_kw",
        "vmin_pu",
        "vmin_bus",
        "vmax_pu",
        "vmax_bus",
        "max_line_loading_pct",
    }
    assert out["losses_kw"] == pytest.approx(202.677, abs=0.01)
    assert out["vmin_bus"] == "17"


@pytest.mark.parametrize("formulation", ["socp", "lindistflow"])
def test_opf_json(app: typer.Typer, formulation: str) -> None:
    result = runner.invoke(app, ["opf", "case33bw", "--formulation", formulation, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert set(out) == {"cost", "losses_kw", "relaxation_gap", "vmin_pu", "dlmp"}
    assert len(out["dlmp"]) == 33
    for row in out["dlmp"]:
        parts = row["energy"] + row["loss"] + row["congestion"] + row["voltage"]
        assert parts == pytest.approx(row["total"], abs=1e-10)
    if formulation == "socp":
        assert out["relaxation_gap"] < 1e-4
        assert out["losses_kw"] == pytest.approx(202.68, abs=0.05)
    else:
        assert out["relaxation_gap"] is None
        assert all(row["total"] == pytest.approx(0.1, abs=1e-6) for row in out["dlmp"])


def test_opf_table(app: typer.Typer) -> None:
    result = runner.invoke(app, ["opf", "case33bw", "--price", "0.2"])
    assert result.exit_code == 0, result.output
    assert "DLMP per kWh" in result.output
    assert "relaxation gap" in result.output
    assert "0.20000" in result.output


def test_bad_feeder_exits_with_message(app: typer.Typer, tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text("{oops", encoding="utf-8")
    for command in ("powerflow", "opf"):
        result = runner.invoke(app, [command, str(bad)])
        assert result.exit_code == 1
        assert "not valid JSON" in result.output
        assert "Traceback" not in result.output
        assert isinstance(result.exception, SystemExit)
    result = runner.invoke(app, ["powerflow", "no-such-feeder"])
    assert result.exit_code == 1
    assert "no such file, built-in feeder or SimBench code" in result.output


def test_help(app: typer.Typer) -> None:
    for command in ("powerflow", "opf"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0
        assert "SimBench" in result.output


def test_opf_infeasible_then_relaxed(app: typer.Typer) -> None:
    # the CIGRE MV transformers run at 101 % with the feeder's own loads
    result = runner.invoke(app, ["opf", "cigre_mv", "--json"])
    assert result.exit_code == 2
    assert "infeasible" in result.output
    assert "--rating-pct" in result.output
    result = runner.invoke(app, ["opf", "cigre_mv", "--rating-pct", "110", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["relaxation_gap"] < 1e-3
