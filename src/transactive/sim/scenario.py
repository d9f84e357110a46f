"""Scenario files: what one simulated day (or any horizon) of a feeder is made of.

A scenario is a TOML file (read with the standard library's :mod:`tomllib`) validated by a
pydantic v2 model. Every mistake is reported at once, each with its path in the file (for example
``population.hvac.count: must be >= 0``), as one :class:`transactive.errors.ValidationError`;
unknown keys are refused, not ignored (``extra="forbid"``).

The sections follow what a transactive-energy study states about its set-up (Hu et al.,
"Transactive Energy: an Effective Mechanism for Balancing Electric Energy System", Proc. CSEE
2019, §2.1 for the demonstrations' set-ups, §3.5 for imperfect communication):

- the clock: ``start`` (ISO timestamp with its zone), ``horizon_h``, ``market_interval_s``
  (5 minutes, the Olympic Peninsula and gridSMART interval), ``physics_step_s`` (1 minute);
- ``weather``: a TMY3 file shipped by pvlib and the day of the year it starts on;
- ``feeder``: a built-in name, SimBench code or pandapower JSON path, ``scale`` (the share of the
  feeder's own nominal load kept as unresponsive background load beside the homes),
  ``line_max_i_ka`` and how homes are spread over its load buses;
- ``population``: per device kind a ``count``, a ``participation`` share and the kind's
  ``sample()`` options, plus the ``seed`` of the whole run;
- ``mechanism``: ``fixed`` price, ``tou`` periods or the ``double_auction`` (price cap and floor,
  the price-statistics window), the flat tariff the baseline is billed at, and the DSO's check;
  or an iterative mechanism run once before the day for the EVs (``ev-valley-filling``,
  ``ev-congestion``, ``day-ahead-flex``) with its parameters in ``mechanism.iterative``
  (:class:`IterativeSpec`: period, tolerance, round limit, optional step sizes, the transformer
  limit, the fleets, the generators, the algorithm). The baseline runs as for every mechanism;
  the coordinator's forecast of everything but the coordinated EVs is the baseline run's metered
  load (per period, and per node for ``ev-congestion``), a perfect forecast since those devices
  run exactly as in the baseline; the EVs follow their schedules through the day
  (:mod:`transactive.sim.iterative`, the rules in :mod:`transactive.sim.engine`);
- ``supply``: the wholesale price (constant or per hour) and the feeder's ``capacity_kw``;
- ``comms``: message loss probability, the prices' delay in intervals, the bids' delay (fixed
  or exponential) against the lead they are sent with before the gate closure;
- ``outputs``: which result tables to write.
"""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic import (
    ValidationError as PydanticValidationError,
)

from transactive.errors import Problem, ValidationError

__all__ = [
    "BUILTIN_SCENARIOS",
    "ITERATIVE_KINDS",
    "Comms",
    "CustomerGroup",
    "DayAheadGenerator",
    "DeviceKind",
    "FeederSpec",
    "Generator",
    "GroupMechanism",
    "IterativeSpec",
    "Mechanism",
    "Outputs",
    "PopulationSpec",
    "PublishedFigure",
    "Scenario",
    "SeasonalCapacity",
    "SupplySpec",
    "TouPeriod",
    "WeatherSpec",
    "builtin_scenarios",
    "load_scenario",
    "parse_scenario",
]

DeviceKind = Literal[
    "hvac", "water_heater", "ev", "pv", "battery", "base_load", "chp", "heat_pump", "appliance"
]
KINDS: tuple[DeviceKind, ...] = (
    "hvac",
    "water_heater",
    "ev",
    "pv",
    "battery",
    "base_load",
    "chp",
    "heat_pump",
    "appliance",
)

Share = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]
Positive = Annotated[float, Field(gt=0.0)]
PositiveInt = Annotated[int, Field(gt=0)]


class _Strict(BaseModel):
    """Base of every section: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class WeatherSpec(_Strict):
    """A TMY3 file shipped by pvlib (``transactive.data.available_tmy3``) and its first day."""

    tmy3: str = "723170TYA.CSV"
    start_day: Annotated[int, Field(ge=1, le=365)] | None = None
    """Day of the year the run starts on (default: the day of ``start``)."""


class FeederSpec(_Strict):
    """The feeder and how the homes are placed on it."""

    name: str = "case33bw"
    """Built-in name, SimBench code or pandapower JSON path (relative to the scenario file)."""
    scale: NonNegative = 0.0
    """Share of the feeder's own nominal load kept as unresponsive background load per node."""
    line_max_i_ka: Positive | None = None
    """Rate every line at this current (kA), e.g. for case33bw's placeholder ratings."""
    spread_over_load_buses: Literal["proportional", "random"] = "proportional"
    """Homes per load bus: largest-remainder apportionment to nominal load, or random draws."""
    vmin_pu: Positive = 0.95
    """Lowest voltage the DSO accepts (ANSI C84.1 range A)."""
    vmax_pu: Positive = 1.05
    """Highest voltage the DSO accepts (ANSI C84.1 range A)."""

    @model_validator(mode="after")
    def _voltage_band(self) -> Self:
        if self.vmax_pu <= self.vmin_pu:
            raise ValueError("vmax_pu must exceed vmin_pu")
        return self


