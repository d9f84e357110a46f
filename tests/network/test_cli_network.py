"""The ``powerflow`` and ``opf`` commands, through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from transactive.cli.network import register
from transactive.network.feeders import load_feeder


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
        "substation_p_kw",
        "substation_q_kvar",
        "max_line_loading_pct",
        "max_loading_line",
        "max_trafo_loading_pct",
        "unsupplied_buses",
    }
    assert out["losses_kw"] == pytest.approx(202.677, abs=0.01)
    assert out["vmin_bus"] == "17"
    # case33bw's lines carry pandapower's placeholder 99999 kA: unrated, null, not 0.0 %
    assert out["max_line_loading_pct"] is None
    assert out["max_loading_line"] is None
    assert out["substation_p_kw"] == pytest.approx(3715.0 + 202.68, abs=0.1)
    assert out["unsupplied_buses"] == []


@pytest.mark.parametrize("formulation", ["socp", "lindistflow"])
def test_opf_json(app: typer.Typer, formulation: str) -> None:
    result = runner.invoke(app, ["opf", "case33bw", "--formulation", formulation, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert set(out) == {
        "cost",
        "losses_kw",
        "substation_p_kw",
        "substation_q_kvar",
        "relaxation_gap",
        "vmin_pu",
        "max_branch_loading_pct",
        "dlmp",
    }
    assert out["max_branch_loading_pct"] is None  # unrated
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


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_powerflow_writes_the_feeder_map(app: typer.Typer, tmp_path: Path) -> None:
    target = tmp_path / "map.png"
    result = runner.invoke(app, ["powerflow", "case33bw", "--map", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_bytes()[:8] == PNG_SIGNATURE
    assert "feeder map written to" in result.output
    result = runner.invoke(app, ["powerflow", "cigre_lv", "--json", "--map", str(target)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["map"] == str(target)


def test_powerflow_map_bad_path(app: typer.Typer, tmp_path: Path) -> None:
    for bad, reason in (
        (tmp_path / "map.svg", "must end in .png"),
        (tmp_path / "nowhere" / "map.png", "does not exist"),
    ):
        result = runner.invoke(app, ["powerflow", "case33bw", "--map", str(bad)])
        assert result.exit_code == 1
        assert reason in result.output
        assert "Traceback" not in result.output
        assert not bad.exists()


def test_feeder_day_writes_figures_and_reports_violations(app: typer.Typer, tmp_path: Path) -> None:
    out = tmp_path / "day" / "case33bw"
    result = runner.invoke(
        app, ["feeder-day", "case33bw", "--out", str(out), "--scale", "1.5", "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["intervals"] == 96
    assert summary["peak_interval"] == 81
    assert summary["peak_time"] == "20:15"
    assert summary["date"] == "year-average day"
    assert summary["vmin_node"] == "17"
    assert summary["vmin_pu"] < 0.9
    assert summary["insecure_intervals"] == summary["intervals_by_violation"]["undervoltage"] > 0
    assert summary["intervals_by_violation"]["overload"] == 0
    assert summary["energy_losses_kwh"] > 0
    for name in ("feeder_map_peak.png", "vmin_day.png"):
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE
    assert sorted(Path(f).name for f in summary["files"]) == [
        "feeder_map_peak.png",
        "vmin_day.png",
    ]


def test_feeder_day_table(app: typer.Typer) -> None:
    result = runner.invoke(app, ["feeder-day", "case33bw", "--day", "10"])
    assert result.exit_code == 0, result.output
    for text in (
        "2016-01-11",
        "peak import",
        "lowest voltage",
        "intervals with violations",
        "of 96",
        "undervoltage",
        "energy losses",
        "household profiles",
    ):
        assert text in result.output


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["case33bw", "--scale", "-2"], "scale: must be a finite non-negative number"),
        (["case33bw", "--day", "400"], "day: must be a whole number in 0..365"),
        (["no-such-feeder"], "no such file, built-in feeder or SimBench code"),
    ],
)
def test_feeder_day_bad_options(app: typer.Typer, args: list[str], reason: str) -> None:
    result = runner.invoke(app, ["feeder-day", *args])
    assert result.exit_code == 1
    assert reason in result.output
    assert "Traceback" not in result.output


def test_feeder_day_out_is_a_file(app: typer.Typer, tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("x", encoding="utf-8")
    result = runner.invoke(app, ["feeder-day", "case33bw", "--out", str(target)])
    assert result.exit_code == 1
    assert "is a file, not a folder" in result.output


def test_feeder_day_help(app: typer.Typer) -> None:
    result = runner.invoke(app, ["feeder-day", "--help"])
    assert result.exit_code == 0
    for text in ("SimBench", "--scale", "--out", "--day", "--json"):
        assert text in result.output
    result = runner.invoke(app, ["powerflow", "--help"])
    assert "--map" in result.output


def strict_json(text: str) -> Any:
    """Parse JSON refusing NaN and Infinity (what ``json.dumps(allow_nan=False)`` promises)."""

    def refuse(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_unrated_table_and_given_ratings(app: typer.Typer) -> None:
    result = runner.invoke(app, ["powerflow", "case33bw"])
    assert result.exit_code == 0, result.output
    assert "unrated" in result.output
    assert "0.0 %" not in result.output
    rated = runner.invoke(app, ["powerflow", "case33bw", "--line-max-i-ka", "0.4", "--json"])
    assert rated.exit_code == 0, rated.output
    out = strict_json(rated.output)
    # the first line carries the whole feeder: pandapower's own loading at 0.4 kA
    assert out["max_line_loading_pct"] == pytest.approx(52.591, abs=1e-3)
    assert out["max_loading_line"] == 0
    opf_out = runner.invoke(app, ["opf", "case33bw", "--line-max-i-ka", "0.4", "--json"])
    assert strict_json(opf_out.output)["max_branch_loading_pct"] == pytest.approx(52.59, abs=0.01)


def test_bad_rating_option(app: typer.Typer) -> None:
    result = runner.invoke(app, ["powerflow", "case33bw", "--line-max-i-ka", "0"])
    assert result.exit_code == 1
    assert "max_i_ka: must be a positive finite number of kA" in result.output


def test_markup_in_names_prints_as_is(
    app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandapower as pp  # noqa: PLC0415

    monkeypatch.chdir(tmp_path)
    pp.to_json(load_feeder("four_loads").net, "[red]f.json")
    result = runner.invoke(app, ["powerflow", "[red]f.json"])
    assert result.exit_code == 0, result.output
    assert "[red]f.json" in result.output


def cut_off_case33(tmp_path: Path) -> Path:
    """case33bw with line 20 (Baran & Wu's branch 22-23 ... ) out of service, as a JSON file."""
    import pandapower as pp  # noqa: PLC0415

    net = load_feeder("case33bw").net
    net.line.loc[20, "in_service"] = False
    path = tmp_path / "cut.json"
    pp.to_json(net, str(path))
    return path


def test_cut_off_buses_are_unsupplied_and_insecure(app: typer.Typer, tmp_path: Path) -> None:
    path = cut_off_case33(tmp_path)
    net = load_feeder("case33bw").net
    to_bus = int(net.line.to_bus[20])
    result = runner.invoke(app, ["powerflow", str(path), "--json"])
    assert result.exit_code == 0, result.output
    cut = strict_json(result.output)["unsupplied_buses"]
    assert cut and cut[0]["bus"] == to_bus
    assert sum(c["load_kw"] for c in cut) > 0
    table = runner.invoke(app, ["powerflow", str(path)])
    assert "unsupplied" in table.output
    day = runner.invoke(app, ["feeder-day", str(path), "--json"])
    assert day.exit_code == 0, day.output
    summary = strict_json(day.output)
    assert summary["insecure_intervals"] == summary["intervals"] == 96
    assert summary["intervals_by_violation"]["unsupplied"] == 96
    assert summary["unsupplied_buses"] == [c["bus"] for c in cut]


def test_feeder_day_lists_intervals_that_did_not_converge(app: typer.Typer) -> None:
    result = runner.invoke(app, ["feeder-day", "case33bw", "--scale", "4", "--json"])
    assert result.exit_code == 0, result.output
    summary = strict_json(result.output)
    failed = summary["not_converged_intervals"]
    assert failed and 81 in failed
    assert summary["converged_intervals"] == 96 - len(failed)
    assert len(summary["not_converged_times"]) == len(failed)
    table = runner.invoke(app, ["feeder-day", "case33bw", "--scale", "4"])
    assert "not converged" in table.output
    assert "left out of totals" in table.output
    assert f"{96 - len(failed)} of 96" in table.output
    assert "20:15" in table.output


@pytest.fixture
def no_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make loading a feeder fail the test: a refused path must stop the command before."""

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the feeder was loaded before the output path was checked")

    monkeypatch.setattr("transactive.network.feeders.load_feeder", never)


def refused(app: typer.Typer, args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    return result.output


def test_out_and_map_checked_before_the_run(app: typer.Typer, tmp_path: Path, no_run: None) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    output = refused(app, ["feeder-day", "case33bw", "--out", str(blocker / "sub")])
    assert f"'{blocker}' is a file, not a folder" in output
    output = refused(app, ["powerflow", "case33bw", "--map", str(blocker / "m.png")])
    assert f"'{blocker}' is a file, not a folder" in output  # not "folder does not exist"


needs_proc = pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")


@needs_proc
def test_unwritable_out_is_rejected_even_for_root(app: typer.Typer, no_run: None) -> None:
    """``/proc`` takes no new file or folder from anyone, root included (``os.access`` lies)."""
    output = refused(app, ["feeder-day", "case33bw", "--out", "/proc/qq"])
    assert "--out '/proc/qq'" in output and "cannot be created" in output
    output = refused(app, ["feeder-day", "case33bw", "--out", "/proc/self"])
    assert "no file can be written in folder '/proc/self'" in output


@needs_proc
def test_unwritable_map_is_rejected_even_for_root(app: typer.Typer, no_run: None) -> None:
    output = refused(app, ["powerflow", "case33bw", "--map", "/proc/x.png"])
    assert "--map '/proc/x.png'" in output and "no file can be written in folder '/proc'" in output


def test_feeder_day_creates_a_missing_out_folder_before_the_run(
    app: typer.Typer, tmp_path: Path, no_run: None
) -> None:
    out = tmp_path / "new" / "day"
    result = runner.invoke(app, ["feeder-day", "case33bw", "--out", str(out)])
    assert isinstance(result.exception, AssertionError)  # the check passed; the load came next
    assert out.is_dir() and list(out.iterdir()) == []


def test_feeder_day_on_power_grid_model_reads_as_on_pandapower(app: typer.Typer) -> None:
    args = ["feeder-day", "case33bw", "--scale", "1.5", "--json"]
    reference = strict_json(runner.invoke(app, args).output)
    result = runner.invoke(app, [*args, "--backend", "pgm"])
    assert result.exit_code == 0, result.output
    fast = strict_json(result.output)
    assert fast["vmin_pu"] == pytest.approx(reference["vmin_pu"], abs=1e-6)
    assert fast["energy_losses_kwh"] == pytest.approx(reference["energy_losses_kwh"], rel=1e-5)
    assert fast["intervals_by_violation"] == reference["intervals_by_violation"]
    bad = runner.invoke(app, ["feeder-day", "case33bw", "--backend", "gridlabd"])
    assert bad.exit_code != 0
    assert "backend" in bad.output
