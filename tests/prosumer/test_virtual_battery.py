import numpy as np
import pytest

from transactive.devices.hvac import COOLING, HEATING, HvacPopulation
from transactive.errors import ValidationError
from transactive.prosumer.virtual_battery import (
    VirtualBattery,
    tcl_batteries_of,
    track_power,
    virtual_battery_of,
)
from transactive.weather import WeatherSample

HOT = WeatherSample(temperature_c=32.0)


def gridlabd_cooling_cop(rated: float, t_c: float) -> float:
    t_f = max(t_c * 1.8 + 32, 40.0)
    return float(rated / (-0.01363961 + 0.01066989 * t_f))


def gridlabd_cooling_capacity(rated: float, t_c: float) -> float:
    return float(rated * (1.48924533 - 0.00514995 * (t_c * 1.8 + 32)))


def test_device_batteries_follow_hao_et_al_formulas():
    pop = HvacPopulation.sample(5, np.random.default_rng(0))
    t_out, ghi = 33.0, 400.0
    b = tcl_batteries_of(pop, t_out, ghi)
    for i in range(5):
        ua, hm = pop.ua_kw_per_k[i], pop.mass_coupling_kw_per_k[i]
        ca, cm = pop.air_capacity_kj_per_k[i], pop.mass_capacity_kj_per_k[i]
        a_mat = np.array([[-(ua + hm) / ca, hm / ca], [hm / cm, -hm / cm]])
        slow = np.max(np.linalg.eigvals(a_mat).real)  # the slow ETP mode
        r = 1.0 / ua  # K/kW
        c = ua / -slow / 3600.0  # kWh/K, so that 1/(RC) is the slow mode's rate
        eta = gridlabd_cooling_cop(pop.cooling_cop[i], t_out)
        p_m = gridlabd_cooling_capacity(pop.cooling_capacity_kw[i], t_out) / eta
        theta_a = t_out + (pop.internal_gain_kw[i] + pop.solar_aperture_m2[i] * ghi / 1000) / ua
        theta_r = pop.setpoint_c[i]
        delta = min(theta_r - pop.comfort_min_c[i], pop.comfort_max_c[i] - theta_r)
        p0 = (theta_a - theta_r) / (eta * r)  # Hao et al.: baseline holding the setpoint
        assert 0 < p0 < p_m
        np.testing.assert_allclose(b.dissipation_per_s[i], 1.0 / (r * c * 3600.0), rtol=1e-9)
        np.testing.assert_allclose(b.baseline_kw[i], p0, rtol=1e-9)
        np.testing.assert_allclose(b.power_min_kw[i], -p0, rtol=1e-9)
        np.testing.assert_allclose(b.power_max_kw[i], p_m - p0, rtol=1e-9)
        np.testing.assert_allclose(b.energy_capacity_kwh[i], c * delta / eta, rtol=1e-9)
    vb = virtual_battery_of(pop, t_out, ghi_w_per_m2=ghi, kind="homogeneous")
    np.testing.assert_allclose(vb.energy_capacity_kwh, b.energy_capacity_kwh.sum())
    np.testing.assert_allclose(vb.power_max_kw, b.power_max_kw.sum())
    np.testing.assert_allclose(vb.baseline_kw, b.baseline_kw.sum())


def test_identical_houses_sum_and_sufficient_batteries_agree():
    one = HvacPopulation.sample(1, np.random.default_rng(1))
    pop = HvacPopulation(
        ua_kw_per_k=np.repeat(one.ua_kw_per_k, 4),
        mass_coupling_kw_per_k=np.repeat(one.mass_coupling_kw_per_k, 4),
        air_capacity_kj_per_k=np.repeat(one.air_capacity_kj_per_k, 4),
        mass_capacity_kj_per_k=np.repeat(one.mass_capacity_kj_per_k, 4),
        setpoint_c=np.repeat(one.setpoint_c, 4),
        comfort_min_c=np.repeat(one.comfort_min_c, 4),
        comfort_max_c=np.repeat(one.comfort_max_c, 4),
        cooling_capacity_kw=np.repeat(one.cooling_capacity_kw, 4),
        cooling_cop=np.repeat(one.cooling_cop, 4),
        internal_gain_kw=np.repeat(one.internal_gain_kw, 4),
    )
    single = virtual_battery_of(one, 32.0, kind="homogeneous")
    total = virtual_battery_of(pop, 32.0, kind="homogeneous")
    suff = virtual_battery_of(pop, 32.0, kind="sufficient")
    for field in ("power_min_kw", "power_max_kw", "energy_capacity_kwh", "baseline_kw"):
        np.testing.assert_allclose(getattr(total, field), 4 * getattr(single, field))
        np.testing.assert_allclose(getattr(suff, field), getattr(total, field))
    np.testing.assert_allclose(suff.dissipation_per_s, single.dissipation_per_s)