class KindSpec(_Strict):
    """One device kind: how many, what share takes part in the market, and its sample options.

    ``options`` are passed to the kind's ``sample(n, rng, **options)`` (for example HVAC's
    ``comfort_tolerance`` or the EVs' ``arrival_mean_h``); an option the kind does not take is
    reported with its path. Two are filled in by the simulator when not given: the houses'
    ``outdoor_temperature_c`` (HVAC, heat pumps: the weather's at the start) and, for heat
    pumps with ``hybrid_share > 0``, ``electricity_price_per_kwh`` (the tariff a hybrid's
    controller compares with gas outside a market: ``mechanism.flat_price_per_kwh``). The
    ``appliance`` kind's hours (``morning_h``, ``evening_h``) count from the run's start, and
    every cycle is made due by the horizon's end (:mod:`transactive.sim.engine`).
    """

    count: Annotated[int, Field(ge=0)] = 0
    participation: Share = 1.0
    first_home: Annotated[int, Field(ge=0)] = 0
    """Device ``i`` of the kind sits in home ``first_home + i`` (so that, e.g., the micro-CHP
    homes and the heat-pump homes of PowerMatching City are different homes)."""
    options: dict[str, Any] = Field(default_factory=dict)


_SAMPLE_OPTIONS: dict[str, frozenset[str]] = {
    "hvac": frozenset(
        {"mode", "outdoor_temperature_c", "floor_area_m2", "ua_per_m2_w_per_k", "comfort_tolerance"}
    ),
    "water_heater": frozenset(),
    "ev": frozenset(
        {
            "arrival_mean_h",
            "arrival_std_h",
            "departure_mean_h",
            "departure_std_h",
            "daily_km_mean",
            "consumption_kwh_per_km",
            "charger_kw",
            "charger_share",
        }
    ),
    "pv": frozenset({"size_kw", "curtailable_share", "curtailment_price_per_kwh"}),
    "battery": frozenset({"capacity_kwh", "c_rate"}),
    "base_load": frozenset({"annual_energy_mean_kwh", "annual_energy_cv", "time_jitter_s"}),
    "chp": frozenset({"fuel_price_per_kwh"}),
    "heat_pump": frozenset(
        {
            "outdoor_temperature_c",
            "floor_heating_share",
            "hybrid_share",
            "boiler_kw",
            "boiler_efficiency",
            "gas_price_per_kwh",
            "electricity_price_per_kwh",
        }
    ),
    "appliance": frozenset(
        {"kind_share", "morning_share", "morning_h", "evening_h", "window_h", "power_scale"}
    ),
}


class PopulationSpec(_Strict):
    """The homes' devices, one entry per kind, and the seed of the whole run."""

    seed: Annotated[int, Field(ge=0)] = 1
    hvac: KindSpec = KindSpec()
    water_heater: KindSpec = KindSpec()
    ev: KindSpec = KindSpec()
    pv: KindSpec = KindSpec()
    battery: KindSpec = KindSpec()
    base_load: KindSpec = KindSpec()
    chp: KindSpec = KindSpec()
    heat_pump: KindSpec = KindSpec()
    appliance: KindSpec = KindSpec()

    @model_validator(mode="after")
    def _options_known(self) -> Self:
        bad = []
        for kind in KINDS:
            unknown = sorted(set(getattr(self, kind).options) - _SAMPLE_OPTIONS[kind])
            if unknown:
                allowed = sorted(_SAMPLE_OPTIONS[kind]) or "none"
                bad.append(f"{kind}.options: unknown {unknown} (allowed: {allowed})")
        if bad:
            raise ValueError("; ".join(bad))
        return self

    def kind(self, kind: DeviceKind) -> KindSpec:
        """The entry of one kind."""
        spec: KindSpec = getattr(self, kind)
        return spec


class TouPeriod(_Strict):
    """One time-of-use period: ``[start_h, end_h)`` of the local day at ``price_per_kwh``."""

    start_h: Annotated[float, Field(ge=0.0, le=24.0)]
    end_h: Annotated[float, Field(ge=0.0, le=24.0)]
    price_per_kwh: float

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end_h <= self.start_h:
            raise ValueError("end_h must exceed start_h")
        return self


def _tariff_problems(
    kind: str, tou: tuple[TouPeriod, ...], fixed_price_per_kwh: float | None
) -> list[str]:
    """What is wrong with a fixed or time-of-use tariff (periods must tile the day once)."""
    problems = []
    if kind == "tou":
        if not tou:
            problems.append("tou: a time-of-use mechanism needs at least one period")
        spans = sorted((p.start_h, p.end_h) for p in tou)
        covered = 0.0
        for lo, hi in spans:
            if lo > covered:
                problems.append(f"tou: no period covers {covered} h to {lo} h")
            elif lo < covered:
                problems.append(f"tou: periods overlap at {lo} h")
            covered = max(covered, hi)
        if spans and covered < 24.0:
            problems.append(f"tou: no period covers {covered} h to 24 h")
    elif tou:
        problems.append(f"tou: periods given but the mechanism's kind is {kind!r}")
    if fixed_price_per_kwh is not None and kind != "fixed":
        problems.append(f"fixed_price_per_kwh given but the mechanism's kind is {kind!r}")
    return problems


def _tou_price(tou: tuple[TouPeriod, ...], local_hour: float) -> float:
    for period in tou:
        if period.start_h <= local_hour < period.end_h:
            return period.price_per_kwh
    return max(tou, key=lambda p: p.end_h).price_per_kwh  # local_hour == 24.0 exactly


ITERATIVE_KINDS = ("ev-valley-filling", "ev-congestion", "day-ahead-flex")
"""Mechanism kinds that coordinate the EVs by an iterative price-power exchange run once before
the transactive day (:mod:`transactive.sim.iterative`)."""

