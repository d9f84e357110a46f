"""The simulator end to end: scenario files, both runs, the results directory, faults, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from transactive.cli import app
from transactive.errors import ValidationError
from transactive.network import load_feeder
from transactive.sim import (
    KPI_NAMES,
    RunResult,
    SimulationResult,
    builtin_scenarios,
    load_scenario,
    parse_scenario,
    simulate,
    write_results,
)

HERE = Path(__file__).parent
SMALL = HERE / "small.toml"


def _variant(horizon_h: float = 1.0, sections: dict[str, str] | None = None, **more: str) -> str:
    """The small test scenario with a shorter horizon and some sections replaced."""
    sections = {**(sections or {}), **more}
    text = SMALL.read_text(encoding="utf-8").replace("horizon_h = 2", f"horizon_h = {horizon_h}")
    for header, body in sections.items():
        if f"[{header}]" not in text:
            text += f"\n[{header}]\n"
        start = text.index(f"[{header}]")
        end = text.find("\n[", start + 1)
        text = text[:start] + f"[{header}]\n{body}\n" + (text[end:] if end >= 0 else "")
    return text


@pytest.fixture(scope="module")
def small() -> SimulationResult:
    """Two evening hours of 60 homes, capacity 250 kW (the baseline stays below it)."""
    scenario, base_dir = load_scenario(SMALL)
    return simulate(scenario, base_dir=base_dir)


@pytest.fixture(scope="module")
def written(small: SimulationResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("results")
    write_results(small, out)
    return out


def test_results_directory_follows_the_format(written: Path, small: SimulationResult) -> None:
    names = {p.name for p in written.iterdir()}
    assert names >= {
        "scenario.toml",
        "summary.json",
        "timeseries.parquet",
        "devices.parquet",
        "peak_curves.parquet",
        "peak_network.json",
    }
    data = json.loads((written / "summary.json").read_text())
    assert data["format_version"] == 2
    assert data["scenario"] == "small"
    assert data["seed"] == 7
    assert data["horizon_s"] == 7200
    assert data["n_homes"] == 60
    assert set(data["runs"]) == {"baseline", "transactive"}
    for kpis in data["runs"].values():
        assert set(kpis) == set(KPI_NAMES)
        assert all(v is None or isinstance(v, float) for v in kpis.values())
    b, t = data["runs"]["baseline"]["peak_kw"], data["runs"]["transactive"]["peak_kw"]
    assert data["peak_reduction_pct"] == pytest.approx(100 * (b - t) / b)
    # the scenario as run reads back to the same scenario
    assert parse_scenario((written / "scenario.toml").read_text()) == small.scenario

    ts = pd.read_parquet(written / "timeseries.parquet")
    assert list(ts.columns) == ["run", "interval_start_s", "time", "series", "value"]
    assert ts["interval_start_s"].dtype == np.int64
    assert ts["value"].dtype == np.float64
    assert isinstance(ts["time"].dtype, pd.DatetimeTZDtype)
    series = set(ts["series"])
    assert {
        "feeder_load_kw",
        "capacity_kw",
        "vmin_pu",
        "losses_kw",
        "ev_mean_soc",
        "gas_kw",
    } <= series
    assert {f"load_kw:{k}" for k in ("hvac", "water_heater", "ev", "pv", "battery")} <= series
    assert not ts.query("run == 'baseline'")["series"].str.startswith("clearing_").any()
    per_run = ts.groupby(["run", "series"]).size()
    assert (per_run == 24).all()  # 2 h of 5-minute intervals
    pv = ts.query("series == 'load_kw:pv'")["value"]
    assert (pv <= 0).all()

    dev = pd.read_parquet(written / "devices.parquet")
    assert list(dev.columns) == [
        "run",
        "device_id",
        "kind",
        "bus",
        "group",
        "energy_kwh",
        "cost",
        "comfort_violation_degree_hours",
        "unserved_kwh",
        "gas_kwh",
        "gas_cost",
    ]
    assert dev.groupby("run")["device_id"].apply(lambda s: s.is_unique).all()
    assert len(dev) == 2 * (60 + 40 + 20 + 30 + 15 + 60)
    assert dev.query("kind != 'hvac'")["comfort_violation_degree_hours"].isna().all()
    assert dev.query("kind == 'ev'")["unserved_kwh"].notna().all()
    # no heat pump, so no gas meter: NaN per device, null KPIs, a zero series
    assert dev[["gas_kwh", "gas_cost"]].isna().all().all()
    assert data["runs"]["transactive"]["gas_kwh"] is None
    assert (ts.query("series == 'gas_kw'")["value"] == 0).all()

    curves = pd.read_parquet(written / "peak_curves.parquet")
    for side, sign in (("demand", -1), ("supply", 1)):
        c = curves[curves["side"] == side]
        assert len(c) >= 2
        assert (np.diff(c["price_per_kwh"]) >= 0).all()
        assert (sign * np.diff(c["power_kw"]) >= -1e-9).all()
        assert (c["power_kw"] >= 0).all()

    net = json.loads((written / "peak_network.json").read_text())
    feeder = load_feeder("case33bw")
    for run in ("baseline", "transactive"):
        assert len(net["runs"][run]["vm_pu"]) == feeder.n_nodes
        assert len(net["runs"][run]["branch_loading_pct"]) == feeder.n_branches
        assert all(v is None for v in net["runs"][run]["branch_loading_pct"])  # unrated


def test_energy_balances(small: SimulationResult) -> None:
    """Metered device energy = feeder energy - losses - background load, to 1e-6 kWh."""
    sc = small.scenario
    interval_h = sc.market_interval_s / 3600.0
    background_kw = sc.feeder.scale * float(np.sum(load_feeder("case33bw").load_p_kw))
    for run in small.runs.values():
        feeder_kwh = float(np.sum(run.series["feeder_load_kw"]) * interval_h)
        losses_kwh = float(np.sum(run.series["losses_kw"]) * interval_h)
        devices_kwh = float(run.devices["energy_kwh"].sum())
        background_kwh = background_kw * sc.horizon_h
        assert devices_kwh == pytest.approx(feeder_kwh - losses_kwh - background_kwh, abs=1e-3)
        assert run.kpis["losses_kwh"] == pytest.approx(losses_kwh)
        kinds = sum(np.sum(v) for k, v in run.series.items() if k.startswith("load_kw:"))
        assert kinds * interval_h == pytest.approx(devices_kwh)


def _kpi(run: RunResult, name: str) -> float:
    value = run.kpis[name]
    assert value is not None
    return value


def test_the_transactive_run_keeps_a_binding_capacity() -> None:
    """A capacity the baseline exceeds holds in the transactive run (the bids allow it)."""
    text = _variant(horizon_h=2, supply="price_per_kwh = 0.08\ncapacity_kw = 180.0")
    sim = simulate(parse_scenario(text))
    base, tr = sim.runs["baseline"], sim.runs["transactive"]
    assert _kpi(base, "capacity_violation_minutes") > 0
    assert _kpi(tr, "capacity_violation_minutes") == 0
    assert np.max(tr.series["feeder_load_kw"]) <= 180.0
    # rationing the capacity raises the price above the wholesale price at some interval
    assert np.nanmax(tr.series["clearing_price_per_kwh"]) > 0.08
    assert _kpi(tr, "peak_kw") < _kpi(base, "peak_kw")


def test_a_seed_reproduces_bit_for_bit() -> None:
    text = _variant(horizon_h=0.5)
    a = simulate(parse_scenario(text))
    b = simulate(parse_scenario(text))
    other = simulate(parse_scenario(text.replace("seed = 7", "seed = 8")))
    for name in ("baseline", "transactive"):
        for key, values in a.runs[name].series.items():
            np.testing.assert_array_equal(values, b.runs[name].series[key])
        for key, values in a.runs[name].devices.items():
            np.testing.assert_array_equal(values, b.runs[name].devices[key])
    assert not np.array_equal(
        a.runs["baseline"].series["feeder_load_kw"], other.runs["baseline"].series["feeder_load_kw"]
    )


def test_message_loss_is_counted_and_the_run_completes() -> None:
    text = _variant(horizon_h=0.5, comms="loss_probability = 0.3\ndelay_intervals = 1")
    sim = simulate(parse_scenario(text))
    lost = _kpi(sim.runs["transactive"], "messages_lost")
    # 6 intervals, 48 + 32 + 16 + 30 + 15 = 141 participants, a bid and a price each
    assert 0.2 * 2 * 6 * 143 < lost < 0.4 * 2 * 6 * 143
    assert sim.runs["baseline"].kpis["messages_lost"] == 0
    assert np.all(np.isfinite(sim.runs["transactive"].series["feeder_load_kw"]))


@pytest.mark.parametrize(
    ("mechanism", "price"),
    [
        ('kind = "fixed"\nfixed_price_per_kwh = 0.1', 0.1),
        (
            'kind = "tou"\ntou = [{start_h = 0, end_h = 16.5, price_per_kwh = 0.06}, '
            "{start_h = 16.5, end_h = 24, price_per_kwh = 0.3}]",
            None,
        ),
    ],
)
def test_tariff_mechanisms_bill_at_the_tariff(mechanism: str, price: float | None) -> None:
    sim = simulate(parse_scenario(_variant(horizon_h=0.5, mechanism=mechanism)))
    tr = sim.runs["transactive"]
    assert np.isnan(tr.series["clearing_price_per_kwh"]).all()
    part = tr.devices["group"] == "participant"
    if price is not None:
        np.testing.assert_allclose(
            tr.devices["cost"][part], tr.devices["energy_kwh"][part] * price, atol=1e-9
        )


def test_a_scenario_with_several_mistakes_reports_them_all() -> None:
    text = """