def test_sufficient_battery_disaggregates_into_feasible_device_signals():
    pop = HvacPopulation.sample(60, np.random.default_rng(2))
    b = tcl_batteries_of(pop, 32.0)
    vb = virtual_battery_of(pop, 32.0)
    homogeneous = virtual_battery_of(pop, 32.0, kind="homogeneous")
    assert 0 < vb.power_max_kw <= homogeneous.power_max_kw
    assert homogeneous.power_min_kw <= vb.power_min_kw < 0
    # Any (u, x) inside the battery: proportional shares are within every device's limits.
    rng = np.random.default_rng(3)
    share = b.energy_capacity_kwh / b.energy_capacity_kwh.sum()
    for _ in range(200):
        u = rng.uniform(vb.power_min_kw, vb.power_max_kw)
        x = rng.uniform(-vb.energy_capacity_kwh, vb.energy_capacity_kwh)
        u_i = share * (u + (b.dissipation_per_s - vb.dissipation_per_s) * x * 3600.0)
        x_i = share * x
        np.testing.assert_allclose(u_i.sum(), u, rtol=1e-9, atol=1e-9)  # shares add up to u
        assert (u_i <= b.power_max_kw + 1e-9).all() and (u_i >= b.power_min_kw - 1e-9).all()
        assert (np.abs(x_i) <= b.energy_capacity_kwh + 1e-12).all()


def test_energy_trajectory_is_the_exact_leaky_integrator():
    vb = VirtualBattery(-50.0, 80.0, 100.0, 1e-4, 50.0)
    x = vb.energy_trajectory_kwh(np.full(60, 20.0), 60.0, initial_kwh=5.0)
    t = 60.0 * np.arange(1, 61)
    a = 1e-4
    expected = 5.0 * np.exp(-a * t) + 20.0 / a * (1 - np.exp(-a * t)) / 3600.0
    np.testing.assert_allclose(x, expected, rtol=1e-12)
    assert vb.is_feasible(np.full(60, 20.0), 60.0)
    assert not vb.is_feasible(np.full(60, 90.0), 60.0)  # above the power limit
    assert not vb.is_feasible(np.full(600, 70.0), 60.0)  # fills the energy capacity


def test_baseline_is_the_thermostat_population_average():
    pop = HvacPopulation.sample(300, np.random.default_rng(4))
    power = [pop.step(60.0, HOT).power_kw.sum() for _ in range(6 * 60)]
    vb = virtual_battery_of(pop, HOT.temperature_c)
    np.testing.assert_allclose(np.mean(power[120:]), vb.baseline_kw, rtol=0.05)


@pytest.mark.parametrize("mode", [COOLING, HEATING])
def test_dispatch_within_the_battery_is_tracked_without_comfort_violations(mode):
    outdoor = WeatherSample(32.0) if mode == COOLING else WeatherSample(-3.0)
    pop = HvacPopulation.sample(200, np.random.default_rng(5), mode=mode)
    for _ in range(180):  # settle under the thermostat
        pop.step(60.0, outdoor)
    vb = virtual_battery_of(pop, outdoor.temperature_c)
    minutes = np.arange(120)
    u = np.where(minutes < 60, 0.8 * vb.power_max_kw, 0.8 * vb.power_min_kw)
    x = vb.energy_trajectory_kwh(u, 60.0)
    assert vb.is_feasible(u, 60.0)
    assert np.abs(x).max() > 0.3 * vb.energy_capacity_kwh  # the test uses the battery
    errors = []
    for k in range(120):
        target = vb.baseline_kw + u[k]
        track_power(pop, target)
        delivered = pop.step(60.0, outdoor).power_kw.sum()
        errors.append(delivered - target)
        t = pop.air_temperature_c
        assert (t >= pop.comfort_min_c - 1e-6).all() and (t <= pop.comfort_max_c + 1e-6).all()
    rated = pop.electric_power_kw(outdoor.temperature_c).sum()
    assert np.abs(errors).max() < 0.01 * rated


def test_bad_arguments_raise_validation_errors():
    pop = HvacPopulation.sample(3, np.random.default_rng(6))
    with pytest.raises(ValidationError, match="kind"):
        virtual_battery_of(pop, 30.0, kind="bogus")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="outdoor_temperature_c"):
        virtual_battery_of(pop, float("nan"))
    with pytest.raises(ValidationError, match="target_kw"):
        track_power(pop, float("inf"))
    with pytest.raises(ValidationError, match="deviation_kw"):
        VirtualBattery(-1.0, 1.0, 1.0, 1e-4, 1.0).energy_trajectory_kwh([np.nan], 60.0)
