"""Device populations: vectorized physics, bidding and response (MISSION.md §4-§6).

Each kind is a structure-of-arrays population implementing :class:`Population`:
``bid(PriceStats) -> BidCurves``, ``respond(clearing_price, marginal_fill)``,
``step(dt_s, WeatherSample) -> StepResult``.
"""

from transactive.devices.base import Population, PriceStats, StepResult
from transactive.devices.base_load import BaseLoadPopulation
from transactive.devices.battery import BatteryPopulation
from transactive.devices.chp import CHPPopulation
from transactive.devices.ev import EVPopulation
from transactive.devices.heat_pump import HeatPumpPopulation, staffell_ashp_cop
from transactive.devices.hvac import (
    COOLING,
    HEATING,
    EtpCoefficients,
    HvacPopulation,
    cooling_capacity_factor,
    cooling_cop,
    heating_capacity_factor,
    heating_cop,
)
from transactive.devices.pv import PVPopulation
from transactive.devices.ramp import ramp_bid_price, ramp_setpoint
from transactive.devices.water_heater import WaterHeaterPopulation, synthetic_draw_profile_l_per_h

__all__ = [
    "COOLING",
    "HEATING",
    "BaseLoadPopulation",
    "BatteryPopulation",
    "CHPPopulation",
    "EVPopulation",
    "EtpCoefficients",
    "HeatPumpPopulation",
    "HvacPopulation",
    "PVPopulation",
    "Population",
    "PriceStats",
    "StepResult",
    "WaterHeaterPopulation",
    "cooling_capacity_factor",
    "cooling_cop",
    "heating_capacity_factor",
    "heating_cop",
    "ramp_bid_price",
    "ramp_setpoint",
    "staffell_ashp_cop",
    "synthetic_draw_profile_l_per_h",
]
