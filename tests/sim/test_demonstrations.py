"""The built-in demonstrations: Olympic Peninsula (PNNL-17167) and gridSMART (PNNL-22128)."""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from transactive.errors import ValidationError
from transactive.sim import (
    KPI_NAMES,
    Scenario,
    SimulationResult,
    builtin_scenarios,
    parse_scenario,
    rtp_adder_per_kwh,
    simulate,
    summary,
    write_results,
)
from transactive.sim.engine import capacity_limit_kw


def _builtin(name: str, **replace: str) -> str:
    text = (resources.files("transactive.sim") / "scenarios" / f"{name}.toml").read_text(
        encoding="utf-8"
    )
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def olympic() -> SimulationResult:
    """Two hours of the Olympic Peninsula day across the TOU's 6 h price step."""
    text = _builtin(
        "olympic",
        **{"horizon_h = 24": "horizon_h = 2", "T00:00:00-08:00": "T05:00:00-08:00"},
    )
    return simulate(parse_scenario(text))


@pytest.fixture(scope="module")
def gridsmart() -> SimulationResult:
    """Two afternoon hours of the gridSMART day (the feeder's peak)."""
    text = _builtin(
        "gridsmart",
        **{"horizon_h = 24": "horizon_h = 2", "T00:00:00-05:00": "T16:00:00-05:00"},
    )
    return simulate(parse_scenario(text))


def _assert_groups_complete(data: dict[str, Any], names: set[str]) -> None:
    assert set(data["groups"]) == names
    for by_run in data["groups"].values():
        assert set(by_run) == {"baseline", "transactive"}
        for kpis in by_run.values():
            assert set(kpis) == set(KPI_NAMES)
            assert isinstance(kpis["peak_kw"], float)
            assert isinstance(kpis["energy_kwh"], float)
            assert isinstance(kpis["cost"], float)
    assert set(data["comparisons"]) == names


def _assert_published(data: dict[str, Any], names: set[str]) -> None:
    assert set(data["published"]) == names
    for item in data["published"].values():
        assert isinstance(item["value"], float)
        assert isinstance(item["unit"], str) and item["source"]
        assert item["ours"] is None or isinstance(item["ours"], float)
    # every figure we compare has our number (the path it names exists in the summary)
    assert all(item["ours"] is not None for item in data["published"].values())


def test_builtins_are_listed() -> None:
    listed = builtin_scenarios()
    assert {"default", "olympic", "gridsmart"} <= set(listed)
    assert "PNNL-17167" in listed["olympic"]


def test_olympic_groups_kpis_and_published(olympic: SimulationResult) -> None:
    data = summary(olympic)
    _assert_groups_complete(data, {"fixed", "tou", "rtp", "control"})
    _assert_published(
        data,
        {
            "feeder_limit_intervals_exceeded",
            "rtp_peak_reduction_pct",
            "fixed_bill_vs_control_pct",
            "tou_bill_vs_control_pct",
            "rtp_bill_vs_control_pct",
        },
    )
    assert olympic.scenario.group_home_counts() == {
        "fixed": 28,
        "tou": 28,
        "rtp": 28,
        "control": 28,
    }
    tr = olympic.runs["transactive"]
    assert np.all(np.isfinite(tr.series["clearing_price_per_kwh"]))


def test_olympic_limit_binds_and_holds(olympic: SimulationResult) -> None:
    """The winter limit of 500 kW, at the field's 0.8 of the uncoordinated peak on our homes.

    The field's uncoordinated peak (``capacity_basis_peak_kw`` = 625 kW) is to 500 kW as the
    real-time group's baseline peak is to our limit; the baseline (no market) exceeds it, the
    auction keeps the group's load within it.
    """
    sc = olympic.scenario
    assert sc.supply.capacity_basis_peak_kw == 625.0
    base, tr = olympic.runs["baseline"], olympic.runs["transactive"]
    uncoordinated = float(np.max(base.series["market_load_kw"]))
    limit = 500.0 * uncoordinated / 625.0
    assert olympic.capacity_kw == pytest.approx(limit, rel=1e-12)
    assert capacity_limit_kw(sc, base) == olympic.capacity_kw
    data = summary(olympic)
    exceeded = data["capacity"]["intervals_exceeded"]
    assert data["capacity"]["limit_kw"] == olympic.capacity_kw
    assert data["capacity"]["season_limit_kw"] == 500.0
    assert exceeded["baseline"] >= 1  # it binds: the homes left alone go above it
    assert exceeded["transactive"] == 0  # and it holds
    assert np.max(tr.series["market_load_kw"]) <= olympic.capacity_kw
    np.testing.assert_array_equal(base.series["capacity_kw"], olympic.capacity_kw)
    np.testing.assert_array_equal(tr.series["capacity_kw"], olympic.capacity_kw)
    over = base.series["market_load_kw"] > olympic.capacity_kw
    assert base.kpis["capacity_violation_minutes"] == 5.0 * float(over.sum())
    assert any("625 kW" in note for note in data["notes"])
    with pytest.raises(ValueError, match="capacity_basis_peak_kw"):
        _ = sc.capacity_kw  # known only after the baseline


