"""Device populations: vectorized physics, bidding and response (Hu et al., Proc. CSEE 2019, §2).

Each kind is a structure-of-arrays population implementing :class:`Population`:
``bid(PriceStats, MarketInterval, WeatherSample) -> BidCurves`` (average power over the interval),
``respond(clearing_price, marginal_fill)``, ``step(time_s, dt_s, WeatherSample) -> StepResult``.
EVs, batteries and the thermostatic loads (HVAC houses, heat pumps and water heaters, through
their virtual batteries) also implement :class:`FlexiblePopulation` (``flexibility``,
``best_response`` over a :class:`Horizon`), solved by :func:`solve_best_response`.
"""

from transactive.devices.appliance import APPLIANCE_CYCLES, AppliancePopulation
from transactive.devices.base import Horizon, MarketInterval, Population, PriceStats, StepResult
from transactive.devices.base_load import BaseLoadPopulation
from transactive.devices.battery import BatteryPopulation
from transactive.devices.chp import CHPPopulation
from transactive.devices.ev import EVPopulation
from transactive.devices.flexibility import (
    BestResponse,
    Flexibility,
    FlexiblePopulation,
    solve_best_response,
)
from transactive.devices.heat_pump import HeatPumpPopulation, HeatPumpStepResult, staffell_ashp_cop
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
    "APPLIANCE_CYCLES",
    "COOLING",
    "HEATING",
    "AppliancePopulation",
    "BaseLoadPopulation",
    "BatteryPopulation",
    "BestResponse",
    "CHPPopulation",
    "EVPopulation",
    "EtpCoefficients",
    "Flexibility",
    "FlexiblePopulation",
    "HeatPumpPopulation",
    "HeatPumpStepResult",
    "Horizon",
    "HvacPopulation",
    "MarketInterval",
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
    "solve_best_response",
    "staffell_ashp_cop",
    "synthetic_draw_profile_l_per_h",
]