#: The step-size keys of ``mechanism.iterative`` and the (kind, algorithm) pairs each applies to.
_STEP_KEYS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "gamma": (("ev-valley-filling", None),),
    "step": (("day-ahead-flex", "dual-decomposition"), ("ev-congestion", None)),
    "response_step": (("day-ahead-flex", "dual-decomposition"),),
    "rho": (("day-ahead-flex", "admm"),),
    "fo_step": (("ev-congestion", None),),
}


class DayAheadGenerator(_Strict):
    """A generator of the ``day-ahead-flex`` pool market, with a convex quadratic cost.

    Its cost rate is ``a g + b g^2 / 2`` (``a = cost_linear_per_kwh`` in currency/kWh, ``b =
    cost_quadratic_per_kwh_per_kw`` in currency/kWh per kW, so its marginal cost ``a + b g`` is
    a price), between ``power_min_kw`` and ``power_max_kw``
    (:class:`transactive.market.iterative.day_ahead.DayAheadProblem`, after Papadaskalopoulos
    and Strbac, IEEE Trans. Power Systems 28(4), 2013, without unit commitment).
    """

    name: str
    cost_linear_per_kwh: float
    cost_quadratic_per_kwh_per_kw: Positive
    power_min_kw: NonNegative = 0.0
    power_max_kw: Positive

    @model_validator(mode="after")
    def _limits(self) -> Self:
        if not math.isfinite(self.cost_linear_per_kwh):
            raise ValueError("cost_linear_per_kwh must be finite")
        if self.power_min_kw > self.power_max_kw:
            raise ValueError("power_min_kw exceeds power_max_kw")
        return self


class IterativeSpec(_Strict):
    """The parameters of an iterative mechanism (``mechanism.iterative``).

    Every mechanism of :data:`ITERATIVE_KINDS` runs over the transactive day's horizon cut into
    periods of ``period_s`` (a whole number of market intervals; the horizon a whole number of
    periods) until both of its relative residuals are at most ``tolerance`` or ``max_rounds``
    rounds have run (:class:`transactive.market.iterative.StoppingRule`; a run stopped by the
    limit is reported as not converged). Step sizes are optional: without one the algorithm
    takes its default, derived from its paper's bound.

    - ``ev-valley-filling``: ``gamma``, Gan, Topcu and Low's step (``0 < gamma < 1/N`` for N
      EVs, refused otherwise).
    - ``ev-congestion``: ``transformer_kva`` (required: the substation transformer's limit on
      the feeder head's apparent power), ``fleets`` (fleet operators the EVs are dealt to in
      consecutive blocks of ids; default 1), ``step`` (the price coordinator's) and
      ``fo_step`` (the fleet operators' proximal step). The energy price is the supply's
      wholesale price of each period (``supply.price_per_kwh`` or ``hourly_price_per_kwh``).
    - ``day-ahead-flex``: ``algorithm`` (required: ``dual-decomposition`` or ``admm``),
      ``generators`` (required, at least one), and ``step`` and ``response_step``
      (dual decomposition) or ``rho`` (ADMM).
    """

    period_s: PositiveInt = 900
    tolerance: Positive = 1e-4
    max_rounds: PositiveInt = 2000
    algorithm: Literal["dual-decomposition", "admm"] | None = None
    gamma: Positive | None = None
    step: Positive | None = None
    response_step: Positive | None = None
    rho: Positive | None = None
    fo_step: Positive | None = None
    transformer_kva: Positive | None = None
    fleets: PositiveInt | None = None
    generators: tuple[DayAheadGenerator, ...] = ()

    def problems_for(self, kind: str) -> list[str]:
        """What does not fit the mechanism ``kind`` (each ``key: reason``)."""
        problems = []
        if kind == "day-ahead-flex":
            if self.algorithm is None:
                problems.append(
                    "algorithm: day-ahead-flex needs an algorithm, 'dual-decomposition' or 'admm'"
                )
            if not self.generators:
                problems.append("generators: day-ahead-flex needs at least one generator")
            names = [g.name for g in self.generators]
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                problems.append(f"generators: names must be unique, repeated {repeated}")
        else:
            if self.algorithm is not None:
                problems.append(f"algorithm: only day-ahead-flex takes one, not {kind!r}")
            if self.generators:
                problems.append(f"generators: only day-ahead-flex has generators, not {kind!r}")
        if kind == "ev-congestion":
            if self.transformer_kva is None:
                problems.append(
                    "transformer_kva: ev-congestion needs the transformer limit (kVA) of the "
                    "feeder head"
                )
        else:
            for key in ("transformer_kva", "fleets"):
                if getattr(self, key) is not None:
                    problems.append(f"{key}: only ev-congestion takes it, not {kind!r}")
        for key, uses in _STEP_KEYS.items():
            if getattr(self, key) is None:
                continue
            if not any(k == kind and a in (None, self.algorithm) for k, a in uses):
                takers = ", ".join(k if a is None else f"{k} with {a}" for k, a in uses)
                what = kind if self.algorithm is None else f"{kind} with {self.algorithm}"
                problems.append(f"{key}: a step of {takers}, not of {what}")
        return problems