def test_olympic_control_group_runs_on_its_own(olympic: SimulationResult) -> None:
    """The control group's devices never bid: they draw and pay exactly as in the baseline."""
    base, tr = olympic.runs["baseline"], olympic.runs["transactive"]
    for run in (base, tr):
        assert (run.devices["group"] == "control").sum() == 3 * 28
    b = base.devices["group"] == "control"
    t = tr.devices["group"] == "control"
    np.testing.assert_array_equal(base.devices["device_id"][b], tr.devices["device_id"][t])
    np.testing.assert_array_equal(base.devices["energy_kwh"][b], tr.devices["energy_kwh"][t])
    np.testing.assert_allclose(
        tr.devices["cost"][t], tr.devices["energy_kwh"][t] * 0.081, rtol=1e-12
    )
    # the real-time group's devices did respond: they differ from their baseline
    r = tr.devices["group"] == "rtp"
    assert not np.allclose(
        base.devices["energy_kwh"][base.devices["group"] == "rtp"], tr.devices["energy_kwh"][r]
    )


def test_olympic_tou_bill_follows_its_tariff(olympic: SimulationResult) -> None:
    tr = olympic.runs["transactive"]
    load_kw = tr.series["group_load_kw:tou"]
    # 05:00-07:00: off-peak 0.0413 until 6 h, then the morning peak 0.135
    price = np.where(np.arange(load_kw.size) < 12, 0.0413, 0.135)
    expected = float(np.sum(load_kw * price) * 300 / 3600)
    tou = tr.devices["group"] == "tou"
    assert float(tr.devices["cost"][tou].sum()) == pytest.approx(expected, rel=1e-9)
    fixed = tr.devices["group"] == "fixed"
    np.testing.assert_allclose(
        tr.devices["cost"][fixed], tr.devices["energy_kwh"][fixed] * 0.081, rtol=1e-12
    )


def test_olympic_results_directory_and_report(olympic: SimulationResult, tmp_path: Path) -> None:
    from transactive.report import write_report  # noqa: PLC0415

    write_results(olympic, tmp_path)
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["published"]["rtp_bill_vs_control_pct"]["value"] == -27.0
    report = write_report(tmp_path)
    assert "rtp_bill_vs_control_pct" in report.read_text(encoding="utf-8")


def test_gridsmart_groups_price_response_and_published(gridsmart: SimulationResult) -> None:
    data = summary(gridsmart)
    _assert_groups_complete(data, {"rtp", "flat"})
    _assert_published(
        data,
        {
            "peak_reduction_pct",
            "participant_energy_change_pct",
            "participant_bill_change_pct",
            "price_consumption_correlation",
        },
    )
    assert gridsmart.scenario.group_home_counts() == {"rtp": 140, "flat": 260}
    fit = data["price_response"]
    assert fit["groups"] == ["rtp"] and fit["n_intervals"] == 24
    tr, base = gridsmart.runs["transactive"], gridsmart.runs["baseline"]
    # the response fit: the RTP homes' load less their own baseline load, on the clearing price
    x = tr.series["clearing_price_per_kwh"]
    deviation = tr.series["group_load_kw:rtp"] - base.series["group_load_kw:rtp"]
    slope, intercept = np.polyfit(x, deviation, 1)
    assert fit["deviation"]["slope_kw_per_price"] == pytest.approx(slope, rel=1e-12)
    assert fit["deviation"]["intercept_kw"] == pytest.approx(intercept, rel=1e-12)
    assert fit["deviation"]["correlation"] == pytest.approx(np.corrcoef(x, deviation)[0, 1])
    # the raw fit (weather-confounded) stays, under its own name
    raw = tr.series["group_load_kw:rtp"]
    raw_slope, raw_intercept = np.polyfit(x, raw, 1)
    assert fit["raw_load"]["slope_kw_per_price"] == pytest.approx(raw_slope, rel=1e-12)
    assert fit["raw_load"]["intercept_kw"] == pytest.approx(raw_intercept, rel=1e-12)
    assert fit["raw_load"]["correlation"] == pytest.approx(np.corrcoef(x, raw)[0, 1])
    assert fit["deviation"]["slope_kw_per_price"] != fit["raw_load"]["slope_kw_per_price"]
    # the published correlation is compared with the deviation fit's
    published = data["published"]["price_consumption_correlation"]
    assert published["ours_from"] == "price_response.deviation.correlation"
    assert published["ours"] == fit["deviation"]["correlation"]
    # the flat-tariff homes are not in the market: identical to their baseline
    base = gridsmart.runs["baseline"]
    np.testing.assert_array_equal(
        base.devices["energy_kwh"][base.devices["group"] == "flat"],
        tr.devices["energy_kwh"][tr.devices["group"] == "flat"],
    )
    # the feeder limit (1,450 kW) binds at this peak and the auction keeps it
    assert data["capacity"]["intervals_exceeded"]["transactive"] == 0
    assert np.max(tr.series["feeder_load_kw"]) <= 1450.0


