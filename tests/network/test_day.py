"""A day of a feeder: every interval through the AC power flow and the DSO's check."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from transactive.errors import ValidationError
from transactive.network.day import (
    DayLoad,
    FeederDay,
    daily_load_shape,
    feeder_day_load,
    run_day,
)
from transactive.network.feeders import Feeder, load_feeder, simbench_node_profiles
from transactive.network.powerflow import run_powerflow
from transactive.network.security import SecurityLimits, ViolationKind, security_check

#: Intervals of the year-average household day: night, morning, the evening peak (20:15).
SOME = [8, 36, 81]


@cache
def named(name: str) -> Feeder:
    return load_feeder(name)


@cache
def case33_day(scale: float = 1.0) -> tuple[DayLoad, FeederDay]:
    fd = named("case33bw")
    load = feeder_day_load(fd, scale=scale)
    return load, run_day(fd, load.p_kw[SOME], load.q_kvar[SOME])


def test_daily_shape_peaks_at_one_in_the_evening() -> None:
    shape = daily_load_shape()
    assert shape.shape == (96,)
    assert shape.max() == pytest.approx(1.0)
    assert int(np.argmax(shape)) == 81  # 20:15
    assert (shape > 0.3).all()
    # a single day of the same profiles, on the average day's scale
    one_day = daily_load_shape(10)
    assert one_day.shape == (96,)
    assert not np.allclose(one_day, shape)


def test_case33bw_peak_interval_reproduces_baran_wu() -> None:
    load, day = case33_day()
    fd = named("case33bw")
    np.testing.assert_allclose(load.p_kw[81], fd.load_p_kw)
    assert day.peak_interval == 2  # SOME[2] = 81, the shape's peak
    # Baran & Wu (1989): 202.7 kW of losses, 0.9131 pu at their bus 18 (node 17)
    assert day.losses_kw[2] == pytest.approx(202.68, abs=0.01)
    assert day.vmin_pu[2] == pytest.approx(0.9131, abs=1e-4)
    assert day.vmin_node[2] == 17
    assert load.start is None
    assert "household" in load.source


def test_run_day_equals_power_flows_interval_by_interval() -> None:
    load, day = case33_day()
    fd = named("case33bw")
    for k, t in enumerate(SOME):
        one = run_powerflow(fd, load.p_kw[t], load.q_kvar[t])
        np.testing.assert_allclose(day.vm_pu[k], one.vm_pu, rtol=0, atol=1e-9)
        assert day.losses_kw[k] == pytest.approx(one.losses_kw, rel=1e-8)
        assert day.p_slack_kw[k] == pytest.approx(one.p_slack_kw, rel=1e-8)
        assert day.q_slack_kvar[k] == pytest.approx(one.q_slack_kvar, rel=1e-8)
        assert day.vmin_pu[k] == pytest.approx(one.vmin_pu, abs=1e-9)
        assert day.vmax_pu[k] == pytest.approx(one.vmax_pu, abs=1e-9)
    assert day.converged.all()
    assert day.vm_pu.shape == (3, fd.n_nodes)
    assert day.branch_loading_pct.shape == (3, fd.n_branches)
    assert day.p_kw.shape == (3, fd.n_nodes)
    assert day.energy_losses_kwh == pytest.approx(day.losses_kw.sum() * 0.25)
    assert day.energy_import_kwh == pytest.approx(day.p_slack_kw.sum() * 0.25)
    np.testing.assert_allclose(day.time_h, [0.0, 0.25, 0.5])
    assert not day.vm_pu.flags.writeable


def test_scaled_day_undervoltage_agrees_with_security_check() -> None:
    load, day = case33_day(1.5)
    fd = named("case33bw")
    under = day.intervals_with("undervoltage")
    assert under.tolist() == [1, 2]  # morning and evening; the night stays above 0.9 pu
    assert day.n_insecure == 2
    for k, t in enumerate(SOME):
        report = security_check(fd, load.p_kw[t], load.q_kvar[t])
        assert day.secure[k] == report.secure
        assert day.n_violations[k] == len(report.violations)
        assert day.violations[k] == report.violations
        np.testing.assert_allclose(day.branch_loading_pct[k], report.branch_loading_pct)
    assert (day.vmin_pu[under] < 0.9).all()


def test_limits_are_applied() -> None:
    load, _ = case33_day()
    fd = named("case33bw")
    strict = SecurityLimits(vmin_pu=0.95)
    day = run_day(fd, load.p_kw[SOME], load.q_kvar[SOME], limits=strict)
    assert (day.vmin_limit_pu == 0.95).all()
    assert day.secure.tolist() == [True, False, False]
    assert {v.kind for v in day.violations[2]} == {ViolationKind.UNDERVOLTAGE}


def test_a_diverging_interval_is_reported_not_raised() -> None:
    fd = named("case33bw")
    load = feeder_day_load(fd, scale=4.0)
    day = run_day(fd, load.p_kw[[8, 81]], load.q_kvar[[8, 81]])
    assert day.converged.tolist() == [True, False]
    assert np.isnan(day.vm_pu[1]).all()
    assert np.isnan(day.vmin_pu[1]) and day.vmin_node[1] == -1
    assert day.violations[1][0].kind == ViolationKind.DIVERGENCE
    assert day.n_violations[1] == 1
    assert day.peak_interval == 0  # the only interval with a substation import
    # the interval that did not converge is listed and left out of the totals
    assert day.not_converged.tolist() == [1]
    assert day.n_converged == 1
    assert day.energy_losses_kwh == pytest.approx(day.losses_kw[0] * 0.25)
    assert day.energy_import_kwh == pytest.approx(day.p_slack_kw[0] * 0.25)


def test_simbench_day_is_the_grids_peak_day() -> None:
    fd = named("1-LV-rural1--0-sw")
    load = feeder_day_load(fd)
    p_year, _ = simbench_node_profiles(fd, 0, 366 * 96)
    peak = int(np.argmax(p_year.sum(axis=1)))
    first = peak // 96 * 96
    np.testing.assert_allclose(load.p_kw, p_year[first : first + 96])
    assert load.start is not None
    assert load.n_intervals == 96
    assert "SimBench profiles" in load.source
    chosen = feeder_day_load(fd, day=200, scale=2.0)
    p200, q200 = simbench_node_profiles(fd, 200 * 96, 96)
    np.testing.assert_allclose(chosen.p_kw, 2.0 * p200)
    np.testing.assert_allclose(chosen.q_kvar, 2.0 * q200)
    day = run_day(fd, load.p_kw[:4], load.q_kvar[:4])
    assert day.converged.all()
    assert np.isfinite(day.max_loading_pct).all()
    assert (day.max_loading_branch >= 0).all()


@pytest.mark.parametrize(
    ("p", "q", "match"),
    [
        (np.zeros(33), None, r"needs shape \(T, 33\)"),
        (np.zeros((4, 32)), None, r"p_kw: needs shape \(T, 33\)"),
        (np.zeros((0, 33)), None, "at least one interval"),
        (np.zeros((4, 33)), np.zeros((3, 33)), "must have the shape of p_kw"),
    ],
)
def test_bad_shapes_rejected(p: np.ndarray, q: np.ndarray | None, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        run_day(named("case33bw"), p, q)


def test_non_finite_intervals_named() -> None:
    p = np.ones((6, 33))
    p[2, 4] = np.nan
    p[5, 0] = np.inf
    with pytest.raises(ValidationError) as caught:
        run_day(named("case33bw"), p)
    text = str(caught.value)
    assert "p_kw: is not a number (NaN) in interval (entry 2)" in text
    assert "p_kw: is infinite in interval (entry 5)" in text
    with pytest.raises(ValidationError, match="interval_s"):
        run_day(named("case33bw"), np.ones((2, 33)), interval_s=0)


def test_bad_day_and_scale_rejected() -> None:
    fd = named("case33bw")
    with pytest.raises(ValidationError, match="scale"):
        feeder_day_load(fd, scale=-1.0)
    with pytest.raises(ValidationError, match="scale"):
        feeder_day_load(fd, scale=float("nan"))
    with pytest.raises(ValidationError, match=r"day: must be a whole number in 0\.\.365"):
        feeder_day_load(fd, day=366)