name = "broken"
start = "2021-07-15T00:00:00"
market_interval_s = 300
physics_step_s = 70
colour = "blue"

[feeder]
scale = -1

[population.hvac]
count = -3
participation = 1.5
options = { wings = 2 }

[mechanism]
kind = "tou"
price_cap_per_kwh = 0.1
price_floor_per_kwh = 0.2

[supply]
capacity_kw = 100

[comms]
loss_probability = 1.5
"""
    with pytest.raises(ValidationError) as info:
        parse_scenario(text, source="broken.toml")
    fields = {p.field for p in info.value.problems}
    assert {
        "start",
        "colour",
        "feeder.scale",
        "population.hvac.count",
        "population.hvac.participation",
        "comms.loss_probability",
        "supply",
        "mechanism",
        "mechanism.tou",
    } <= fields, fields
    message = str(info.value)
    assert "population.hvac.count" in message and "broken.toml" in message


def test_unknown_sample_options_and_bad_files_are_named() -> None:
    with pytest.raises(ValidationError) as info:
        parse_scenario(_variant(sections={"population.ev": "count = 3\noptions = { wings = 2 }"}))
    assert any(p.field.startswith("population.ev.options") for p in info.value.problems)
    with pytest.raises(ValidationError, match=r"not a file|neither"):
        load_scenario("no-such-scenario")
    with pytest.raises(ValidationError, match="toml"):
        parse_scenario("name = ")


def test_builtin_default_parses() -> None:
    assert "default" in builtin_scenarios()
    scenario, _ = load_scenario("default")
    assert scenario.n_homes == 1000
    assert scenario.n_intervals == 288
    assert scenario.mechanism.kind == "double_auction"
    assert scenario.mechanism.dso_check


def test_cli_run_and_scenarios(tmp_path: Path) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(_variant(horizon_h=0.25))
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "peak_kw" in result.output and "results in" in result.output
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["scenario"] == "small"
    quiet = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "q"), "--quiet"])
    assert quiet.exit_code == 0 and quiet.output == ""
    bad = tmp_path / "bad.toml"
    bad.write_text(_variant(sections={"population.hvac": "count = -1"}))
    failed = runner.invoke(app, ["run", str(bad), "--out", str(tmp_path / "x")])
    assert failed.exit_code == 1
    assert "population.hvac.count" in failed.output
    listed = runner.invoke(app, ["scenarios"])
    assert listed.exit_code == 0 and "default" in listed.output