def _rtp_bill_of_baseline(sim: SimulationResult, adder_per_kwh: float) -> float:
    """The RTP homes' baseline load billed at the wholesale price plus an adder ($)."""
    sc = sim.scenario
    hours = [((sc.start.hour * 3600 + int(s)) % 86400) / 3600.0 for s in sim.interval_start_s]
    wholesale = np.array([sc.supply.price_at(h) for h in hours])
    energy_kwh = sim.runs["baseline"].series["group_load_kw:rtp"] * sc.market_interval_s / 3600.0
    return float(((wholesale + adder_per_kwh) * energy_kwh).sum())


def test_gridsmart_rtp_adder_is_revenue_neutral_on_the_baseline_load(
    gridsmart: SimulationResult,
) -> None:
    sc = gridsmart.scenario
    assert sc.mechanism.rtp_adder == "load_weighted"
    base = gridsmart.runs["baseline"]
    rtp = base.devices["group"] == "rtp"
    flat_bill = float(base.devices["cost"][rtp].sum())  # the baseline bills them at the flat rate
    assert flat_bill == pytest.approx(
        sc.mechanism.flat_price_per_kwh * float(base.devices["energy_kwh"][rtp].sum()), rel=1e-12
    )
    adder = gridsmart.rtp_adder_per_kwh
    assert adder == rtp_adder_per_kwh(sc, base)
    assert _rtp_bill_of_baseline(gridsmart, adder) == pytest.approx(flat_bill, rel=1e-9)
    # weights matter: with all the load in one interval the price there is the flat tariff
    hours = [((sc.start.hour * 3600 + int(s)) % 86400) / 3600.0 for s in gridsmart.interval_start_s]
    wholesale = np.array([sc.supply.price_at(h) for h in hours])
    series = dict(base.series)
    for t in (0, len(hours) - 1):
        one = np.zeros(len(hours))
        one[t] = 3.0
        series["group_load_kw:rtp"] = one
        got = rtp_adder_per_kwh(sc, dataclasses.replace(base, series=series))
        assert got + wholesale[t] == pytest.approx(sc.mechanism.flat_price_per_kwh, rel=1e-12)
    # and a constant load weighs every interval alike: the time mean's adder
    series["group_load_kw:rtp"] = np.full(len(hours), 7.0)
    assert rtp_adder_per_kwh(sc, dataclasses.replace(base, series=series)) == pytest.approx(
        rtp_adder_per_kwh(_with_adder(sc, "time_mean"), base), rel=1e-12
    )
    assert summary(gridsmart)["rtp_adder"] == {"rule": "load_weighted", "per_kwh": adder}
    # the auction's clearing price is the substation's offer (wholesale + adder) or above it
    tr = gridsmart.runs["transactive"]
    hours = [((sc.start.hour * 3600 + int(s)) % 86400) / 3600.0 for s in gridsmart.interval_start_s]
    offer = np.array([sc.supply.price_at(h) for h in hours]) + adder
    assert np.all(tr.series["clearing_price_per_kwh"] >= offer - 1e-12)


def _with_adder(sc: Scenario, rule: str) -> Scenario:
    return sc.model_copy(update={"mechanism": sc.mechanism.model_copy(update={"rtp_adder": rule})})


def test_rtp_adder_time_mean_and_none(gridsmart: SimulationResult) -> None:
    sc, base = gridsmart.scenario, gridsmart.runs["baseline"]
    hours = [((sc.start.hour * 3600 + int(s)) % 86400) / 3600.0 for s in gridsmart.interval_start_s]
    wholesale = np.array([sc.supply.price_at(h) for h in hours])
    flat = sc.mechanism.flat_price_per_kwh
    time_mean = rtp_adder_per_kwh(_with_adder(sc, "time_mean"), base)
    assert time_mean == pytest.approx(flat - wholesale.mean(), rel=1e-12)
    assert rtp_adder_per_kwh(_with_adder(sc, "none"), base) == 0.0