class Mechanism(_Strict):
    """How devices are coordinated in the transactive run, and the baseline's flat tariff."""

    kind: Literal[
        "fixed",
        "tou",
        "double_auction",
        "powermatcher",
        "ev-valley-filling",
        "ev-congestion",
        "day-ahead-flex",
    ] = "double_auction"
    """The iterative kinds (:data:`ITERATIVE_KINDS`): before the transactive day the coordinator
    runs an iterative mechanism over the day's horizon with the EVs' flexibility and the
    baseline run's metered load of everything else as its forecast, and the EVs follow the
    schedules it ends with (:mod:`transactive.sim.iterative`): ``ev-valley-filling`` (Gan,
    Topcu and Low, IEEE Trans. Power Systems 28(2), 2013), ``ev-congestion`` (Hu, Yang, Bindner
    and Xue, IEEE Trans. Sustainable Energy 8(2), 2017, on the feeder with its transformer
    limit), ``day-ahead-flex`` (a day-ahead pool of generators with quadratic costs and the EVs
    as flexible demand, Papadaskalopoulos and Strbac, IEEE Trans. Power Systems 28(4), 2013,
    cleared by dual decomposition or ADMM). Their parameters are ``iterative``."""
    """``powermatcher``: the devices' bids are summed per home, then per neighbourhood
    concentrator (``homes_per_concentrator`` homes each), buyers and sellers apart
    (:func:`transactive.market.aggregate` with ``by_side=True``); the auctioneer clears the top
    with :func:`transactive.market.clear` and the price travels down
    (:func:`transactive.market.allocate`), the PowerMatcher's concentrator tree (Kok, Warmer,
    Kamphuis, AAMAS 2005; Kok, PhD thesis, VU Amsterdam, 2013, ch. 5). By-side sums make it
    exactly the flat double auction's clearing (same price, same allocation per device)."""
    flat_price_per_kwh: float = 0.12
    """The tariff the baseline run (and the ``fixed`` mechanism, unless ``fixed_price_per_kwh``
    is given) is billed at."""
    fixed_price_per_kwh: float | None = None
    tou: tuple[TouPeriod, ...] = ()
    price_cap_per_kwh: float = 1.0
    price_floor_per_kwh: float = 0.0
    price_stats_window_h: Positive = 24.0
    """Rolling window of the clearing prices whose mean and std the devices bid from (the
    Olympic Peninsula controllers used the last day, Hammerstrom et al., PNNL-17167, 2007)."""
    initial_price_std_per_kwh: NonNegative = 0.02
    """Std the statistics start from (with the supply's price as the mean) before any clearing."""
    rtp_adder: Literal["none", "load_weighted", "time_mean"] = "none"
    """The real-time price's adder: a constant added to the wholesale price the substation
    offers the auction (and buys exports back at), so that the real-time price (clearing price)
    stands against the flat tariff as a retail rate does. ``load_weighted``: revenue neutral, the
    load-weighted mean of the real-time price over the baseline run's load of the homes billed
    at it equals ``flat_price_per_kwh`` (those homes left uncoordinated pay the same under both
    tariffs), as AEP Ohio designed its RTP tariff (Widergren et al., PNNL-22128, 2014, §2);
    ``time_mean``: the time mean of the real-time price over the horizon equals the flat tariff;
    ``none``: the wholesale price as given. See :func:`transactive.sim.engine.rtp_adder_per_kwh`."""
    dso_check: bool = True
    """Run the DSO's security check (clear, check, surcharge, re-clear) every interval."""
    dso_max_rounds: PositiveInt = 4
    homes_per_concentrator: PositiveInt = 5
    """PowerMatcher only: homes under each neighbourhood concentrator (homes ``c k`` to
    ``(c + 1) k - 1`` under concentrator ``c``)."""
    iterative: IterativeSpec | None = None
    """The iterative kinds' parameters (:class:`IterativeSpec`); only with such a kind."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems = []
        if self.kind == "powermatcher" and self.dso_check:
            problems.append(
                "dso_check: the PowerMatcher tree has no DSO check in this simulator; "
                "set dso_check = false"
            )
        if self.kind in ITERATIVE_KINDS:
            if self.dso_check:
                problems.append(
                    f"dso_check: {self.kind!r} has no clearing to check (its coordination runs "
                    "before the day), so set dso_check = false"
                )
            spec = self.iterative if self.iterative is not None else IterativeSpec()
            problems += [f"iterative.{p}" for p in spec.problems_for(self.kind)]
        elif self.iterative is not None:
            problems.append(
                f"iterative: parameters of an iterative mechanism, but the kind is {self.kind!r}"
            )
        if not self.price_cap_per_kwh > self.price_floor_per_kwh:
            problems.append("price_cap_per_kwh must exceed price_floor_per_kwh")
        problems += _tariff_problems(self.kind, self.tou, self.fixed_price_per_kwh)
        if self.rtp_adder != "none" and self.kind not in ("double_auction", "powermatcher"):
            problems.append(
                f"rtp_adder: {self.rtp_adder!r} needs a real-time price (kind "
                f"'double_auction' or 'powermatcher'), but the mechanism's kind is {self.kind!r}"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def is_iterative(self) -> bool:
        """Whether the kind is one of :data:`ITERATIVE_KINDS`."""
        return self.kind in ITERATIVE_KINDS

    @property
    def iterative_spec(self) -> IterativeSpec:
        """The iterative parameters (every default filled in when the table is absent)."""
        return self.iterative if self.iterative is not None else IterativeSpec()

    def tariff_per_kwh(self, local_hour: float) -> float:
        """The fixed or time-of-use price at an hour of the local day.

        An iterative kind has no tariff of its own: outside the EVs' schedules everything runs
        at the flat tariff, which this gives.
        """
        if self.kind in ITERATIVE_KINDS:
            return self.flat_price_per_kwh
        if self.kind == "fixed":
            return (
                self.flat_price_per_kwh
                if self.fixed_price_per_kwh is None
                else self.fixed_price_per_kwh
            )
        return _tou_price(self.tou, local_hour)


class GroupMechanism(_Strict):
    """The tariff or mechanism of one customer group.

    ``none``: the group's devices run on their own (a control group: thermostats and timers,
    billed at the scenario's flat tariff); ``fixed``: billed at ``fixed_price_per_kwh`` (the
    flat tariff when not given), devices told that price; ``tou``: billed at the periods' prices,
    devices respond to them; ``double_auction``: the group's devices bid in the scenario's
    5-minute auction (its cap, floor and price window are ``mechanism``'s) and the whole home is
    billed at the clearing price (Hammerstrom et al., PNNL-17167, 2007, §2: the real-time group
    paid the 5-minute clearing price for all its energy).
    """

    kind: Literal["none", "fixed", "tou", "double_auction"]
    fixed_price_per_kwh: float | None = None
    tou: tuple[TouPeriod, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems = _tariff_problems(self.kind, self.tou, self.fixed_price_per_kwh)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def tariff_per_kwh(self, local_hour: float, flat_price_per_kwh: float) -> float:
        """The group's price at an hour of the local day (``fixed``, ``tou`` or flat)."""
        if self.kind == "tou":
            return _tou_price(self.tou, local_hour)
        if self.kind == "fixed" and self.fixed_price_per_kwh is not None:
            return self.fixed_price_per_kwh
        return flat_price_per_kwh


class CustomerGroup(_Strict):
    """A share of the homes on one tariff or mechanism (a demonstration's treatment group).

    Homes are dealt to the groups in the order the scenario lists them, the counts by
    largest-remainder apportionment of ``share`` x the number of homes; home ``h`` holds device
    ``h`` of every kind, so a group's homes bring all their devices. Inside a group the kinds'
    ``participation`` still applies (a ``none`` group never participates).
    """

    share: Share
    mechanism: GroupMechanism


class SeasonalCapacity(_Strict):
    """A capacity limit in force in some months of the year."""

    months: tuple[Annotated[int, Field(ge=1, le=12)], ...]
    capacity_kw: Positive


class Generator(_Strict):
    """A generator on the supply side of the market; it injects at the substation's node.

    ``dispatchable`` (the default): a seller's block of up to ``capacity_kw`` at
    ``wholesale + premium_per_kwh`` (the Olympic Peninsula's backup generators and the
    water-treatment plant's diesel were dispatched this way, only when the clearing price rose
    above their cost; Hammerstrom et al., PNNL-17167, 2007), or at a fixed
    ``marginal_cost_per_kwh`` (PowerMatching City's gas turbine; Bliek et al., IEEE ISGT Europe
    2010). Give exactly one of the two.

    ``wind``: a must-take turbine rated ``capacity_kw`` whose output follows the weather's wind
    speed through the idealized power curve of :func:`transactive.sim.engine.wind_power_pu`
    (cut-in, rated and cut-out speeds; the speed brought from the weather file's 10 m to
    ``hub_height_m`` by the power law with exponent 1/7). It offers its forecast output at the
    price floor (sold at any price) and injects what the wind actually gives. Unlike a
    dispatchable generator it runs in the baseline too: it needs no price.
    """

    name: str
    capacity_kw: Positive
    kind: Literal["dispatchable", "wind"] = "dispatchable"
    premium_per_kwh: NonNegative | None = None
    marginal_cost_per_kwh: float | None = None
    cut_in_m_per_s: Positive = 3.5
    rated_m_per_s: Positive = 13.0
    cut_out_m_per_s: Positive = 25.0
    hub_height_m: Positive = 30.0

    @model_validator(mode="after")
    def _priced(self) -> Self:
        problems = []
        priced = (self.premium_per_kwh is not None) + (self.marginal_cost_per_kwh is not None)
        if self.kind == "dispatchable" and priced != 1:
            problems.append(
                "a dispatchable generator needs exactly one of premium_per_kwh and "
                "marginal_cost_per_kwh"
            )
        if self.kind == "wind" and priced:
            problems.append("a wind turbine is must-take: it has no premium or marginal cost")
        if not self.cut_in_m_per_s < self.rated_m_per_s < self.cut_out_m_per_s:
            problems.append("wind speeds must satisfy cut_in < rated < cut_out")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def offer_price_per_kwh(self, wholesale_per_kwh: float) -> float:
        """What a dispatchable generator asks: its marginal cost, or wholesale + premium."""
        if self.marginal_cost_per_kwh is not None:
            return self.marginal_cost_per_kwh
        return wholesale_per_kwh + (self.premium_per_kwh or 0.0)


class PublishedFigure(_Strict):
    """A figure a demonstration published, and where our run's summary holds ours.

    ``ours_from`` is a dotted path into ``summary.json`` (e.g. ``peak_reduction_pct`` or
    ``comparisons.rtp.bill_vs_control_pct``).
    """

    value: float
    unit: str
    source: str
    ours_from: str
    note: str = ""


class SupplySpec(_Strict):
    """The feeder's connection to the wholesale market."""

    price_per_kwh: float | None = None
    """A constant wholesale price."""
    hourly_price_per_kwh: tuple[float, ...] = ()
    """24 wholesale prices, one per hour of the local day (instead of ``price_per_kwh``)."""
    capacity_kw: Positive = math.inf
    """What the substation may import (kW); ``inf`` when unconstrained."""
    seasonal_capacity: tuple[SeasonalCapacity, ...] = ()
    """Limits by month (instead of ``capacity_kw``); each month of the year in exactly one."""
    capacity_basis_homes: PositiveInt | None = None
    """When given, the limit is scaled by the homes the limit applies to over this many homes
    (a published feeder limit brought to the share of the homes simulated)."""
    capacity_basis_peak_kw: Positive | None = None
    """When given, the published limit is brought to the simulated homes by the ratio of their
    uncoordinated peak to this one: the limit is ``season limit x P / capacity_basis_peak_kw``
    with ``P`` the baseline run's peak of the load the limit applies to (the auction's homes
    less the generators for a ``market`` scope, the substation's import otherwise), so the
    limit stands to our homes' uncoordinated peak as the published one stood to the field's
    (:func:`transactive.sim.engine.capacity_limit_kw`; the baseline runs first)."""
    capacity_scope: Literal["feeder", "market"] = "feeder"
    """``feeder``: the limit is on the substation's import (every home, background load and
    losses); ``market``: on the load of the auction's homes less the generators (a virtual
    feeder, as in the Olympic Peninsula demonstration), the other groups outside it."""
    generators: tuple[Generator, ...] = ()

    @model_validator(mode="after")
    def _one_price(self) -> Self:
        given = (self.price_per_kwh is not None) + bool(self.hourly_price_per_kwh)
        if given != 1:
            raise ValueError("give exactly one of price_per_kwh and hourly_price_per_kwh")
        if self.hourly_price_per_kwh and len(self.hourly_price_per_kwh) != 24:
            raise ValueError(
                f"hourly_price_per_kwh needs 24 values, got {len(self.hourly_price_per_kwh)}"
            )
        prices = (
            [self.price_per_kwh] if self.price_per_kwh is not None else self.hourly_price_per_kwh
        )
        if not all(math.isfinite(p) for p in prices):
            raise ValueError("wholesale prices must be finite")
        if self.seasonal_capacity:
            months = sorted(m for s in self.seasonal_capacity for m in s.months)
            if months != list(range(1, 13)):
                raise ValueError(
                    "seasonal_capacity: every month 1..12 must be in exactly one season, got "
                    f"{months}"
                )
            if math.isfinite(self.capacity_kw):
                raise ValueError("give capacity_kw or seasonal_capacity, not both")
        if self.capacity_basis_homes is not None and self.capacity_basis_peak_kw is not None:
            raise ValueError("give capacity_basis_homes or capacity_basis_peak_kw, not both")
        if self.capacity_basis_peak_kw is not None and not (
            self.seasonal_capacity or math.isfinite(self.capacity_kw)
        ):
            raise ValueError(
                "capacity_basis_peak_kw scales a limit: give capacity_kw or seasonal_capacity"
            )
        return self

    def price_at(self, local_hour: float) -> float:
        """The wholesale price at an hour of the local day."""
        if self.price_per_kwh is not None:
            return self.price_per_kwh
        return self.hourly_price_per_kwh[min(int(local_hour), 23)]


class Comms(_Strict):
    """Imperfect communication between devices and the market (Hu et al. 2019, §3.5).

    Each bid and each price message is lost independently with ``loss_probability`` (1 is a
    total outage); a price reaches the devices ``delay_intervals`` intervals late.

    A bid travels ``bid_delay_s`` to the market: that delay for every bid (``fixed``), or drawn
    per bid from an exponential distribution of that mean (``exponential``, the delay of a
    memoryless queue). A device sends its bid ``bid_lead_s`` before the gate closure of its
    interval (GridLAB-D's market ``controller`` submits its bid ``bid_delay`` seconds before the
    auction clears); a bid whose delay exceeds that lead arrives after the gate closes and
    misses the market (see :mod:`transactive.sim.engine`, Communication faults). ``bid_lead_s``
    has no default: it decides which delays are late, so a bid delay must state it.
    """

    loss_probability: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    delay_intervals: Annotated[int, Field(ge=0)] = 0
    bid_delay_s: NonNegative = 0.0
    bid_delay_distribution: Literal["fixed", "exponential"] = "fixed"
    bid_lead_s: Positive | None = None

    @model_validator(mode="after")
    def _lead_given(self) -> Self:
        if self.bid_delay_s > 0 and self.bid_lead_s is None:
            raise ValueError(
                "bid_lead_s: a bid delay needs the lead its bids are sent with before the gate "
                "closure (seconds)"
            )
        return self


class Outputs(_Strict):
    """Which result tables to write beside ``summary.json`` and ``scenario.toml``."""

    timeseries: bool = True
    devices: bool = True
    peak_curves: bool = True
    peak_network: bool = True


class Scenario(_Strict):
    """A whole scenario (see the module docstring for its sections)."""

    name: str
    description: str = ""
    start: dt.datetime
    horizon_h: Positive = 24.0
    market_interval_s: PositiveInt = 300
    physics_step_s: PositiveInt = 60
    weather: WeatherSpec = WeatherSpec()
    feeder: FeederSpec = FeederSpec()
    population: PopulationSpec = PopulationSpec()
    mechanism: Mechanism = Mechanism()
    supply: SupplySpec
    comms: Comms = Comms()
    outputs: Outputs = Outputs()
    groups: dict[str, CustomerGroup] = Field(default_factory=dict)
    """Customer groups, each on its own tariff or mechanism (none: one mechanism for all)."""
    published: dict[str, PublishedFigure] = Field(default_factory=dict)
    """Figures the demonstration published, reported beside ours."""

    @field_validator("start", mode="before")
    @classmethod
    def _timestamp(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return dt.datetime.fromisoformat(value)
            except ValueError as exc:
                raise ValueError(f"not an ISO timestamp: {value!r}") from exc
        return value

    @field_validator("groups")
    @classmethod
    def _shares(cls, value: dict[str, CustomerGroup]) -> dict[str, CustomerGroup]:
        total = sum(g.share for g in value.values())
        if value and abs(total - 1.0) > 1e-9:
            raise ValueError(f"the groups' shares add up to {total:g}, not 1")
        return value

    @field_validator("start")
    @classmethod
    def _zoned(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("needs a time zone (e.g. 2021-07-15T00:00:00-05:00)")
        return value

    @model_validator(mode="after")
    def _clock(self) -> Self:
        problems = []
        if self.market_interval_s % self.physics_step_s:
            problems.append(
                f"market_interval_s ({self.market_interval_s}) must be a whole number of "
                f"physics_step_s ({self.physics_step_s})"
            )
        horizon_s = self.horizon_h * 3600.0
        if horizon_s % self.market_interval_s:
            problems.append(
                f"horizon_h ({self.horizon_h} h) must be a whole number of market intervals"
            )
        lead = self.comms.bid_lead_s
        if lead is not None and lead > self.market_interval_s:
            problems.append(
                f"comms.bid_lead_s: {lead:g} s exceeds the market interval "
                f"({self.market_interval_s} s); a device bids once per interval, on its state at "
                "the interval's start"
            )
        if self.groups:
            auction = [n for n, g in self.groups.items() if g.mechanism.kind == "double_auction"]
            if auction and self.mechanism.kind != "double_auction":
                problems.append(
                    f"mechanism: groups {auction} bid in the double auction, so mechanism.kind "
                    f"(the auction's parameters) must be 'double_auction', not "
                    f"{self.mechanism.kind!r}"
                )
        if self.supply.capacity_scope == "market" and not any(
            g.mechanism.kind == "double_auction" for g in self.groups.values()
        ):
            problems.append("supply.capacity_scope: 'market' needs a double_auction group")
        if self.mechanism.is_iterative:
            problems += self._iterative_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _iterative_problems(self) -> list[str]:
        """What an iterative mechanism needs of the rest of the scenario (paths from the top)."""
        kind = self.mechanism.kind
        spec = self.mechanism.iterative_spec
        problems = []
        period = spec.period_s
        if period % self.market_interval_s:
            problems.append(
                f"mechanism.iterative.period_s: {period} s must be a whole number of market "
                f"intervals ({self.market_interval_s} s)"
            )
        elif round(self.horizon_h * 3600.0) % period:
            problems.append(
                f"mechanism.iterative.period_s: the horizon ({self.horizon_h:g} h) must be a "
                f"whole number of periods ({period} s)"
            )
        ev = self.population.ev
        n_evs = round(ev.participation * ev.count)
        if n_evs == 0:
            problems.append(
                f"population.ev: {kind!r} coordinates EVs, but no EV takes part (count x "
                "participation rounds to 0)"
            )
        for other in KINDS:
            spec_k = self.population.kind(other)
            if other != "ev" and spec_k.count and spec_k.participation > 0:
                problems.append(
                    f"population.{other}.participation: only EVs take part in {kind!r} (every "
                    "other device runs as in the baseline), so set it to 0"
                )
        if spec.gamma is not None and n_evs and spec.gamma >= 1.0 / n_evs:
            problems.append(
                f"mechanism.iterative.gamma: must be < 1/N = {1.0 / n_evs:.6g} for N = {n_evs} "
                f"EVs (Gan, Topcu and Low 2013, §IV), got {spec.gamma:g}"
            )
        if self.groups:
            problems.append(f"groups: customer groups are not supported with {kind!r}")
        if self.supply.generators:
            where = " (its generators are mechanism.iterative.generators)"
            problems.append(
                f"supply.generators: {kind!r} has no auction for them to offer into"
                + (where if kind == "day-ahead-flex" else "")
            )
        comms = self.comms
        if comms.loss_probability >= 1.0:
            problems.append(
                "comms.loss_probability: the iterative exchange needs it below 1 (a total "
                "outage never delivers a schedule)"
            )
        if comms.delay_intervals or comms.bid_delay_s:
            problems.append(
                f"comms: {kind!r} runs its exchange before the day, so only loss_probability "
                "applies (delay_intervals and bid_delay_s must be 0)"
            )
        return problems

    def group_home_counts(self) -> dict[str, int]:
        """Homes per customer group: largest-remainder apportionment of the shares."""
        n = self.n_homes
        names = list(self.groups)
        quotas = [self.groups[k].share * n for k in names]
        counts = [math.floor(q) for q in quotas]
        order = sorted(range(len(names)), key=lambda i: (-(quotas[i] - counts[i]), i))
        for i in order[: n - sum(counts)]:
            counts[i] += 1
        return dict(zip(names, counts, strict=True))

    @property
    def market_homes(self) -> int:
        """Homes whose devices bid in the double auction's market (all without groups)."""
        if not self.groups:
            return self.n_homes
        counts = self.group_home_counts()
        return sum(
            counts[k] for k, g in self.groups.items() if g.mechanism.kind == "double_auction"
        )

    @property
    def season_capacity_kw(self) -> float:
        """The published limit in force in the month of ``start`` (``capacity_kw`` otherwise)."""
        for season in self.supply.seasonal_capacity:
            if self.start.month in season.months:
                return season.capacity_kw
        return self.supply.capacity_kw

    @property
    def capacity_kw(self) -> float:
        """The limit the run applies: the season's, scaled to the homes it covers if asked.

        With ``capacity_basis_homes`` = B the limit is ``season limit x H / B``, H the homes the
        limit applies to (the auction's homes for a ``market`` scope, every home otherwise).
        With ``supply.capacity_basis_peak_kw`` the limit depends on the baseline run: read it
        from :attr:`transactive.sim.SimulationResult.capacity_kw` (or
        :func:`transactive.sim.engine.capacity_limit_kw`); this property then raises.

        Raises
        ------
        ValueError
            The limit is scaled by the baseline's peak (``supply.capacity_basis_peak_kw``).

        """
        if self.supply.capacity_basis_peak_kw is not None:
            raise ValueError(
                "supply.capacity_basis_peak_kw: the limit is scaled by the baseline run's peak; "
                "it is known once the baseline has run (SimulationResult.capacity_kw)"
            )
        limit = self.season_capacity_kw
        basis = self.supply.capacity_basis_homes
        if basis is not None and math.isfinite(limit):
            homes = self.market_homes if self.supply.capacity_scope == "market" else self.n_homes
            limit = limit * homes / basis
        return limit

    @property
    def horizon_s(self) -> int:
        """The horizon in seconds."""
        return round(self.horizon_h * 3600.0)

    @property
    def n_intervals(self) -> int:
        """Number of market intervals."""
        return self.horizon_s // self.market_interval_s

    @property
    def n_homes(self) -> int:
        """Homes on the feeder: the last home any kind reaches (every home has at most one).

        Device ``i`` of a kind is in home ``first_home + i``, so the homes are the largest
        ``first_home + count`` of the kinds present.
        """
        return max(
            (
                self.population.kind(k).first_home + self.population.kind(k).count
                for k in KINDS
                if self.population.kind(k).count
            ),
            default=0,
        )

    @property
    def start_day(self) -> int:
        """Day of the year the weather starts on."""
        if self.weather.start_day is not None:
            return self.weather.start_day
        return min(self.start.timetuple().tm_yday, 365)

    def to_toml(self) -> str:
        """The scenario as TOML, every default filled in (what ``scenario.toml`` holds)."""
        return _toml(self.model_dump(mode="json", exclude_none=True))


def _path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc if p not in ("function-after", "function-before"))


def _problems(exc: PydanticValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not part of a scenario)"
        parts = [p.strip() for p in msg.split(";")] if err["type"] == "value_error" else [msg]
        for part in parts:
            field = _path(loc)
            head, sep, rest = part.partition(": ")
            reason = part
            if sep and " " not in head:  # "tou: ..." or "hvac.options: ..." names a sub-path
                field = f"{field}.{head}" if field else head
                reason = rest
            problems.append(Problem(field or "(scenario)", reason))
    return problems


def parse_scenario(text: str, *, source: str = "scenario") -> Scenario:
    """Validate a scenario's TOML text.

    Raises
    ------
    ValidationError
        The TOML does not parse (its line and column named), or every problem of the model,
        each with its dotted path in the file.

    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError([Problem("(toml)", str(exc))], subject=source) from None
    try:
        return Scenario.model_validate(data)
    except PydanticValidationError as exc:
        raise ValidationError(_problems(exc), subject=source) from None


def builtin_scenarios() -> dict[str, str]:
    """Built-in scenario names and their one-line descriptions."""
    out = {}
    folder = resources.files("transactive.sim") / "scenarios"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            text = entry.read_text(encoding="utf-8")
            if "street" in (data := tomllib.loads(text)):  # a P2P street (sim.p2p_street)
                out[entry.name.removesuffix(".toml")] = str(data["description"])
                continue
            scenario = parse_scenario(text, source=entry.name)
            out[entry.name.removesuffix(".toml")] = scenario.description
    return out


BUILTIN_SCENARIOS = (
    "brooklyn",
    "day-ahead-flex",
    "default",
    "ev-congestion",
    "ev-valley-filling",
    "gridsmart",
    "olympic",
    "powermatching-city",
)


def load_scenario(name_or_path: str | Path) -> tuple[Scenario, Path | None]:
    """A built-in scenario by name, or a scenario file; with the folder relative paths start in.

    Raises
    ------
    ValidationError
        Unknown name, unreadable file, or the file's problems (all of them, with paths).

    """
    text = str(name_or_path)
    folder = resources.files("transactive.sim") / "scenarios"
    builtin = folder / f"{text}.toml"
    if not text.endswith(".toml") and builtin.is_file():
        return parse_scenario(
            builtin.read_text(encoding="utf-8"), source=f"scenario {text!r}"
        ), None
    path = Path(text)
    if not path.is_file():
        names = sorted(builtin_scenarios())
        raise ValidationError(
            [Problem("scenario", f"{text!r} is neither a built-in scenario {names} nor a file")],
            subject="scenario",
        )
    try:
        body = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError([Problem("scenario", str(exc))], subject=str(path)) from None
    return parse_scenario(body, source=str(path)), path.parent


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")  # pragma: no cover - model values only


def _toml(data: dict[str, Any], prefix: str = "") -> str:
    """A minimal TOML writer for the scenario's own shape (tables, scalars, arrays, inline)."""
    lines = []
    tables = []
    for key, value in data.items():
        if isinstance(value, dict) and key != "options":
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    out = "\n".join(lines)
    for key, value in tables:
        name = f"{prefix}{key}"
        body = _toml(value, prefix=f"{name}.")
        out += (
            f"\n\n[{name}]\n{body}" if body and not body.startswith("\n") else f"\n\n[{name}]{body}"
        )
    return out.strip("\n") + ("\n" if not prefix else "")