def test_rtp_adder_refuses_what_it_cannot_be_neutral_against(
    gridsmart: SimulationResult,
) -> None:
    sc, base = gridsmart.scenario, gridsmart.runs["baseline"]
    series = dict(base.series)
    series["group_load_kw:rtp"] = np.zeros_like(series["group_load_kw:rtp"])
    with pytest.raises(ValidationError, match=r"mechanism\.rtp_adder.*positive baseline load"):
        rtp_adder_per_kwh(sc, dataclasses.replace(base, series=series))
    no_groups = sc.model_copy(update={"groups": {}})
    fixed = no_groups.model_copy(
        update={"mechanism": sc.mechanism.model_copy(update={"kind": "fixed"})}
    )
    with pytest.raises(ValidationError, match=r"mechanism\.rtp_adder.*none"):
        rtp_adder_per_kwh(fixed, base)


def test_rtp_adder_needs_a_real_time_price() -> None:
    text = _builtin(
        "gridsmart", **{'[mechanism]\nkind = "double_auction"': '[mechanism]\nkind = "fixed"'}
    )
    with pytest.raises(ValidationError) as info:
        parse_scenario(text)
    problems = [p for p in info.value.problems if p.field == "mechanism.rtp_adder"]
    assert problems and "needs a real-time price" in problems[0].reason
    assert "'fixed'" in problems[0].reason


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            'mechanism = { kind = "tou", tou = [{start_h = 0, end_h = 6, price_per_kwh = 0.04}] }',
            "groups.tou.mechanism.tou",
        ),
        ('mechanism = { kind = "auction" }', "groups.tou.mechanism.kind"),
        ('mechanism = { kind = "none", fixed_price_per_kwh = 0.1 }', "groups.tou.mechanism"),
    ],
)
def test_a_group_mechanism_mistake_is_reported_with_its_path(body: str, field: str) -> None:
    text = _builtin("olympic")
    start = text.index("[groups.tou]")
    end = text.index("[groups.rtp]")
    text = text[:start] + f"[groups.tou]\nshare = 0.25\n{body}\n\n" + text[end:]
    with pytest.raises(ValidationError) as info:
        parse_scenario(text, source="olympic.toml")
    fields = {p.field for p in info.value.problems}
    assert field in fields, fields


def test_group_shares_seasons_and_scope_are_checked() -> None:
    text = _builtin(
        "olympic",
        **{
            "[groups.control]\nshare = 0.25": "[groups.control]\nshare = 0.5",
            "{months = [6, 7, 8], capacity_kw = 1500.0}, ": "",
        },
    )
    with pytest.raises(ValidationError) as info:
        parse_scenario(text)
    fields = {p.field for p in info.value.problems}
    assert {"groups", "supply.seasonal_capacity"} <= fields, fields
    summer = parse_scenario(_builtin("olympic", **{"2021-01-20": "2021-07-20"}))
    assert summer.season_capacity_kw == 1500.0
    by_homes = parse_scenario(
        _builtin("olympic", **{"capacity_basis_peak_kw = 625.0": "capacity_basis_homes = 112"})
    )
    assert by_homes.capacity_kw == pytest.approx(500.0 * 28 / 112)
    both = _builtin(
        "olympic",
        **{
            "capacity_basis_peak_kw = 625.0": (
                "capacity_basis_peak_kw = 625.0\ncapacity_basis_homes = 112"
            )
        },
    )
    with pytest.raises(ValidationError, match="not both"):
        parse_scenario(both)
    no_limit = _builtin(
        "olympic",
        **{
            "seasonal_capacity = [{months = [6, 7, 8], capacity_kw = 1500.0}, {months = [12, 1, "
            "2], capacity_kw = 500.0}, {months = [3, 4, 5, 9, 10, 11], capacity_kw = 750.0}]\n": ""
        },
    )
    with pytest.raises(ValidationError, match="scales a limit"):
        parse_scenario(no_limit)
    rtp = '[groups.rtp]\nshare = 0.25\nmechanism = { kind = "double_auction" }'
    no_auction = _builtin("olympic", **{rtp: rtp.replace("double_auction", "none")})
    with pytest.raises(ValidationError, match="capacity_scope"):
        parse_scenario(no_auction)
