"""The weakly-centralized loop through time, and the baseline it is compared with.

Every market interval of the transactive run follows Hu et al., "Transactive Energy: an
Effective Mechanism for Balancing Electric Energy System", Proc. CSEE 2019, §3.1 (the
weakly-centralized mode): the participating devices bid the average power they would draw over
the interval (Widergren et al., PNNL-27235 Part II), the market clears them with the feeder's
supply (:func:`transactive.market.clear`), the DSO checks the dispatch on the AC power flow and
answers with locational surcharges until it is secure
(:func:`transactive.coordination.secure_clearing`), the devices respond, then every population
steps through the interval at the physics step and the metered power per node goes through the
AC power flow (:class:`transactive.network.PowerFlowRunner`) for the interval's voltages,
loadings and losses.

Rules this loop states (each one is a modelling choice, not a default hidden in the code):

- **Homes and buses.** Home ``h`` holds device ``h`` of every kind whose count exceeds ``h``;
  homes are placed over the feeder's load buses by
  :func:`transactive.network.spread_over_load_buses` and then shuffled, so participation is not
  tied to the node order. A kind's participants are its first ``round(share x count)`` devices.
- **Randomness.** One :class:`numpy.random.Generator` per kind, spawned from the scenario's seed
  (:class:`numpy.random.SeedSequence`), plus one for the placement and one for message loss, so a
  seed reproduces both runs bit for bit; the baseline samples the very same homes.
- **Non-participants** run on their own (thermostats and timers, see Baseline) and the market
  sees each of them as an unresponsive block at the price cap of its
  expected mean power: what they draw in the interval left alone, stepped on a copy under the
  interval's forecast weather; the base load bids its profile's interval mean at the cap
  (:class:`transactive.devices.BaseLoadPopulation`). Non-participants are billed at the flat
  tariff, participants at their node's price (clearing price plus the DSO's surcharge).
- **Capacity.** The market buys at most ``capacity_kw`` less the background load, less the
  losses the feeder would have at its capacity (the losses of the price window's interval of
  largest import scaled by the square of capacity over that import, as I²R losses scale;
  :func:`_losses_at_capacity` says why not the last interval's), less a reserve for metering
  against the plan: the larger of 1 % of the capacity and the largest excess of metered over
  planned feeder load in the price window (thermostats overriding their schedule at the band's
  edges, non-participants' forecast error, devices acting on a stale price). The substation's
  import then stays within its capacity whenever the bids leave the market room to ration; the
  summary counts the minutes it did not. The feeder may export back at the substation's price
  (wholesale plus the real-time price's adder), up to the same capacity. The limit is the
  scenario's (its season's), scaled by homes or by the baseline's uncoordinated peak
  (:func:`capacity_limit_kw`). The capacity is also what caps a **rebound**: when the hourly
  wholesale price steps down, the devices that deferred while it was high buy at once (each
  device's flexible block sits at its own ramp price, spread by its temperature, but a step in
  the price crosses many of them together); the market rations them to its room. On the
  ``default`` day the transactive peak (3,424 kW at 18:00) is the 18:00 step filling the room
  (the load sits at 3,407-3,424 kW from 18:00 to 18:35, 3,106 kW just before), and the day's
  largest jump (+1,846 kW into 21:00, against at most +231 kW in the baseline) stops at the same
  room (3,408 kW). What the devices then defer is bought back at the next step down; spreading
  that payback over price is the devices' bid (see the ``can``-run block of
  :mod:`transactive.devices.hvac`), not a rule of this loop.
- **Price statistics** for bidding: mean and standard deviation of the clearing prices of the
  last ``price_stats_window_h`` hours (PNNL-17167's controllers used the last day); until an hour
  of prices is known the mean is the substation's price and the std ``initial_price_std_per_kwh``,
  which is also the least std the devices are given: a window of equal prices (std 0) would
  collapse every device's price band onto the mean and make them all buy together at the next
  lower price (the rebound the Olympic Peninsula's ramp bids avoid by bidding across a band).
- **Communication faults** (Hu et al. 2019, §3.5): each participant's bid and each price
  message is lost independently with ``loss_probability``. A lost bid leaves the device
  unresponsive to the market at its last metered power (a block at the cap of what it drew, or
  at the floor of what it injected, in the interval before); a device that misses the price (or
  whose bid was lost) keeps its last setpoint, that is, it responds with the last price and fill
  it received. Before the first interval, a participant's last price is the substation's offer
  (fill 1) and its last metered power what that price gets it over the first interval (the
  feeder ran before the run starts; :meth:`_Run._last_known_at_start`). A price arrives
  ``delay_intervals`` intervals late: devices act on the price (and their fill) of that many
  intervals before. **Bid delay**: the market of an interval closes at the interval's start
  (the gate closure); each device sends its bid ``bid_lead_s`` before it (GridLAB-D's market
  ``controller`` submits ``bid_delay`` seconds before the auction clears) and the bid takes
  ``bid_delay_s`` (``fixed``) or a delay drawn per bid, exponential with that mean
  (``exponential``, from its own seeded stream). A bid whose delay exceeds the lead arrives
  after the gate closure and misses the market: the device is treated exactly as one whose bid
  was lost (a bid already lost cannot also be late). The bid itself is still the device's state
  at the interval's start (the lead is not simulated as an earlier bid), so a delay within the
  lead changes nothing, bit for bit. ``messages_lost`` counts the lost bids and prices and the
  late bids (all of them missed the market); the summary's ``comms`` block counts the late bids
  apart (``bids_late``, and ``messages.bids.late`` beside ``messages.bids.lost``). Messages are
  those between the market and the devices that bid in the auction (one bid and one price per
  device and interval); a tariff group's devices and non-participants exchange none.
  **Measured** on ``default`` with 10 % loss: the faulty run's peak was 270 kW below the
  fault-free run's, not because lost messages broke up a synchronized rebound but because of
  the start: a bid lost in the first interval was planned at 0 kW (nothing metered yet) while
  the device drew its power, that 277 kW surprise became the metering reserve of the whole
  24-h price window (see Capacity), and the market offered 277 kW less room all day (3,035
  against 3,312 kW at 17-19 h); both peaks are the market filling its room when the wholesale
  price steps down at 18:00. With the last metered power known from the start (above), the
  faulty run's peak is 3,402 kW against 3,424 kW without faults (same room; the reserve from
  stale prices stays under the 1 % margin). **What the faults cost**: a scenario with faults
  (``loss_probability > 0``, a price delay or a bid delay) also runs the transactive run without
  them (``transactive_no_faults``: the same homes, seed, RTP adder and limit, every message
  delivered on time; bit for bit the run of the same scenario with its ``comms`` section
  removed), and the summary's ``comms`` block gives the messages sent, lost and late by kind and
  the KPIs of the faulty run less the fault-free one's. That third run is kept apart
  (:attr:`SimulationResult.no_faults`), not among the results files' runs.
- **Baseline**: the same homes, weather and feeder with no mechanism: thermostats (HVAC, water
  heaters) on their deadband controllers, PV at full output, EVs charging at full power from
  arrival until full (their own urgency bid answered at the price floor with a full fill, which
  is the most they can take), smart appliances starting their cycle when they are loaded (the
  same answer to their own bid, :class:`transactive.devices.AppliancePopulation`), batteries
  idle (no price to arbitrage against), the base load on its profile; everything billed at the
  flat tariff. Non-participating EVs and appliances run so in the transactive run too (the
  generic dry run of a non-participant would never start an appliance before its latest start).
- **The real-time price's adder** (``mechanism.rtp_adder``, :func:`rtp_adder_per_kwh`): the
  substation offers the auction the wholesale price plus a constant adder ``a`` (and buys exports
  back at the same), so the clearing price is a retail real-time price. ``load_weighted``
  (revenue neutral, as a utility designs an RTP tariff and AEP Ohio designed gridSMART's,
  Widergren et al., PNNL-22128, 2014, §2): with ``E_t`` the baseline run's energy of the homes
  billed at the real-time price in interval ``t`` (the baseline runs first on the same homes and
  weather) and ``w_t`` the wholesale price, ``a = flat - sum_t w_t E_t / sum_t E_t``, so that
  ``sum_t (w_t + a) E_t = flat x sum_t E_t``: those homes left uncoordinated would pay under the
  RTP exactly their flat bill. ``time_mean``: ``a = flat - mean_t w_t`` over the horizon's
  intervals (the price's time mean is the flat tariff, which overcharges a class whose load
  peaks with the price). ``none``: ``a = 0``. Generators' offers stay on the wholesale price.
- **Fixed and time-of-use** mechanisms: participants bid and respond to the tariff of the
  interval (no clearing, no DSO check) and are billed at it. The price statistics they bid from
  are their own tariff's over the price window before the interval (a published tariff is known
  ahead; :meth:`_Run._tariff_stats`), so a TOU's peak price stands above its mean and the ramp
  controller shifts the setpoint away from it, and a fixed price (its own mean) shifts nothing.
  (Before, the mean was the interval's own tariff: a TOU participant saw every price at its mean
  and never shifted; on the ``olympic`` day its peak-hour share of energy stayed 34 %.)
- **Customer groups** (a demonstration's treatment groups, Hammerstrom et al., PNNL-17167,
  2007): each group's homes bring all their devices and the whole home is billed at the group's
  price (clearing price, fixed or TOU tariff, or the flat tariff for a ``none``/control group,
  whose devices never hear a price). Only ``double_auction`` groups bid; with a ``feeder``
  capacity scope the other groups enter the auction as unresponsive blocks (a tariff group at
  its answer to the tariff), with a ``market`` scope (a virtual feeder) they stay outside it and
  the limit applies to the auction groups' load less the generators' output.
- **Generators** offer their capacity at the wholesale price plus their premium, or at their
  marginal cost; what the auction dispatches injects at the substation's node (series
  ``generator_kw``, and ``generator_kw:<name>`` for each). A **wind turbine** is must-take: it
  offers the output its power curve gives at the interval's forecast wind speed at the price
  floor, injects what the physics steps' wind gives (the substation absorbs the difference), and
  runs in the baseline too; a dispatchable generator never runs in the baseline (no price).
- **Homes of a kind**: device ``i`` of a kind is in home ``first_home + i`` (so two kinds can
  sit in different homes, e.g. micro-CHP homes and heat-pump homes).
- **Micro-CHP** (:class:`transactive.devices.CHPPopulation`) in the baseline, and when not
  participating, runs heat-led: it answers its own bid at the price cap with the fullest
  output (fill 0), the most its heat buffer takes over the interval (full power until the
  buffer is full, then following the heat demand). **Heat pumps**
  (:class:`transactive.devices.HeatPumpPopulation`) are thermostats in the baseline; their
  houses' comfort counts with the HVAC houses'.
- **Hybrid heat pumps** (``heat_pump`` with ``hybrid_share > 0``): each hybrid's controller
  compares gas with the electricity tariff it is told outside a responded interval, which is
  the scenario's flat tariff (``electricity_price_per_kwh = mechanism.flat_price_per_kwh``)
  unless the kind's options give one; so in the baseline (and as a non-participant) the
  boiler heats when the flat tariff is above the switch price. The boilers' gas is metered
  per step (:class:`transactive.devices.HeatPumpStepResult`), summed into the series
  ``gas_kw`` and billed at each house's ``gas_price_per_kwh`` inside the homes' ``cost`` (the
  same gas price in both runs), with ``gas_kwh`` and ``gas_cost`` (the gas part of ``cost``)
  beside it: a hybrid that burns gas instead of buying electricity pays for the gas, in the
  baseline as in the transactive run. The micro-CHP's fuel is not billed (its
  ``fuel_price_per_kwh`` is a marginal cost it bids with, not a gas meter).
- **Appliances and the horizon**: every cycle is made due by the horizon's end,
  ``latest_finish = min(latest_finish, max(horizon end, earliest_start + D))`` with ``D`` the
  cycle's duration (:func:`_within_horizon`): a cycle that fits between its loading and the
  horizon's end must be over by then, in both runs, and one loaded later than ``end - D`` must
  start when it is loaded (as it does in the baseline). So no run can shift a cycle past the
  horizon and look cheaper for energy it never metered; ``unserved_appliance_kwh`` (the
  cycles due by the end that had not run in full, :meth:`AppliancePopulation.unserved_kwh`) is
  then zero whenever the devices kept their deadlines. The summary's notes count the windows
  cut. The sample's hours count from the run's start, as the EVs' do.
- **Where the market clears**: the loop hands each interval's bids, nodes, homes and supply to
  a :class:`MarketAccess` and reads back a clearing and the node prices; after the physics it
  hands over each row's metered energy. :class:`InProcessMarket` (the default) is the
  mechanism's clearing in this process; :class:`transactive.sim.live.LiveService` clears on a
  running ``transactive serve`` over HTTP, with the same clearing for the same seed.
- **Iterative mechanisms** (``ev-valley-filling``, ``ev-congestion``, ``day-ahead-flex``;
  :mod:`transactive.sim.iterative`). Only EVs take part (every other kind must have
  ``participation = 0``): the first ``round(share x count)`` EVs are coordinated, the others
  charge at once as in the baseline. The baseline runs as for every mechanism; then, before
  the transactive day, the coordinator runs the iterative exchange over the whole horizon in
  periods of ``mechanism.iterative.period_s`` with the coordinated EVs' flexibility at the
  start (:meth:`transactive.devices.EVPopulation.flexibility`, nothing delivered yet) and, as
  its forecast of everything else, the baseline run's metered load of every device but the
  coordinated EVs plus the background load, per period (and per node for ``ev-congestion``,
  with the background's reactive power; devices draw none): a **perfect forecast**, since
  those devices run in the transactive run exactly as in the baseline (same homes, seeds and
  weather, the flat tariff). The losses are not in the forecast (valley filling and the
  day-ahead pool have no network; ``ev-congestion`` computes them on its own AC power flow).
  The same problem is solved in one piece (the algorithm's centralized twin) and the relative
  gap of the exchange's last objective to it recorded. The scenario's ``comms.loss_probability``
  applies to the exchange's messages (:class:`transactive.market.iterative.CommsFaults`, seeded
  from its own stream); with loss the no-faults run follows a plan made without it.
  **During the day** the coordinated EVs follow their schedules: in each market interval each
  one bids as always and is answered with the price and fill at which its own curve reads its
  scheduled average power for that interval (:func:`transactive.sim.iterative.price_and_fill_for`;
  a period's power spread over its intervals at a constant rate while plugged in), so it meters
  its schedule. Every other device runs as in the baseline at the flat tariff, so the
  difference to the baseline is the EVs' coordination. No auction clears (no clearing price,
  no DSO check: the scenario must say ``dso_check = false``). **Billing**: a coordinated EV pays
  the mechanism's price of its period for its metered energy where the mechanism has one (the
  day-ahead pool's clearing price; ``ev-congestion``'s price of the EV's node: energy, losses,
  congestion and voltage), the flat tariff under valley filling (whose control signal is in kW,
  no price); everything else pays the flat tariff. The series ``substation_kva`` (the feeder
  head's apparent power in the AC power flow, every run) and ``ev_scheduled_kw`` (the
  coordinated EVs' scheduled power, the transactive runs) are added for such scenarios.
- **PowerMatcher** mechanism (:func:`powermatcher_clearing`): the bids are summed per home,
  then per neighbourhood concentrator, buyers and sellers apart; the generators join the
  auctioneer at the top, which clears with the grid connection as the supply; each device's
  allocation comes back down by :func:`transactive.market.allocate`. It is exactly the flat
  double auction's clearing, so the devices are billed at the clearing price as participants
  of the auction are. No DSO check runs in the tree (the scenario must say ``dso_check =
  false``).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from transactive.curves import BidCurves, _stacked_padded, default_ids
from transactive.devices import (
    AppliancePopulation,
    BaseLoadPopulation,
    BatteryPopulation,
    CHPPopulation,
    EVPopulation,
    HeatPumpPopulation,
    HeatPumpStepResult,
    HvacPopulation,
    MarketInterval,
    PriceStats,
    PVPopulation,
    WaterHeaterPopulation,
)
from transactive.devices._steps import StepSeries
from transactive.errors import Problem, ValidationError
from transactive.results_format import (
    DEVICE_COLUMNS,
    LOAD_PREFIX,
    SERIES_EVERY_RUN,
    SERIES_MARKET,
)
from transactive.sim.iterative import price_and_fill_for
from transactive.sim.scenario import KINDS, DeviceKind, Scenario
from transactive.weather import WeatherSample

if TYPE_CHECKING:
    from transactive.coordination import SecureClearingOutcome
    from transactive.market import Supply
    from transactive.sim.iterative import IterativePlan

__all__ = [
    "ClearingLike",
    "InProcessMarket",
    "MarketAccess",
    "MarketAccessFactory",
    "MarketAnswer",
    "MarketRequest",
    "RunResult",
    "SimulationResult",
    "capacity_limit_kw",
    "has_faults",
    "market_groups",
    "rtp_adder_per_kwh",
    "simulate",
    "wind_power_pu",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

ProgressFn = Callable[[str, int, int], None]
"""``progress(run, intervals_done, intervals_total)``."""


class ClearingLike(Protocol):
    """What the loop reads of a clearing (:class:`transactive.market.ClearingResult` has it)."""

    @property
    def clearing_price(self) -> float:
        """The uniform price (currency/kWh)."""
        ...

    @property
    def clearing_quantity_kw(self) -> float:
        """Power traded (the sum of allocated purchases)."""
        ...

    @property
    def allocation_kw(self) -> FloatArray:
        """Each bid curve's power at the price (positive bought, negative sold)."""
        ...

    @property
    def marginal_fill(self) -> FloatArray:
        """Each curve's point on its segment at the price (what a device's ``respond`` reads)."""
        ...

    @property
    def supply_kw(self) -> float:
        """Power the supply delivered into the market (positive: imported)."""
        ...


@dataclass(frozen=True, eq=False)
class MarketRequest:
    """One interval's clearing as the loop hands it to the market (see :class:`MarketAccess`).

    ``bids`` has one curve per device in the auction (carrying the devices' ids), then one per
    generator; ``nodes``, ``homes`` (-1 for a generator) and ``billed_at_market`` (whether the
    run bills the row at its node's price, else at the flat or a group's tariff) are per row.
    ``supply`` is the substation's offer for this interval (its room changes every interval).
    """

    t: int
    start_s: int
    bids: BidCurves
    nodes: IntArray
    homes: IntArray
    billed_at_market: npt.NDArray[np.bool_]
    supply: Supply
    price_cap: float
    price_floor: float


@dataclass(frozen=True, eq=False)
class MarketAnswer:
    """A market's answer to a :class:`MarketRequest`.

    ``node_price_per_kwh`` holds the price at every node of the feeder (clearing price plus the
    DSO's surcharge); ``dso`` the DSO loop's outcome
    (:class:`transactive.coordination.SecureClearingOutcome`) when the check ran, else None.
    """

    result: ClearingLike
    node_price_per_kwh: FloatArray
    dso: SecureClearingOutcome | None = None


class MarketAccess(Protocol):
    """How the loop reaches the market: in-process, or a live service over HTTP.

    The loop calls :meth:`clear` once per interval that has a clearing and, after the physics of
    that interval, :meth:`metered` with each row's metered energy (kWh over the interval, the
    rows of the request: + consumed, - injected). :class:`InProcessMarket` is the in-process
    market; :class:`transactive.sim.live.LiveMarket` speaks to ``transactive serve``.
    """

    def clear(self, request: MarketRequest) -> MarketAnswer:
        """Clear one interval."""
        ...

    def metered(self, t: int, energy_kwh: FloatArray) -> None:
        """Take the metered energy of every row of interval ``t``'s request."""
        ...


MarketAccessFactory = Callable[[str, Scenario, Any], MarketAccess]
"""``factory(run_name, scenario, feeder)``: the market of one run with a market (the runs
``transactive`` and ``transactive_no_faults``; the baseline has none)."""


class InProcessMarket:
    """The market cleared in this process: the mechanism's clearing, exactly as the loop runs it.

    ``dso_check``: :func:`transactive.coordination.secure_clearing` on the run's power-flow
    runner; ``powermatcher``: :func:`powermatcher_clearing` over the homes; else
    :func:`transactive.market.clear` with one price at every node. Metered energy is not used
    (the run bills it itself).
    """

    def __init__(
        self,
        scenario: Scenario,
        feeder: Any,
        runner: Any,
        *,
        limits: Any,
        background_p_kw: FloatArray,
        background_q_kvar: FloatArray,
    ) -> None:
        self.scenario = scenario
        self.feeder = feeder
        self.runner = runner
        self.limits = limits
        self.background_p_kw = background_p_kw
        self.background_q_kvar = background_q_kvar

    def clear(self, request: MarketRequest) -> MarketAnswer:
        """Clear the interval's bids with the scenario's mechanism."""
        from transactive.coordination import secure_clearing  # noqa: PLC0415
        from transactive.market import clear  # noqa: PLC0415

        mech = self.scenario.mechanism
        cap, floor = request.price_cap, request.price_floor
        n_nodes = self.feeder.n_nodes
        if mech.dso_check:
            outcome = secure_clearing(
                request.bids,
                request.nodes,
                self.feeder,
                price_cap=cap,
                price_floor=floor,
                supply=request.supply,
                limits=self.limits,
                background_p_kw=self.background_p_kw,
                background_q_kvar=self.background_q_kvar,
                max_rounds=mech.dso_max_rounds,
                runner=self.runner,
            )
            result = outcome.final.clearing
            node_price = result.clearing_price + np.asarray(outcome.surcharge_per_kwh)
            return MarketAnswer(result, node_price, outcome)
        if mech.kind == "powermatcher":
            result = powermatcher_clearing(
                request.bids,
                request.homes,
                homes_per_concentrator=mech.homes_per_concentrator,
                price_cap=cap,
                price_floor=floor,
                supply=request.supply,
            )
            return MarketAnswer(result, np.full(n_nodes, result.clearing_price))
        result = clear(request.bids, price_cap=cap, price_floor=floor, supply=request.supply)
        return MarketAnswer(result, np.full(n_nodes, result.clearing_price))

    def metered(self, t: int, energy_kwh: FloatArray) -> None:
        """Nothing to do: the in-process run bills its devices itself."""


_CLASSES: dict[str, Any] = {
    "hvac": HvacPopulation,
    "water_heater": WaterHeaterPopulation,
    "ev": EVPopulation,
    "pv": PVPopulation,
    "battery": BatteryPopulation,
    "base_load": BaseLoadPopulation,
    "chp": CHPPopulation,
    "heat_pump": HeatPumpPopulation,
    "appliance": AppliancePopulation,
}
_AT_ONCE = ("ev", "appliance")
"""Kinds that, left alone, run at once: an EV charges from its arrival, an appliance starts its
cycle when it is loaded (their own bid answered at the price floor with a full fill)."""
CAPACITY_MARGIN = 0.01
"""Share of the capacity kept free for metering against the forecast (see the module docstring)."""
STATS_MIN_SAMPLES_S = 3600
"""Prices known before their statistics replace the initial ones (one hour)."""


@dataclass
class _Group:
    """One kind's participants or non-participants: a population and where its devices are."""

    kind: DeviceKind
    participating: bool
    population: Any
    label: str
    """The devices' group in the results: the customer group, or (participant|non-participant)."""
    mode: str
    """``auction`` (bids in the double auction), ``tariff`` (told a fixed or TOU price) or
    ``own`` (runs on its own)."""
    bill: str
    """What the transactive run bills it at: ``market`` (node price), ``tariff`` or ``flat``."""
    tariff: Any
    """The :class:`GroupMechanism` (or scenario :class:`Mechanism`) whose tariff applies."""
    in_auction: bool
    """Whether the auction sees it (as bids, or as an unresponsive block)."""
    bus: IntArray
    home: IntArray
    """Each device's home (device ``i`` of a kind is in home ``first_home + i``)."""
    last_power_kw: FloatArray
    last_price: FloatArray
    last_fill: FloatArray
    energy_kwh: FloatArray
    cost: FloatArray
    """What each device's electricity cost its home (its gas is billed in :meth:`_Run._result`)."""
    discomfort_dh: FloatArray
    gas_kwh: FloatArray
    """Gas each device burnt (a hybrid heat pump's boiler; zero for every other device)."""

    @property
    def n(self) -> int:
        return int(self.bus.size)


@dataclass
class RunResult:
    """One run through the horizon (``baseline`` or ``transactive``).

    ``series`` maps a series name (the names of the results format, e.g. ``feeder_load_kw``) to
    one value per interval; ``devices`` holds one row per device (``device_id``, ``kind``,
    ``bus``, ``group``, ``energy_kwh``, ``cost``, ``comfort_violation_degree_hours``,
    ``unserved_kwh``); ``kpis`` the run's KPIs; ``peak`` what was seen at its peak interval.
    """

    name: str
    series: dict[str, FloatArray]
    devices: dict[str, npt.NDArray[Any]]
    kpis: dict[str, float | None]
    peak_index: int
    peak_vm_pu: FloatArray
    peak_branch_loading_pct: FloatArray
    peak_demand: BidCurves | None = None
    peak_supply: BidCurves | None = None
    dso_notes: list[str] = field(default_factory=list)
    dso_loop_intervals: int = 0
    """Intervals whose first clearing was not secure, so the DSO's surcharges were needed."""
    timings_s: dict[str, float] = field(default_factory=dict)
    messages: dict[str, dict[str, int]] = field(default_factory=dict)
    """Messages between the market and the auction's devices: ``{"bids": {"sent": n, "lost":
    n}, "prices": {...}}`` (empty for the baseline, which has no market)."""
    other_node_kw: FloatArray | None = None
    """``(I, B)`` per interval and node, the metered load of everything but the EVs an
    iterative mechanism coordinates, background included (None without such a mechanism):
    the baseline's is the coordinator's forecast (see Iterative mechanisms in the module)."""


@dataclass
class SimulationResult:
    """Both runs of a scenario, on the same homes, weather and feeder."""

    scenario: Scenario
    feeder_name: str
    interval_start_s: IntArray
    runs: dict[str, RunResult]
    wall_s: float
    rtp_adder_per_kwh: float = 0.0
    """The adder on the wholesale price in the transactive run (:func:`rtp_adder_per_kwh`)."""
    no_faults: RunResult | None = None
    """The transactive run without communication faults (``transactive_no_faults``), run only
    when the scenario has faults; not one of :attr:`runs` (the results files hold two runs)."""
    capacity_kw: float = math.inf
    """The capacity limit both runs applied (:func:`capacity_limit_kw`; ``inf``: none)."""
    appliance_windows_cut: int = 0
    """Appliance cycles whose sampled window ended after the horizon, made due by its end
    (:func:`_within_horizon`)."""
    iterative: IterativePlan | None = None
    """The iterative mechanism's day-ahead plan the transactive run followed (None for the other
    mechanisms; :mod:`transactive.sim.iterative`)."""
    iterative_no_faults: IterativePlan | None = None
    """The same plan made without communication faults, which the no-faults run followed (only
    for an iterative mechanism with faults)."""


_STREAMS = ("placement", "comms", "bid_delay", "iterative")
"""The random streams beside the device kinds' (see :func:`_stream`)."""
_KINDS_BEFORE_STREAMS = 8
"""Kinds numbered before :data:`_STREAMS` (the kinds there were when the streams were added)."""
_STREAM_SLOTS = 16
"""Children kept for :data:`_STREAMS` (and streams added later) before the later kinds'."""


def _stream(seed: int, name: str) -> np.random.SeedSequence:
    """The seed of one random stream: child ``i`` of the scenario's :class:`SeedSequence`.

    The first :data:`_KINDS_BEFORE_STREAMS` kinds of :data:`KINDS` are children 0-7, the
    streams of :data:`_STREAMS` (placement, message loss, bid delays, the iterative exchange's
    faults) the children from 8 on,
    and a kind added to :data:`KINDS` later a child after the :data:`_STREAM_SLOTS`, so adding a
    kind (or a stream, at the end of :data:`_STREAMS`) leaves every other stream, and every run
    without the new kind, bit for bit as it was. ``SeedSequence(seed, spawn_key=(i,))`` is
    exactly ``SeedSequence(seed).spawn(n)[i]``.
    """
    if name in _STREAMS:
        index = _KINDS_BEFORE_STREAMS + _STREAMS.index(name)
    else:
        index = [str(k) for k in KINDS].index(name)
        if index >= _KINDS_BEFORE_STREAMS:
            index += _STREAM_SLOTS
    return np.random.SeedSequence(seed, spawn_key=(index,))


class _Setup:
    """What both runs share: the feeder, the weather, the homes' buses and the seeds."""

    def __init__(self, scenario: Scenario, base_dir: Path | None) -> None:
        from transactive.data import load_tmy3  # noqa: PLC0415
        from transactive.network import load_feeder, spread_over_load_buses  # noqa: PLC0415

        self.scenario = sc = scenario
        name = sc.feeder.name
        path = Path(name)
        if base_dir is not None and name.endswith(".json") and not path.is_absolute():
            name = str(base_dir / path)
        self.feeder = load_feeder(name, line_max_i_ka=sc.feeder.line_max_i_ka)
        self.feeder_name = sc.feeder.name
        horizon_s = sc.horizon_s
        local = sc.start.hour * 3600 + sc.start.minute * 60 + sc.start.second
        days = (local + horizon_s) / 86400.0 + 1.0 / 24.0
        self.local_start_s = local
        self.physics = load_tmy3(
            sc.weather.tmy3, step_s=sc.physics_step_s, start_day=sc.start_day, days=days
        )
        self.forecast = load_tmy3(
            sc.weather.tmy3, step_s=sc.market_interval_s, start_day=sc.start_day, days=days
        )
        if local % sc.market_interval_s:
            raise ValidationError(
                [Problem("start", "must fall on a whole market interval of the local day")],
                subject="scenario",
            )
        self.physics_offset = local // sc.physics_step_s
        self.forecast_offset = local // sc.market_interval_s
        seed = sc.population.seed
        self.kind_seeds = {kind: _stream(seed, kind) for kind in KINDS}
        self.placement_seed = _stream(seed, "placement")
        self.comms_seed = _stream(seed, "comms")
        self.bid_delay_seed = _stream(seed, "bid_delay")
        self.iterative_seed = int(_stream(seed, "iterative").generate_state(1)[0])
        """The seed of the iterative exchange's :class:`CommsFaults` (its own stream)."""
        n_homes = sc.n_homes
        rng = np.random.default_rng(self.placement_seed)
        if sc.feeder.spread_over_load_buses == "random":
            bus = spread_over_load_buses(n_homes, self.feeder, rng)
        else:
            bus = rng.permutation(spread_over_load_buses(n_homes, self.feeder))
        self.home_bus = np.asarray(bus, dtype=np.int64)
        bg = sc.feeder.scale * np.asarray(self.feeder.load_p_kw, dtype=np.float64)
        self.background_p_kw = bg
        self.background_q_kvar = sc.feeder.scale * np.asarray(
            self.feeder.load_q_kvar, dtype=np.float64
        )
        self.appliance_windows_cut = 0
        """Set by :meth:`groups` (the same every call): see Appliances and the horizon."""
        self._batch_flow: Any = None
        """The feeder's power-grid-model runner, built on first use and shared by every run."""

    def runner(self) -> Any:
        """The fastest AC power flow the feeder allows, as a per-interval runner.

        power-grid-model (:class:`transactive.network.BatchPowerFlow`, about 0.5 ms per flow on
        case33bw against pandapower's 50 ms, voltages within 1e-8 pu of pandapower's), built
        once and shared by the runs: its flows keep no state between calls (every call sets
        every node's injection), so a run's flows are the same on a shared or a fresh one.
        pandapower's :class:`~transactive.network.PowerFlowRunner` for a net power-grid-model
        cannot model, a fresh one per run (its net carries the last flow's results).
        """
        from transactive.network import BatchPowerFlow, PowerFlowRunner  # noqa: PLC0415

        if self._batch_flow is None:
            try:
                self._batch_flow = BatchPowerFlow(self.feeder)
            except ValidationError:
                self._batch_flow = False
        if self._batch_flow is False:
            return PowerFlowRunner(self.feeder, replace_injections=True)
        return self._batch_flow

    def groups(self) -> list[_Group]:
        """Fresh populations (the same every call: their generators restart from the seed)."""
        sc = self.scenario
        out = []
        windows_cut = 0
        t_out = float(self.physics[self.physics_offset].temperature_c)
        for kind in KINDS:
            spec = sc.population.kind(kind)
            if spec.count == 0:
                continue
            rng = np.random.default_rng(self.kind_seeds[kind])
            options = dict(spec.options)
            for key, value in options.items():
                if isinstance(value, list):
                    options[key] = tuple(value)
            if kind in ("hvac", "heat_pump"):
                options.setdefault("outdoor_temperature_c", t_out)
            if kind == "heat_pump" and _positive(options.get("hybrid_share", 0.0)):
                # a hybrid's controller compares gas with the tariff it is told outside a
                # market: the scenario's flat tariff unless the options say otherwise
                options.setdefault("electricity_price_per_kwh", sc.mechanism.flat_price_per_kwh)
            first = spec.first_home
            slices = self._slices(kind, spec.count, spec.participation, first)
            for participating, lo, hi, meta in slices:
                if hi == lo:
                    continue
                ids = np.asarray([f"{kind}-{i}" for i in range(lo, hi)])
                try:
                    pop = _sample(kind, hi - lo, rng, ids, options)
                except TypeError as exc:  # an option the kind does not take
                    raise ValidationError(
                        [Problem(f"population.{kind}.options", str(exc))], subject="scenario"
                    ) from None
                except ValidationError as exc:
                    raise ValidationError(
                        [
                            Problem(f"population.{kind}.options.{p.field}", p.reason, p.index)
                            for p in exc.problems
                        ],
                        subject="scenario",
                    ) from None
                if kind == "appliance":
                    cut = pop
                    pop = _within_horizon(pop, sc.horizon_s)
                    windows_cut += int(np.sum(pop.latest_finish_s < cut.latest_finish_s))
                n = hi - lo
                out.append(
                    _Group(
                        kind=kind,
                        participating=participating,
                        population=pop,
                        **meta,
                        bus=self.home_bus[first + lo : first + hi].copy(),
                        home=np.arange(first + lo, first + hi, dtype=np.int64),
                        last_power_kw=np.zeros(n),
                        last_price=np.full(n, np.nan),
                        last_fill=np.ones(n),
                        energy_kwh=np.zeros(n),
                        cost=np.zeros(n),
                        discomfort_dh=np.zeros(n),
                        gas_kwh=np.zeros(n),
                    )
                )
        self.appliance_windows_cut = windows_cut
        return out

    def _slices(
        self, kind: DeviceKind, count: int, participation: float, first_home: int = 0
    ) -> list[tuple[bool, int, int, dict[str, Any]]]:
        """A kind's devices cut into (participating, first, end, group fields) slices.

        Without customer groups: the first ``round(share x count)`` devices take part in the
        scenario's mechanism, the rest run on their own at the flat tariff. With groups: each
        group's homes (consecutive, in the scenario's order) bring their devices of the kind;
        inside a group the first ``round(share x n)`` take part (none in a ``none`` group), and
        every device of the group is billed at the group's tariff or price. Device ``i`` is in
        home ``first_home + i``, so a group's homes hold the kind's devices ``home - first_home``.
        """
        sc = self.scenario
        mech = sc.mechanism
        out: list[tuple[bool, int, int, dict[str, Any]]] = []
        if mech.is_iterative:  # the EVs follow the plan; everything else runs on its own
            n_part = round(participation * count) if kind == "ev" else 0
            plan = {
                "label": "participant",
                "mode": "schedule",
                "bill": "schedule",
                "tariff": mech,
                "in_auction": False,
            }
            alone = {
                "label": "non-participant",
                "mode": "own",
                "bill": "flat",
                "tariff": mech,
                "in_auction": False,
            }
            return [(True, 0, n_part, plan), (False, n_part, count, alone)]
        if not sc.groups:
            n_part = round(participation * count)
            in_auction = mech.kind in ("double_auction", "powermatcher")
            mode = "auction" if in_auction else "tariff"
            part = {
                "label": "participant",
                "mode": mode,
                "bill": "market" if in_auction else "tariff",
                "tariff": mech,
                "in_auction": in_auction,
            }
            own = {
                "label": "non-participant",
                "mode": "own",
                "bill": "flat",
                "tariff": mech,
                "in_auction": in_auction,
            }
            return [(True, 0, n_part, part), (False, n_part, count, own)]
        feeder_scope = sc.supply.capacity_scope == "feeder"
        first = 0
        for name, n_homes in sc.group_home_counts().items():
            gm = sc.groups[name].mechanism
            lo = min(max(first - first_home, 0), count)
            hi = min(max(first + n_homes - first_home, 0), count)
            first += n_homes
            auction = gm.kind == "double_auction"
            n_part = 0 if gm.kind == "none" else round(participation * (hi - lo))
            bill = {"none": "flat", "double_auction": "market"}.get(gm.kind, "tariff")
            in_auction = auction or (feeder_scope and mech.kind == "double_auction")
            common = {"label": name, "bill": bill, "tariff": gm, "in_auction": in_auction}
            mode = "auction" if auction else "tariff"
            out.append((True, lo, lo + n_part, {**common, "mode": mode}))
            out.append((False, lo + n_part, hi, {**common, "mode": "own"}))
        return out


def _sample(
    kind: str, n: int, rng: np.random.Generator, ids: npt.NDArray[np.str_], options: dict[str, Any]
) -> Any:
    """``sample(n, rng, ids=ids, **options)`` of a kind."""
    return _CLASSES[kind].sample(n, rng, ids=ids, **options)


def _positive(value: object) -> bool:
    """Whether an option's value is a number above zero (a bad one is the sample's to report)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _within_horizon(pop: AppliancePopulation, horizon_s: int) -> AppliancePopulation:
    """The appliances with every cycle due by the horizon's end (see Appliances in the module).

    ``latest_finish = min(latest_finish, max(horizon_s, earliest_start + D))``: a cycle that
    fits between its loading and the horizon's end is due by that end; one loaded later than
    ``horizon_s - D`` must start when it is loaded. Everything else of the sample is kept.
    """
    due = np.minimum(
        pop.latest_finish_s, np.maximum(float(horizon_s), pop.earliest_start_s + pop.duration_s)
    )
    return AppliancePopulation(
        phase_power_kw=pop.phase_power_kw,
        phase_duration_s=pop.phase_duration_s,
        earliest_start_s=pop.earliest_start_s,
        latest_finish_s=due,
        band_k=pop.band_k,
        labels=list(pop.labels),
        ids=pop.ids,
    )


def simulate(
    scenario: Scenario,
    *,
    base_dir: Path | None = None,
    progress: ProgressFn | None = None,
    market_access: MarketAccessFactory | None = None,
) -> SimulationResult:
    """Run a scenario: its baseline and its transactive run, on the same homes and weather.

    A scenario with communication faults (:func:`has_faults`) also gets the transactive run
    without them, :attr:`SimulationResult.no_faults` (see the module docstring).

    Parameters
    ----------
    scenario:
        A validated scenario (:func:`transactive.sim.load_scenario`).
    base_dir:
        Folder a relative feeder JSON path is read from (the scenario file's folder).
    progress:
        Called after every interval with the run's name, intervals done and the total.
    market_access:
        Where the runs with a market clear, ``factory(run_name, scenario, feeder)`` (e.g.
        :class:`transactive.sim.live.LiveService`, the live service over HTTP); None: in this
        process (:class:`InProcessMarket`). The baseline has no market.

    Raises
    ------
    ValidationError
        A feeder, weather file or sample option the scenario names is not usable.

    """
    t0 = time.perf_counter()
    setup = _Setup(scenario, base_dir)
    scaled = scenario.supply.capacity_basis_peak_kw is not None
    # a limit scaled by the baseline's peak is known after it (the baseline has no market, so
    # the limit only counts its minutes above it, recounted below)
    baseline = _Run(
        setup, "baseline", progress, capacity_kw=math.inf if scaled else scenario.capacity_kw
    ).run()
    capacity = capacity_limit_kw(scenario, baseline)
    if scaled:
        baseline = _with_capacity(baseline, scenario, capacity)
    adder = rtp_adder_per_kwh(scenario, baseline)
    plan = plan_no_faults = None
    if scenario.mechanism.is_iterative:  # the coordination before the day (see the module)
        plan = _plan(setup, baseline, capacity, faults=True)
        if has_faults(scenario):
            plan_no_faults = _plan(setup, baseline, capacity, faults=False)
    transactive = _Run(
        setup,
        "transactive",
        progress,
        adder_per_kwh=adder,
        capacity_kw=capacity,
        market_access=market_access,
        plan=plan,
    ).run()
    no_faults = None
    if has_faults(scenario):
        no_faults = _Run(
            setup,
            "transactive_no_faults",
            progress,
            adder_per_kwh=adder,
            faults=False,
            capacity_kw=capacity,
            market_access=market_access,
            plan=plan_no_faults,
        ).run()
    starts = np.arange(scenario.n_intervals, dtype=np.int64) * scenario.market_interval_s
    return SimulationResult(
        scenario=scenario,
        feeder_name=setup.feeder_name,
        interval_start_s=starts,
        runs={"baseline": baseline, "transactive": transactive},
        wall_s=time.perf_counter() - t0,
        rtp_adder_per_kwh=adder,
        no_faults=no_faults,
        capacity_kw=capacity,
        appliance_windows_cut=setup.appliance_windows_cut,
        iterative=plan,
        iterative_no_faults=plan_no_faults,
    )


def _plan(setup: _Setup, baseline: RunResult, capacity_kw: float, *, faults: bool) -> IterativePlan:
    """The iterative mechanism's plan for the day (see Iterative mechanisms in the module).

    The coordinated EVs as the day starts (fresh populations: the same sample as both runs'),
    the baseline's metered load of everything else as the forecast, one forecast weather sample
    per period; with ``faults`` the scenario's message loss on the exchange
    (:class:`transactive.market.iterative.CommsFaults` from its own seeded stream).
    """
    from transactive.market.iterative import CommsFaults  # noqa: PLC0415
    from transactive.sim.iterative import plan_day  # noqa: PLC0415

    sc = setup.scenario
    group = next(g for g in setup.groups() if g.mode == "schedule")
    period_s = sc.mechanism.iterative_spec.period_s
    per = period_s // sc.market_interval_s
    n_periods = sc.horizon_s // period_s
    weather = [setup.forecast[setup.forecast_offset + k * per] for k in range(n_periods)]
    assert baseline.other_node_kw is not None  # recorded by every run of such a scenario
    loss = sc.comms.loss_probability if faults else 0.0
    return plan_day(
        sc,
        setup.feeder,
        group.population,
        group.bus,
        weather,
        baseline.other_node_kw,
        setup.background_q_kvar,
        wholesale_per_interval(sc),
        capacity_kw=capacity_kw,
        faults=CommsFaults(loss_probability=loss, seed=setup.iterative_seed),
    )


def _limited_load_kw(scenario: Scenario, run: RunResult) -> FloatArray:
    """Per interval, the load the capacity limit applies to (see :func:`capacity_limit_kw`)."""
    key = "market_load_kw" if scenario.supply.capacity_scope == "market" else "feeder_load_kw"
    return np.asarray(run.series[key], dtype=np.float64)


def capacity_limit_kw(scenario: Scenario, baseline: RunResult) -> float:
    """The capacity limit of the scenario's runs (kW; ``inf`` when unconstrained).

    The season's published limit (:attr:`Scenario.season_capacity_kw`), scaled by
    ``capacity_basis_homes`` (:attr:`Scenario.capacity_kw`) or, with
    ``supply.capacity_basis_peak_kw`` = ``P_f``, by the ratio of the baseline run's peak ``P``
    of the limited load (the auction's homes less the generators for a ``market`` scope, the
    substation's import for ``feeder``) to ``P_f``: ``limit = season limit x P / P_f``, the
    published limit's ratio to the field's uncoordinated peak kept on our homes.

    Raises
    ------
    ValidationError
        The baseline's peak of the limited load is not positive (nothing to scale by).

    """
    basis = scenario.supply.capacity_basis_peak_kw
    if basis is None:
        return scenario.capacity_kw
    peak = float(np.max(_limited_load_kw(scenario, baseline)))
    if not (math.isfinite(peak) and peak > 0):
        raise ValidationError(
            [
                Problem(
                    "supply.capacity_basis_peak_kw",
                    f"scales the limit by the baseline's peak of the limited load, which is "
                    f"{peak:g} kW (not positive)",
                )
            ],
            subject=f"scenario {scenario.name!r}",
        )
    return scenario.season_capacity_kw * peak / basis


def _with_capacity(run: RunResult, scenario: Scenario, capacity_kw: float) -> RunResult:
    """A run without a market with the limit known after it: its capacity series and minutes."""
    series = dict(run.series)
    series["capacity_kw"] = np.full_like(series["capacity_kw"], capacity_kw)
    over = _limited_load_kw(scenario, run) > capacity_kw * (1 + 1e-9)
    kpis = dict(run.kpis)
    kpis["capacity_violation_minutes"] = float(over.sum()) * scenario.market_interval_s / 60.0
    return dataclasses.replace(run, series=series, kpis=kpis)


def has_faults(scenario: Scenario) -> bool:
    """Whether the scenario's messages can be lost or late (its ``comms`` section)."""
    c = scenario.comms
    return c.loss_probability > 0 or c.delay_intervals > 0 or c.bid_delay_s > 0


def market_groups(scenario: Scenario) -> list[str]:
    """The result groups billed at the real-time (clearing) price.

    With customer groups: the ``double_auction`` groups (their whole homes); without: the
    ``participant`` devices of a ``double_auction`` or ``powermatcher`` mechanism (none else).
    """
    if scenario.groups:
        return [k for k, g in scenario.groups.items() if g.mechanism.kind == "double_auction"]
    return ["participant"] if scenario.mechanism.kind in ("double_auction", "powermatcher") else []


def wholesale_per_interval(scenario: Scenario) -> FloatArray:
    """The supply's wholesale price of each market interval of the horizon ($/kWh)."""
    start = scenario.start
    local = start.hour * 3600 + start.minute * 60 + start.second
    starts = np.arange(scenario.n_intervals, dtype=np.int64) * scenario.market_interval_s
    hours = ((local + starts) % 86400) / 3600.0
    return np.array([scenario.supply.price_at(float(h)) for h in hours], dtype=np.float64)


def rtp_adder_per_kwh(scenario: Scenario, baseline: RunResult) -> float:
    """The constant added to the wholesale price to make the real-time price (see the module).

    ``load_weighted``: ``flat - sum_t w_t E_t / sum_t E_t`` with ``E_t`` the baseline run's
    load of the homes billed at the real-time price (:func:`market_groups`), so that their
    baseline load billed at ``w_t + a`` pays exactly its flat bill (a revenue-neutral RTP,
    Widergren et al., PNNL-22128, 2014, §2); ``time_mean``: ``flat - mean_t w_t``; ``none``: 0.

    Raises
    ------
    ValidationError
        ``load_weighted`` with no homes billed at the real-time price, or a baseline load of
        theirs whose total over the horizon is not positive (no weights to be neutral against).

    """
    mech = scenario.mechanism
    if mech.rtp_adder == "none":
        return 0.0
    wholesale = wholesale_per_interval(scenario)
    flat = mech.flat_price_per_kwh
    if mech.rtp_adder == "time_mean":
        return float(flat - wholesale.mean())
    keys = [f"group_load_kw:{k}" for k in market_groups(scenario)]
    keys = [k for k in keys if k in baseline.series]
    subject = f"scenario {scenario.name!r}"
    if not keys:
        raise ValidationError(
            [
                Problem(
                    "mechanism.rtp_adder",
                    "'load_weighted' needs homes billed at the real-time price; there are none",
                )
            ],
            subject=subject,
        )
    load_kw = np.sum([baseline.series[k] for k in keys], axis=0)
    total = float(load_kw.sum())
    if not (math.isfinite(total) and total > 0):
        raise ValidationError(
            [
                Problem(
                    "mechanism.rtp_adder",
                    f"'load_weighted' needs a positive baseline load of the homes billed at the "
                    f"real-time price; theirs sums to {total:g} kW over the intervals",
                )
            ],
            subject=subject,
        )
    return float(flat - float(wholesale @ load_kw) / total)


class _Run:
    """One pass through the horizon."""

    def __init__(
        self,
        setup: _Setup,
        name: str,
        progress: ProgressFn | None,
        *,
        adder_per_kwh: float = 0.0,
        faults: bool = True,
        capacity_kw: float,
        market_access: MarketAccessFactory | None = None,
        plan: IterativePlan | None = None,
    ) -> None:
        self.setup = setup
        self.plan = plan
        """The iterative mechanism's plan the coordinated EVs follow (the runs with a market)."""
        self.market_access = market_access
        """Where a run with a market clears (None: :class:`InProcessMarket`)."""
        self.capacity_kw = capacity_kw
        """The limit the run applies (:func:`capacity_limit_kw`)."""
        self.faults = faults
        """Whether the scenario's communication faults apply (the no-faults run: not)."""
        self.adder_per_kwh = adder_per_kwh
        """Added to the wholesale price the substation offers (:func:`rtp_adder_per_kwh`)."""
        self.name = name
        self.market = name != "baseline"
        self.progress = progress
        self.groups = setup.groups()
        self.runner = setup.runner()
        self.comms_rng = np.random.default_rng(setup.comms_seed)
        self.bid_delay_rng = np.random.default_rng(setup.bid_delay_seed)
        self.timings = {"bid": 0.0, "clear_and_dso": 0.0, "respond": 0.0, "physics": 0.0}
        self.timings["power_flow"] = 0.0
        self.messages_lost = 0
        self.bids_late = 0
        self.messages = {
            "bids": {"sent": 0, "lost": 0, "late": 0},
            "prices": {"sent": 0, "lost": 0},
        }
        self.dso_calls = 0
        self.dso_notes: list[str] = []
        self._tariff_series: dict[int, FloatArray] = {}
        """Each tariff's price at every interval from a price window before the start."""
        self._ids = _CheckedIds()
        """The auction rows' ids, checked once per id array rather than every interval."""
        self._generator_ids = np.asarray(
            [f"generator-{gen.name}" for gen in setup.scenario.supply.generators], dtype=np.str_
        )
        self._generator_ids.setflags(write=False)

    # ------------------------------------------------------------------ helpers

    def _local_hour(self, start_s: int) -> float:
        return ((self.setup.local_start_s + start_s) % 86400) / 3600.0

    def _stats(self, prices: deque[float], start_s: int) -> PriceStats:
        sc = self.setup.scenario
        mech = sc.mechanism
        min_samples = max(2, STATS_MIN_SAMPLES_S // sc.market_interval_s)
        if len(prices) >= min_samples:
            arr = np.asarray(prices)
            mean = float(arr.mean())
            std = max(float(arr.std()), mech.initial_price_std_per_kwh)
        else:
            mean = sc.supply.price_at(self._local_hour(start_s)) + self.adder_per_kwh
            std = mech.initial_price_std_per_kwh
        if mech.kind not in ("double_auction", "powermatcher"):
            mean = mech.tariff_per_kwh(self._local_hour(start_s))
        return PriceStats(
            mean_per_kwh=mean,
            std_per_kwh=std,
            price_cap_per_kwh=mech.price_cap_per_kwh,
            price_floor_per_kwh=mech.price_floor_per_kwh,
        )

    def _tariff_stats(self, g: _Group, t: int, n_window: int) -> PriceStats:
        """Price statistics of a tariff group: its own tariff over the price window before ``t``.

        A fixed or time-of-use tariff is published, so the statistics a device bids from are
        those of the tariff over the ``n_window`` intervals before interval ``t`` (the same
        window as the auction's, PNNL-17167's last day), known from the start: the TOU's peak
        price then stands above its mean and its off-peak price below it, and the ramp
        controller shifts the setpoint as the field's TOU thermostats did. The std is at least
        ``initial_price_std_per_kwh`` (a fixed tariff has none: the price is its mean, no shift).
        """
        sc = self.setup.scenario
        mech = sc.mechanism
        key = id(g.tariff)
        prices = self._tariff_series.get(key)
        if prices is None:  # the tariff at every interval from n_window before the start on
            starts = (np.arange(-n_window, sc.n_intervals) * sc.market_interval_s).tolist()
            prices = np.array([self._tariff(g, self._local_hour(s)) for s in starts])
            self._tariff_series[key] = prices
        past = prices[t : t + n_window]
        return PriceStats(
            mean_per_kwh=float(past.mean()),
            std_per_kwh=max(float(past.std()), mech.initial_price_std_per_kwh),
            price_cap_per_kwh=mech.price_cap_per_kwh,
            price_floor_per_kwh=mech.price_floor_per_kwh,
        )

    def _tariff(self, g: _Group, hour: float) -> float:
        """The fixed or time-of-use price a group is told and billed at."""
        flat = self.setup.scenario.mechanism.flat_price_per_kwh
        if g.tariff is self.setup.scenario.mechanism:
            return float(g.tariff.tariff_per_kwh(hour))
        return float(g.tariff.tariff_per_kwh(hour, flat))

    def _last_known_at_start(self, window: deque[float], steps: int, dt: int) -> None:
        """What the market and the auction's devices know before the first interval.

        A lost (or late) bid leaves a device at its last metered power in the market's eyes, and
        a lost price leaves it on the last price it heard; at the first interval nothing has been
        metered or heard in the run, but the feeder ran before it on the same rules. So the last
        price each auction participant heard is the substation's offer at the start, with a
        full fill (what a device acts on before any price has reached it), and its last metered
        power what that price gets it over the first interval (its first bid answered at the
        offer, stepped on a copy under the forecast). A device whose first bid is lost then
        draws exactly what the market plans for it. Without this, a bid lost in the first
        interval was planned at 0 kW while the device drew its power: on the default day with
        10 % loss that first surprise (277 kW) became the metering reserve (see Capacity) of the
        whole price window, and the market held back 277 kW all day.
        """
        sc = self.setup.scenario
        interval = MarketInterval(0, sc.market_interval_s)
        forecast = self.setup.forecast[self.setup.forecast_offset]
        stats = self._stats(window, 0)
        offer = sc.supply.price_at(self._local_hour(0)) + self.adder_per_kwh
        for g in self.groups:
            if not (g.mode == "auction" and g.participating):
                continue
            own = copy.deepcopy(g.population)
            own.bid(stats, interval, forecast)
            own.respond(np.full(g.n, offer), np.ones(g.n))
            g.last_power_kw = _dry_run(own, 0, steps, dt, forecast)
            g.last_price = np.full(g.n, offer)
            g.last_fill = np.ones(g.n)

    def _late_bids(self, n: int) -> npt.NDArray[np.bool_]:
        """Which of ``n`` bids arrive after the gate closure (their delay exceeds the lead).

        ``fixed``: every bid takes ``bid_delay_s``; ``exponential``: each bid's delay is drawn
        with mean ``bid_delay_s`` from the run's own bid-delay stream (so the message-loss
        draws are the same with or without delays).
        """
        comms = self.setup.scenario.comms
        lead = comms.bid_lead_s
        assert lead is not None  # the scenario requires it with a delay
        if comms.bid_delay_distribution == "fixed":
            return np.full(n, comms.bid_delay_s > lead)
        return np.asarray(self.bid_delay_rng.exponential(comms.bid_delay_s, n) > lead)

    # ------------------------------------------------------------------ the loop

    def run(self) -> RunResult:
        from transactive.market import Supply  # noqa: PLC0415
        from transactive.network import SecurityLimits  # noqa: PLC0415

        setup, sc = self.setup, self.setup.scenario
        mech = sc.mechanism
        feeder = setup.feeder
        n_int = sc.n_intervals
        interval_s = sc.market_interval_s
        dt = sc.physics_step_s
        steps = interval_s // dt
        cap, floor = mech.price_cap_per_kwh, mech.price_floor_per_kwh
        window: deque[float] = deque(
            maxlen=max(1, round(mech.price_stats_window_h * 3600) // interval_s)
        )
        faults = self.market and self.faults
        delay = sc.comms.delay_intervals if faults else 0
        p_loss = sc.comms.loss_probability if faults else 0.0
        bid_delay = faults and sc.comms.bid_delay_s > 0
        price_history: deque[list[tuple[FloatArray, FloatArray]]] = deque(maxlen=delay + 1)
        limits = SecurityLimits(vmin_pu=sc.feeder.vmin_pu, vmax_pu=sc.feeder.vmax_pu)
        bg_p, bg_q = setup.background_p_kw, setup.background_q_kvar
        bg_total = float(bg_p.sum())
        n_nodes = feeder.n_nodes
        access: MarketAccess = InProcessMarket(
            sc, feeder, self.runner, limits=limits, background_p_kw=bg_p, background_q_kvar=bg_q
        )
        if self.market and self.market_access is not None:
            access = self.market_access(self.name, sc, feeder)

        names = [*SERIES_MARKET, *SERIES_EVERY_RUN]
        kinds_present = sorted({g.kind for g in self.groups}, key=KINDS.index)
        names += [f"{LOAD_PREFIX}{k}" for k in kinds_present]
        labels = sorted({g.label for g in self.groups})
        names += [f"group_load_kw:{label}" for label in labels]
        names += ["market_load_kw", "generator_kw"]
        names += [f"generator_kw:{gen.name}" for gen in sc.supply.generators]
        iterative = mech.is_iterative
        if iterative:
            names += ["substation_kva", *(["ev_scheduled_kw"] if self.market else [])]
            if self.market and self.plan is None:
                raise ValueError(f"the {self.name} run of an iterative mechanism needs its plan")
            if self.market and self.plan is not None:
                followers = [g.population.ids for g in self.groups if g.mode == "schedule"]
                if len(followers) != 1 or not np.array_equal(followers[0], self.plan.ev_ids):
                    raise ValueError(f"the {self.name} run's EVs are not the plan's EVs")
        other_node_kw = np.zeros((n_int, n_nodes)) if iterative else None
        is_wind = np.array([gen.kind == "wind" for gen in sc.supply.generators], dtype=bool)
        series = {k: np.full(n_int, np.nan) for k in names}
        series["capacity_kw"][:] = self.capacity_kw
        hvac = [g for g in self.groups if _houses(g) is not None]
        evs = [g for g in self.groups if g.kind == "ev"]
        if hvac:
            tmin = np.concatenate([_houses(g).comfort_min_c for g in hvac])
            tmax = np.concatenate([_houses(g).comfort_max_c for g in hvac])
            series["comfort_min_c"][:] = tmin.mean()
            series["comfort_max_c"][:] = tmax.mean()

        prev_losses = planned_losses = 0.0
        reserve: deque[float] = deque(maxlen=window.maxlen)
        flows: deque[tuple[float, float]] = deque(maxlen=window.maxlen)  # (import, losses) kW
        book = _FlowBook(
            series=series,
            vmin_pu=sc.feeder.vmin_pu,
            vmax_pu=sc.feeder.vmax_pu,
            capacity_kw=self.capacity_kw,
            market_scope=sc.supply.capacity_scope == "market",
            interval_s=interval_s,
            iterative=iterative,
            peak_vm=np.full(n_nodes, np.nan),
            peak_loading=np.full(feeder.n_branches, np.nan),
        )
        # a run without a market meters the whole day in one batch of flows after the loop:
        # nothing in it reads a flow before the next interval (see _FlowBook)
        deferred = not self.market and _batches_flows(self.runner)
        deferred_kw = np.zeros((n_int, n_nodes)) if deferred else None
        deferred_limited_kw = np.zeros(n_int)
        peak_demand: BidCurves | None = None
        peak_supply: BidCurves | None = None
        peak_bids: tuple[BidCurves, Supply] | None = None
        pv_kwh = 0.0
        if p_loss > 0 or bid_delay:
            self._last_known_at_start(window, steps, dt)

        for t in range(n_int):
            start_s = t * interval_s
            interval = MarketInterval(start_s, interval_s)
            forecast = setup.forecast[setup.forecast_offset + t]
            hour = self._local_hour(start_s)
            wholesale = sc.supply.price_at(hour)
            rtp = wholesale + self.adder_per_kwh  # what the substation offers the auction
            tic = time.perf_counter()
            node_price: FloatArray | None = None
            interval_curves: BidCurves | None = None
            supply: Supply | None = None
            # ---------------------------------------------------------- bid
            stats = self._stats(window, start_s)
            bids: list[BidCurves] = []
            bid_nodes: list[IntArray] = []
            bid_homes: list[IntArray] = []
            bid_billed: list[npt.NDArray[np.bool_]] = []
            lost_bid: dict[int, npt.NDArray[np.bool_]] = {}
            auction_rows: dict[int, int] = {}  # group -> its first row in the auction
            n_rows = 0
            scheduled_kw = 0.0
            for gi, g in enumerate(self.groups):
                pop = g.population
                if self.market and g.mode == "schedule":  # follow the plan (Iterative mechanisms)
                    assert self.plan is not None
                    target = self.plan.interval_power_kw(pop, t, interval_s)
                    price, fill, _ = price_and_fill_for(pop.bid(stats, interval, forecast), target)
                    pop.respond(price, fill)
                    scheduled_kw += float(target.sum())
                    continue
                if not self.market or (g.mode == "own" and not g.in_auction):
                    if g.kind in _AT_ONCE:  # from arrival or loading, at once (see Baseline)
                        pop.bid(stats, interval, forecast)
                        pop.respond(floor, 1.0)
                    elif g.kind == "chp":  # heat-led: as much as its buffer takes (Baseline)
                        pop.bid(stats, interval, forecast)
                        pop.respond(cap, 0.0)
                    continue
                if g.mode == "tariff" and g.participating:
                    # told the interval's tariff: bid around it and answer at it (no clearing)
                    price_t = self._tariff(g, hour)
                    pop.bid(self._tariff_stats(g, t, window.maxlen or 1), interval, forecast)
                    power = pop.respond(np.full(g.n, price_t), np.ones(g.n))
                    if not g.in_auction:
                        continue
                    curves = _block(np.asarray(power, dtype=np.float64), cap, floor)
                    curves = self._ids.named(curves, pop.ids)
                elif g.mode == "auction" or (g.kind == "base_load" and g.in_auction):
                    curves = pop.bid(stats, interval, forecast)
                    if g.participating:
                        self.messages["bids"]["sent"] += g.n
                    if g.participating and (p_loss > 0 or bid_delay):
                        missed = np.zeros(g.n, dtype=bool)
                        if p_loss > 0:
                            missed = self.comms_rng.random(g.n) < p_loss
                            self.messages_lost += int(missed.sum())
                            self.messages["bids"]["lost"] += int(missed.sum())
                        if bid_delay:
                            late = self._late_bids(g.n) & ~missed
                            self.bids_late += int(late.sum())
                            self.messages_lost += int(late.sum())  # lost to the market
                            self.messages["bids"]["late"] += int(late.sum())
                            missed = missed | late
                        lost_bid[gi] = missed
                        if missed.any():  # unresponsive at its last metered power
                            fallback = self._ids.named(_block(g.last_power_kw, cap, floor), pop.ids)
                            curves = _where_rows(missed, fallback, curves)
                else:
                    if g.kind in _AT_ONCE:  # a non-participant runs as in the baseline
                        pop.bid(stats, interval, forecast)
                        power = pop.respond(floor, 1.0)
                    elif g.kind == "chp":  # a non-participating CHP runs heat-led
                        pop.bid(stats, interval, forecast)
                        power = pop.respond(cap, 0.0)
                    else:
                        power = _dry_run(g.population, start_s, steps, dt, forecast)
                    curves = self._ids.named(_block(power, cap, floor), pop.ids)
                auction_rows[gi] = n_rows
                n_rows += g.n
                bids.append(curves)
                bid_nodes.append(g.bus)
                bid_homes.append(g.home)
                bid_billed.append(np.full(g.n, g.bill == "market"))
            gen_rows = n_rows
            wind_forecast_kw = _wind_kw(sc.supply.generators, forecast.wind_speed_m_per_s)
            if self.market and bids and sc.supply.generators:
                offers = _generators(sc.supply.generators, wholesale, wind_forecast_kw, floor)
                bids.append(self._ids.named(offers, self._generator_ids))
                bid_nodes.append(np.zeros(len(sc.supply.generators), dtype=np.int64))
                bid_homes.append(np.full(len(sc.supply.generators), -1, dtype=np.int64))
                bid_billed.append(np.ones(len(sc.supply.generators), dtype=bool))
            self.timings["bid"] += time.perf_counter() - tic
            tic = time.perf_counter()
            result: ClearingLike | None = None
            if self.market and bids and mech.kind in ("double_auction", "powermatcher"):
                all_bids = self._ids.concat(bids)
                nodes = np.concatenate(bid_nodes)
                full_losses = _losses_at_capacity(self.capacity_kw, flows, prev_losses)
                market_scope = sc.supply.capacity_scope == "market"
                if market_scope:  # a virtual feeder of the auction's homes: no losses in it
                    full_losses = 0.0
                room = self.capacity_kw - (0.0 if market_scope else bg_total) - full_losses
                if math.isfinite(room):
                    room -= max(CAPACITY_MARGIN * self.capacity_kw, max(reserve, default=0.0))
                planned_losses = full_losses
                supply = Supply(
                    price_per_kwh=rtp,
                    capacity_kw=max(room, 0.0),
                    export_capacity_kw=self.capacity_kw,
                    export_price_per_kwh=rtp,
                )
                answer = access.clear(
                    MarketRequest(
                        t=t,
                        start_s=start_s,
                        bids=all_bids,
                        nodes=nodes,
                        homes=np.concatenate(bid_homes),
                        billed_at_market=np.concatenate(bid_billed),
                        supply=supply,
                        price_cap=cap,
                        price_floor=floor,
                    )
                )
                result, node_price = answer.result, answer.node_price_per_kwh
                outcome = answer.dso
                if outcome is not None:
                    if outcome.n_rounds > 1:
                        self.dso_calls += 1
                    if not outcome.secure:
                        self.dso_notes.append(f"interval {t} ({start_s} s): {outcome.reason}")
                interval_curves = all_bids
                window.append(result.clearing_price)
                series["clearing_price_per_kwh"][t] = result.clearing_price
                series["clearing_quantity_kw"][t] = result.clearing_quantity_kw
            self.timings["clear_and_dso"] += time.perf_counter() - tic
            # ---------------------------------------------------------- respond
            tic = time.perf_counter()
            # dispatchable generators run at their allocation; wind turbines give what the
            # wind gives over the interval (must-take), metered below with the physics
            gen_each_kw = np.zeros(len(sc.supply.generators))
            if result is not None and sc.supply.generators:
                gen_each_kw = -np.asarray(result.allocation_kw[gen_rows:], dtype=np.float64)
            gen_each_kw = np.where(is_wind, 0.0, gen_each_kw)
            if self.market:
                heard: list[tuple[FloatArray, FloatArray]] = []
                answers = [
                    gi
                    for gi, g in enumerate(self.groups)
                    if (g.mode == "auction" and g.participating)
                    or (g.kind == "base_load" and g.in_auction)
                ]
                for gi, g in enumerate(self.groups):
                    if gi not in answers:
                        heard.append((np.empty(0), np.empty(0)))  # nothing sent to them
                        continue
                    if result is not None and node_price is not None:
                        price = node_price[g.bus]
                        row = auction_rows[gi]
                        fill = np.asarray(result.marginal_fill[row : row + g.n])
                    else:
                        price = np.full(g.n, mech.tariff_per_kwh(hour))
                        fill = np.ones(g.n)
                    heard.append((price, fill))
                price_history.append(heard)
                delayed = price_history[0] if len(price_history) > delay else None
                for gi, g in enumerate(self.groups):
                    if gi not in answers:
                        continue
                    if delayed is None:  # nothing has arrived yet: act on the tariff
                        price = np.full(g.n, rtp)
                        fill = np.ones(g.n)
                    else:
                        price, fill = delayed[gi]
                        price, fill = price.copy(), fill.copy()
                    if g.participating:
                        missed = lost_bid.get(gi, np.zeros(g.n, dtype=bool))
                        self.messages["prices"]["sent"] += g.n
                        if p_loss > 0:
                            lost_price = self.comms_rng.random(g.n) < p_loss
                            self.messages_lost += int(lost_price.sum())
                            self.messages["prices"]["lost"] += int(lost_price.sum())
                            missed = missed | lost_price
                        known = missed & np.isfinite(g.last_price)
                        price[known] = g.last_price[known]
                        fill[known] = g.last_fill[known]
                        g.last_price = np.where(missed & ~known, g.last_price, price)
                        g.last_fill = np.where(missed & ~known, g.last_fill, fill)
                    g.population.respond(price, fill)
            self.timings["respond"] += time.perf_counter() - tic
            # ---------------------------------------------------------- physics
            tic = time.perf_counter()
            node_kwh = np.zeros(n_nodes)
            kind_kwh = dict.fromkeys(kinds_present, 0.0)
            gas_kwh = 0.0
            temp_sum = 0.0
            # HVAC houses, water heaters, EVs, batteries, PV and base loads go through the
            # interval's steps in one call (each step's energy, and a house's air temperature,
            # recorded: the same numbers as a step at a time, tested bit for bit); the groups
            # do not interact within an interval, so the order is free
            first_step = setup.physics_offset + t * steps
            steps_weather = setup.physics.window(first_step, steps)
            through = {
                gi: g.population.step_many(start_s, dt, steps_weather, record=True)
                for gi, g in enumerate(self.groups)
                if isinstance(g.population, _STEPS_AT_ONCE)
            }
            # and are metered for the whole interval in one pass each (its steps' node sums
            # kept apart, added below in the order a step at a time adds them)
            booked = {
                gi: metered
                for gi, stepped in through.items()
                if (metered := _book_interval(stepped, self.groups[gi], dt, interval_s, n_nodes))
            }
            one_by_one = len(booked) < len(self.groups)
            for k in range(steps):
                time_s = start_s + k * dt
                weather = setup.physics[first_step + k] if one_by_one else None
                wind_m_per_s = float(steps_weather.wind_speed_m_per_s[k])
                gen_each_kw = gen_each_kw + _wind_kw(sc.supply.generators, wind_m_per_s) / steps
                for gi, g in enumerate(self.groups):
                    booking = booked.get(gi)
                    if booking is not None:
                        node_kwh += booking.node_kwh[k]
                        if other_node_kw is not None and g.mode != "schedule":
                            other_node_kw[t] += booking.node_kwh[k] * (3600.0 / interval_s)
                        kind_kwh[g.kind] += float(booking.energy_kwh[k])
                        if booking.air_c is not None:
                            temp_sum += float(booking.air_c[k])
                        continue
                    stepped = through.get(gi)
                    if stepped is not None:
                        assert stepped.step_energy_kwh is not None  # recorded
                        e = stepped.step_energy_kwh[k]
                    else:
                        assert weather is not None  # a group stepped one step at a time
                        res = g.population.step(time_s, dt, weather)
                        e = np.asarray(res.energy_kwh, dtype=np.float64)
                        if isinstance(res, HeatPumpStepResult):  # a hybrid's boiler burns gas
                            burnt = np.asarray(res.gas_energy_kwh, dtype=np.float64)
                            g.gas_kwh += burnt
                            gas_kwh += float(burnt.sum())
                    g.last_power_kw, at_nodes = _meter_step(
                        e, g.bus, g.energy_kwh, g.last_power_kw, k == 0, interval_s, n_nodes
                    )
                    node_kwh += at_nodes
                    if other_node_kw is not None and g.mode != "schedule":
                        other_node_kw[t] += at_nodes * (3600.0 / interval_s)
                    kind_kwh[g.kind] += float(e.sum())
                    house = _houses(g)
                    if house is not None:
                        ta = (
                            house.air_temperature_c
                            if stepped is None or stepped.step_air_temperature_c is None
                            else stepped.step_air_temperature_c[k]
                        )
                        temp_sum += float(ta.sum())
                        _add_discomfort(
                            ta, house.comfort_min_c, house.comfort_max_c, dt, g.discomfort_dh
                        )
            gen_kw = float(gen_each_kw.sum())
            series["generator_kw"][t] = gen_kw
            for gen, value in zip(sc.supply.generators, gen_each_kw, strict=True):
                series[f"generator_kw:{gen.name}"][t] = value
            series["gas_kw"][t] = gas_kwh * 3600.0 / interval_s
            label_kw = dict.fromkeys(labels, 0.0)
            market_kw = 0.0
            for g in self.groups:
                interval_kwh = g.last_power_kw * interval_s / 3600.0
                if not self.market or g.bill == "flat":
                    g.cost += interval_kwh * mech.flat_price_per_kwh
                elif g.bill == "schedule":  # the mechanism's price where it has one (module)
                    assert self.plan is not None
                    plan_price = self.plan.interval_price_per_kwh(t, interval_s)
                    flat = mech.flat_price_per_kwh
                    g.cost += interval_kwh * (flat if plan_price is None else plan_price)
                elif g.bill == "market" and node_price is not None:
                    g.cost += interval_kwh * node_price[g.bus]
                else:
                    g.cost += interval_kwh * self._tariff(g, hour)
                group_kw = float(g.last_power_kw.sum())
                label_kw[g.label] += group_kw
                if g.mode == "auction" or (g.bill == "market" and g.in_auction):
                    market_kw += group_kw
            for label in labels:
                series[f"group_load_kw:{label}"][t] = label_kw[label]
            if result is not None:  # each auction row's metered energy, to the market
                metered_kw = [self.groups[gi].last_power_kw for gi in auction_rows]
                metered_kw.append(-gen_each_kw[: len(result.allocation_kw) - gen_rows])
                access.metered(t, np.concatenate(metered_kw) * (interval_s / 3600.0))
            series["market_load_kw"][t] = market_kw - gen_kw
            self.timings["physics"] += time.perf_counter() - tic
            # ---------------------------------------------------------- meter
            tic = time.perf_counter()
            node_kw = node_kwh * 3600.0 / interval_s + bg_p
            node_kw[0] -= gen_kw  # the generators inject at the substation's node
            is_peak = False
            if deferred_kw is not None:
                deferred_kw[t] = node_kw
                deferred_limited_kw[t] = market_kw - gen_kw
            else:
                flow = self.runner.run_interval(node_kw, bg_q)
                if not flow.converged:
                    self._not_converged(t)
                load = float(flow.p_slack_kw)
                if result is not None and sc.supply.capacity_scope == "market":
                    reserve.append(market_kw - gen_kw - result.supply_kw)
                elif result is not None:  # metered against planned: the reserve the next keep
                    reserve.append(load - (result.supply_kw + bg_total + planned_losses))
                is_peak = book.interval(
                    t,
                    load_kw=load,
                    q_slack_kvar=float(flow.q_slack_kvar),
                    vm_pu=np.asarray(flow.vm_pu),
                    vmin_pu=flow.vmin_pu,
                    branch_loading_pct=flow.branch_loading_pct,
                    losses_kw=flow.losses_kw,
                    market_limited_kw=market_kw - gen_kw,
                )
                prev_losses = float(flow.losses_kw)
                flows.append((load, prev_losses))
            self.timings["power_flow"] += time.perf_counter() - tic
            if iterative:
                if other_node_kw is not None:
                    other_node_kw[t] += bg_p
                if self.market:
                    series["ev_scheduled_kw"][t] = scheduled_kw
            for kind in kinds_present:
                series[f"load_kw:{kind}"][t] = kind_kwh[kind] * 3600.0 / interval_s
            if hvac:
                n_hvac = sum(g.n for g in hvac)
                series["mean_indoor_temperature_c"][t] = temp_sum / (n_hvac * steps)
            if evs:
                need = np.concatenate([g.population.energy_needed_kwh for g in evs])
                done = np.concatenate([g.population.delivered_kwh for g in evs])
                with np.errstate(divide="ignore", invalid="ignore"):
                    soc = np.where(need > 0, done / need, 1.0)
                series["ev_mean_soc"][t] = float(soc.mean())
            if "pv" in kind_kwh:
                pv_kwh += -kind_kwh["pv"]
            if is_peak and interval_curves is not None and supply is not None:
                # the peak's curves, summed once after the day (a rising day has a new peak
                # in many intervals: summing each was 14 % of a 100,000-home run)
                peak_bids = (interval_curves, supply)
            if self.progress is not None:
                self.progress(self.name, t + 1, n_int)

        if deferred_kw is not None:  # the day's flows in one batch, booked in interval order
            tic = time.perf_counter()
            day = self.runner.run(deferred_kw, np.broadcast_to(bg_q, deferred_kw.shape))
            for t in range(n_int):
                if not day.converged[t]:
                    self._not_converged(t)
                book.interval(
                    t,
                    load_kw=float(day.p_slack_kw[t]),
                    q_slack_kvar=float(day.q_slack_kvar[t]),
                    vm_pu=day.vm_pu[t],
                    vmin_pu=float(day.vm_pu[t][int(np.nanargmin(day.vm_pu[t]))]),
                    branch_loading_pct=day.branch_loading_pct[t],
                    losses_kw=float(day.losses_kw[t]),
                    market_limited_kw=float(deferred_limited_kw[t]),
                )
            self.timings["power_flow"] += time.perf_counter() - tic

        if peak_bids is not None:
            peak_demand, peak_supply = _peak_curves(*peak_bids)
        result_ = self._result(
            series,
            book.peak_index,
            book.peak_vm,
            book.peak_loading,
            peak_demand,
            peak_supply,
            losses_kwh=book.losses_kwh,
            pv_used_kwh=max(pv_kwh - book.export_kwh, 0.0),
            volt_min=book.volt_min,
            cap_min=book.cap_min,
        )
        return dataclasses.replace(result_, other_node_kw=other_node_kw)

    def _not_converged(self, t: int) -> None:
        """Refuse a run whose AC power flow does not converge at interval ``t``."""
        sc = self.setup.scenario
        raise ValidationError(
            [Problem("feeder", f"the AC power flow does not converge at interval {t}")],
            subject=f"{self.name} run of scenario {sc.name!r}",
        )

    def _result(
        self,
        series: dict[str, FloatArray],
        peak_index: int,
        peak_vm: FloatArray,
        peak_loading: FloatArray,
        peak_demand: BidCurves | None,
        peak_supply: BidCurves | None,
        *,
        losses_kwh: float,
        pv_used_kwh: float,
        volt_min: float,
        cap_min: float,
    ) -> RunResult:
        sc = self.setup.scenario
        horizon_s = sc.horizon_s
        rows: dict[str, list[npt.NDArray[Any]]] = {k: [] for k in DEVICE_COLUMNS if k != "run"}
        unserved: dict[str, float | None] = {"ev": None, "appliance": None}
        gas_kwh = gas_cost = None
        for g in self.groups:
            pop = g.population
            rows["device_id"].append(np.asarray(pop.ids, dtype=str))
            rows["kind"].append(np.full(g.n, g.kind))
            rows["bus"].append(g.bus.astype(np.int64))
            rows["group"].append(np.full(g.n, g.label))
            rows["energy_kwh"].append(g.energy_kwh.copy())
            rows["comfort_violation_degree_hours"].append(
                g.discomfort_dh.copy() if _houses(g) is not None else np.full(g.n, np.nan)
            )
            if g.kind in unserved:
                short = np.asarray(
                    pop.shortfall_kwh(horizon_s) if g.kind == "ev" else pop.unserved_kwh(horizon_s),
                    dtype=np.float64,
                )
                rows["unserved_kwh"].append(short)
                unserved[g.kind] = (unserved[g.kind] or 0.0) + float(short.sum())
            else:
                rows["unserved_kwh"].append(np.full(g.n, np.nan))
            # gas: a hybrid's boiler at its house's gas price, in the home's cost beside its
            # electricity (same price in both runs: see Hybrid heat pumps in the module)
            if g.kind == "heat_pump":
                billed = g.gas_kwh * np.nan_to_num(np.asarray(pop.gas_price_per_kwh), nan=0.0)
                rows["gas_kwh"].append(g.gas_kwh.copy())
                rows["gas_cost"].append(billed)
                rows["cost"].append(g.cost + billed)
                if bool(np.any(pop.hybrid)):
                    gas_kwh = (gas_kwh or 0.0) + float(g.gas_kwh.sum())
                    gas_cost = (gas_cost or 0.0) + float(billed.sum())
            else:
                rows["gas_kwh"].append(np.full(g.n, np.nan))
                rows["gas_cost"].append(np.full(g.n, np.nan))
                rows["cost"].append(g.cost.copy())
        devices = {k: np.concatenate(v) if v else np.empty(0) for k, v in rows.items()}
        interval_h = sc.market_interval_s / 3600.0
        load = series["feeder_load_kw"]
        has_hvac = any(_houses(g) is not None for g in self.groups)
        kpis: dict[str, float | None] = {
            "peak_kw": float(np.max(load)),
            "energy_kwh": float(load.sum() * interval_h),
            "cost": float(devices["cost"].sum()),
            "losses_kwh": losses_kwh,
            "pv_used_kwh": pv_used_kwh if any(g.kind == "pv" for g in self.groups) else None,
            "comfort_violation_degree_hours": (
                float(np.nansum(devices["comfort_violation_degree_hours"])) if has_hvac else None
            ),
            "capacity_violation_minutes": cap_min if math.isfinite(self.capacity_kw) else None,
            "voltage_violation_minutes": volt_min,
            "unserved_ev_kwh": unserved["ev"],
            "messages_lost": float(self.messages_lost),
            "gas_kwh": gas_kwh,
            "gas_cost": gas_cost,
            "unserved_appliance_kwh": unserved["appliance"],
        }
        return RunResult(
            name=self.name,
            series=series,
            devices=devices,
            kpis=kpis,
            peak_index=peak_index,
            peak_vm_pu=peak_vm,
            peak_branch_loading_pct=peak_loading,
            peak_demand=peak_demand,
            peak_supply=peak_supply,
            dso_notes=self.dso_notes,
            dso_loop_intervals=self.dso_calls,
            timings_s=dict(self.timings),
            messages={k: dict(v) for k, v in self.messages.items()} if self.market else {},
        )


class _CheckedIds:
    """Curves named by ids that are checked once per id array, not every interval.

    Every interval the loop names the unresponsive blocks by their population's ids
    (:meth:`BidCurves.with_ids`) and concatenates the auction's curves (:meth:`BidCurves.concat`),
    and both check the ids (non-empty strings, unique: a sort of a few thousand strings each
    time). The ids are the same arrays every interval, so the check of an array, or of a
    sequence of arrays concatenated, is kept and reused while the very same read-only arrays
    come again; anything else is checked as before. The curves are the same either way.
    """

    def __init__(self) -> None:
        self._named: dict[int, tuple[npt.NDArray[Any], npt.NDArray[np.str_]]] = {}
        self._joined: tuple[tuple[npt.NDArray[Any], ...], npt.NDArray[np.str_]] | None = None

    def named(self, curves: BidCurves, ids: npt.ArrayLike) -> BidCurves:
        """``curves.with_ids(ids)``."""
        if not _read_only(ids):
            return curves.with_ids(ids)
        assert isinstance(ids, np.ndarray)
        hit = self._named.get(id(ids))
        if hit is None or hit[0] is not ids or hit[1].size != len(curves):
            checked = curves.with_ids(ids).ids
            assert checked is not None
            hit = (ids, checked)
            self._named[id(ids)] = hit
        return BidCurves(curves.price_per_kwh, curves.power_kw, hit[1])

    def concat(self, batches: list[BidCurves]) -> BidCurves:
        """``BidCurves.concat(batches)``."""
        parts: list[npt.NDArray[Any]] = []
        for b in batches:
            if not _read_only(b.ids):
                return BidCurves.concat(batches)
            assert b.ids is not None
            parts.append(b.ids)
        known = self._joined
        if (
            known is None
            or len(known[0]) != len(parts)
            or not all(a is b for a, b in zip(known[0], parts, strict=True))
        ):
            joined = BidCurves.concat(batches)
            assert joined.ids is not None
            self._joined = (tuple(parts), joined.ids)
            return joined
        k = max(b.n_points_max for b in batches)  # padded as BidCurves.concat pads them
        prices = _stacked_padded([b.price_per_kwh for b in batches], k)
        powers = _stacked_padded([b.power_kw for b in batches], k)
        return BidCurves._trusted(prices, powers, known[1])


def _read_only(ids: object) -> bool:
    """Whether ``ids`` is a read-only array (a population's checked ids are)."""
    return isinstance(ids, np.ndarray) and not ids.flags.writeable


@dataclass
class _FlowBook:
    """What a run books from each interval's AC power flow, interval after interval.

    The series of the flow (feeder load, substation kVA, lowest voltage, highest loading,
    losses), the totals over the horizon (losses, export, minutes outside the voltage limits or
    above the capacity) and the peak interval's voltages and loadings. Nothing here feeds back
    into the run, so a run without a market books a whole day's batch of flows after its loop
    (:class:`transactive.network.BatchPowerFlow`, the same numbers bit for bit as one flow per
    interval) exactly as it would have booked them one by one: in interval order, so every
    total adds up in the same order.
    """

    series: dict[str, FloatArray]
    vmin_pu: float
    vmax_pu: float
    capacity_kw: float
    market_scope: bool
    interval_s: int
    iterative: bool
    peak_vm: FloatArray
    peak_loading: FloatArray
    peak_kw: float = -math.inf
    peak_index: int = 0
    losses_kwh: float = 0.0
    export_kwh: float = 0.0
    volt_min: float = 0.0
    cap_min: float = 0.0

    def interval(
        self,
        t: int,
        *,
        load_kw: float,
        q_slack_kvar: float,
        vm_pu: FloatArray,
        vmin_pu: float,
        branch_loading_pct: FloatArray,
        losses_kw: float,
        market_limited_kw: float,
    ) -> bool:
        """Book interval ``t``'s flow; whether it is the new peak (the largest import so far).

        ``market_limited_kw`` is the auction's homes' load less the generators' output, what
        the capacity limits for a ``market`` scope (the import ``load_kw`` for a feeder scope).
        """
        series = self.series
        series["feeder_load_kw"][t] = load_kw
        if self.iterative:
            series["substation_kva"][t] = math.hypot(load_kw, q_slack_kvar)
        series["vmin_pu"][t] = vmin_pu
        loading = np.asarray(branch_loading_pct, dtype=np.float64)
        any_rated = bool(np.isfinite(loading).any())
        series["max_loading_pct"][t] = np.nanmax(loading) if any_rated else np.nan
        series["losses_kw"][t] = losses_kw
        self.losses_kwh += float(losses_kw) * self.interval_s / 3600.0
        minutes = self.interval_s / 60.0
        vm = np.asarray(vm_pu)
        if np.any(vm < self.vmin_pu - 1e-9) or np.any(vm > self.vmax_pu + 1e-9):
            self.volt_min += minutes
        limited = market_limited_kw if self.market_scope else load_kw
        if limited > self.capacity_kw * (1 + 1e-9):
            self.cap_min += minutes
        self.export_kwh += max(-load_kw, 0.0) * self.interval_s / 3600.0
        if load_kw > self.peak_kw:
            self.peak_kw, self.peak_index = load_kw, t
            self.peak_vm = vm.copy()
            self.peak_loading = loading.copy()
            return True
        return False


def _batches_flows(runner: Any) -> bool:
    """Whether a runner solves a day of intervals in one call (power-grid-model's does)."""
    from transactive.network import BatchPowerFlow  # noqa: PLC0415

    return isinstance(runner, BatchPowerFlow)


def _losses_at_capacity(
    capacity_kw: float, flows: deque[tuple[float, float]], last_losses_kw: float
) -> float:
    """The feeder's losses if its import were ``capacity_kw`` (see Capacity in the module).

    I²R losses scale with the square of the branch currents, so with the load's pattern and
    voltages near nominal they scale with the square of the import: the interval of the largest
    import in the price window (``flows`` holds each interval's import and losses) gives the
    coefficient, ``losses x (capacity / import)²``. Not the last interval's: an import that PV
    offsets to almost nothing still has the losses of the flows between buses, and scaling those
    by ``(capacity / import)²`` (0.15 kW at 17 kW of import on the default day's late morning,
    6,100 kW at 3,500 kW) would leave the market no room at all. Without a window whose import
    exceeds 1 kW (or with no capacity), the last interval's losses as they are.
    """
    best = max(flows, default=None)
    if not math.isfinite(capacity_kw) or best is None or best[0] <= 1.0:
        return last_losses_kw
    load_kw, losses_kw = best
    return losses_kw * (capacity_kw / load_kw) ** 2


def _meter_step(
    energy_kwh: FloatArray,
    bus: IntArray,
    total_kwh: FloatArray,
    power_kw: FloatArray,
    first: bool,
    interval_s: int,
    n_nodes: int,
) -> tuple[FloatArray, FloatArray]:
    """Book one physics step of a group: its energy, its interval's mean power, its nodes' sum.

    ``total_kwh += energy_kwh`` in place; the interval's mean power so far, ``energy x 3600 /
    interval_s`` summed over the interval's steps (a new array at its first step, ``first``);
    and the step's energy per node, ``bincount(bus, energy)``. One pass over the devices
    (:func:`_meter_step_rows`, compiled by numba on first use) instead of five numpy passes:
    at 100,000 homes the loop books about 10^9 device-steps a day. The numbers are those of
    :func:`_meter_step_numpy` bit for bit (the same operations, in the same order).
    """
    e = np.ascontiguousarray(energy_kwh, dtype=np.float64)
    buses = np.ascontiguousarray(bus, dtype=np.int64)
    n = e.size
    if not (
        total_kwh.shape == buses.shape == (n,)
        and total_kwh.flags.c_contiguous
        and total_kwh.flags.writeable
        and (
            first
            or (power_kw.shape == (n,) and power_kw.flags.c_contiguous and power_kw.flags.writeable)
        )
    ):
        return _meter_step_numpy(energy_kwh, bus, total_kwh, power_kw, first, interval_s, n_nodes)
    power = np.empty(n) if first else power_kw
    at_nodes = np.zeros(n_nodes)
    _bookkeeping_kernels()[0](e, buses, total_kwh, power, first, float(interval_s), at_nodes)
    return power, at_nodes


@dataclass(frozen=True)
class _Booked:
    """A group's interval metered at once.

    Each step's energy per node ``(S, nodes)``, its total energy ``(S,)`` and, for houses, the
    sum of their air temperatures ``(S,)``.
    """

    node_kwh: FloatArray
    energy_kwh: FloatArray
    air_c: FloatArray | None


def _book_interval(
    series: StepSeries, g: _Group, dt: int, interval_s: int, n_nodes: int
) -> _Booked | None:
    """Meter a group's interval from its recorded steps, in one pass over the devices.

    :func:`_meter_step` and :func:`_add_discomfort` of every step: ``g.energy_kwh`` and
    ``g.discomfort_dh`` grow step after step and ``g.last_power_kw`` becomes the interval's
    mean power, each summed in the order of a step at a time (one kernel,
    :func:`_meter_interval_rows`, with the per-step kernels' operations), so the numbers are
    those of the step-by-step loop to the bit (``tests/sim/test_engine_speedpath.py``); the
    per-step totals are numpy's sums of each step's row, as that loop's ``e.sum()``. None (the
    loop books the group) when an array is not one the kernels take.
    """
    energy = series.step_energy_kwh
    if energy is None or not energy.flags.c_contiguous or energy.dtype != np.float64:
        return None
    steps, n = energy.shape
    buses = np.ascontiguousarray(g.bus, dtype=np.int64)
    if (
        buses.shape != (n,)
        or g.energy_kwh.shape != (n,)
        or not g.energy_kwh.flags.c_contiguous
        or not g.energy_kwh.flags.writeable
    ):
        return None
    house = _houses(g)
    bands: tuple[FloatArray, FloatArray, FloatArray] | None = None
    if house is not None:
        air = series.step_air_temperature_c
        out = g.discomfort_dh
        if air is None or air.shape != (steps, n) or out.shape != (n,):
            return None
        lo = np.ascontiguousarray(house.comfort_min_c, dtype=np.float64)
        hi = np.ascontiguousarray(house.comfort_max_c, dtype=np.float64)
        if not (lo.shape == hi.shape == (n,) and out.flags.c_contiguous and out.flags.writeable):
            return None
        bands = (np.ascontiguousarray(air, dtype=np.float64), lo, hi)
    meter, discomfort = _interval_kernels()
    power = np.empty(n)
    node_kwh = np.zeros((steps, n_nodes))
    meter(energy, buses, g.energy_kwh, power, float(interval_s), node_kwh)
    g.last_power_kw = power
    air_sums = None
    if bands is not None:
        ta, lo, hi = bands
        discomfort(ta, lo, hi, float(dt), g.discomfort_dh)
        air_sums = ta.sum(axis=1)
    return _Booked(node_kwh=node_kwh, energy_kwh=energy.sum(axis=1), air_c=air_sums)


def _meter_interval_rows(
    e: FloatArray,
    bus: IntArray,
    total: FloatArray,
    power: FloatArray,
    interval_s: float,
    at_nodes: FloatArray,
) -> None:
    """:func:`_meter_step_rows` of the ``S`` steps of ``e`` ``(S, N)``, device by device.

    Each device's total and mean power take its steps in order, and each step's node sums
    ``at_nodes[k]`` take the devices in order, from zero: the additions of ``S`` calls of the
    per-step kernel, in the same order.
    """
    n_nodes = at_nodes.shape[1]
    steps = e.shape[0]
    for i in range(e.shape[1]):
        node = bus[i]
        if node < 0 or node >= n_nodes:
            raise IndexError("a device's bus is not a node of the feeder")
        t = total[i]
        p_sum = 0.0
        for k in range(steps):
            x = e[k, i]
            t = t + x
            p = (x * 3600.0) / interval_s
            p_sum = p if k == 0 else p_sum + p
            at_nodes[k, node] += x
        total[i] = t
        power[i] = p_sum


def _discomfort_interval_rows(
    ta: FloatArray, lo: FloatArray, hi: FloatArray, dt: float, out: FloatArray
) -> None:
    """:func:`_discomfort_rows` of the ``S`` steps of ``ta`` ``(S, N)``, each house's in order."""
    steps = ta.shape[0]
    for i in range(ta.shape[1]):
        acc = out[i]
        for k in range(steps):
            a = ta[k, i] - hi[i]
            over = a if (a >= 0.0 or math.isnan(a)) else 0.0
            b = lo[i] - ta[k, i]
            under = b if (b >= 0.0 or math.isnan(b)) else 0.0
            acc = acc + ((over + under) * dt) / 3600.0
        out[i] = acc


@functools.cache
def _interval_kernels() -> tuple[Callable[..., None], Callable[..., None]]:
    """:func:`_meter_interval_rows` and :func:`_discomfort_interval_rows` by numba."""
    import numba  # noqa: PLC0415

    jit = numba.njit(cache=True, nogil=True)
    return jit(_meter_interval_rows), jit(_discomfort_interval_rows)


def _meter_step_numpy(
    energy_kwh: FloatArray,
    bus: IntArray,
    total_kwh: FloatArray,
    power_kw: FloatArray,
    first: bool,
    interval_s: int,
    n_nodes: int,
) -> tuple[FloatArray, FloatArray]:
    """:func:`_meter_step` in numpy: the reference the kernel is checked against."""
    e = np.asarray(energy_kwh, dtype=np.float64)
    total_kwh += e
    power = e * 3600.0 / interval_s if first else power_kw + (e * 3600.0 / interval_s)
    return power, np.asarray(np.bincount(bus, weights=e, minlength=n_nodes), dtype=np.float64)


def _meter_step_rows(
    e: FloatArray,
    bus: IntArray,
    total: FloatArray,
    power: FloatArray,
    first: bool,
    interval_s: float,
    at_nodes: FloatArray,
) -> None:
    """The kernel of :func:`_meter_step` (numba compiles this source; plain Python runs it too).

    ``bincount`` adds the weights in device order from zero, as the loop does. A bus outside
    the nodes is refused (numpy's path fails on it too).
    """
    n_nodes = at_nodes.size
    for i in range(e.size):
        node = bus[i]
        if node < 0 or node >= n_nodes:
            raise IndexError("a device's bus is not a node of the feeder")
        x = e[i]
        total[i] = total[i] + x
        p = (x * 3600.0) / interval_s
        power[i] = p if first else power[i] + p
        at_nodes[node] += x


def _add_discomfort(
    air_c: FloatArray,
    comfort_min_c: FloatArray,
    comfort_max_c: FloatArray,
    dt: int,
    out: FloatArray,
) -> None:
    """``out += (max(T - T_max, 0) + max(T_min - T, 0)) x dt / 3600``: degree-hours outside comfort.

    One pass over the houses (:func:`_discomfort_rows`, numba), the numbers of
    :func:`_add_discomfort_numpy` bit for bit.
    """
    ta = np.ascontiguousarray(air_c, dtype=np.float64)
    lo = np.ascontiguousarray(comfort_min_c, dtype=np.float64)
    hi = np.ascontiguousarray(comfort_max_c, dtype=np.float64)
    if not (
        ta.shape == lo.shape == hi.shape == out.shape
        and out.flags.c_contiguous
        and out.flags.writeable
    ):
        _add_discomfort_numpy(air_c, comfort_min_c, comfort_max_c, dt, out)
        return
    _bookkeeping_kernels()[1](ta, lo, hi, float(dt), out)


def _add_discomfort_numpy(
    air_c: FloatArray,
    comfort_min_c: FloatArray,
    comfort_max_c: FloatArray,
    dt: int,
    out: FloatArray,
) -> None:
    """:func:`_add_discomfort` in numpy: the reference the kernel is checked against."""
    over = np.maximum(air_c - comfort_max_c, 0.0)
    under = np.maximum(comfort_min_c - air_c, 0.0)
    out += (over + under) * dt / 3600.0


def _discomfort_rows(
    ta: FloatArray, lo: FloatArray, hi: FloatArray, dt: float, out: FloatArray
) -> None:
    """The kernel of :func:`_add_discomfort`.

    ``np.maximum(x, 0.0)`` is ``x`` when ``x >= 0`` or ``x`` is NaN, else ``0.0`` (a ``-0.0``
    it may keep or not adds nothing to a sum that starts at ``+0.0``).
    """
    for i in range(ta.size):
        a = ta[i] - hi[i]
        over = a if (a >= 0.0 or math.isnan(a)) else 0.0
        b = lo[i] - ta[i]
        under = b if (b >= 0.0 or math.isnan(b)) else 0.0
        out[i] = out[i] + ((over + under) * dt) / 3600.0


@functools.cache
def _bookkeeping_kernels() -> tuple[Callable[..., None], Callable[..., None]]:
    """:func:`_meter_step_rows` and :func:`_discomfort_rows` compiled by numba, on first use."""
    import numba  # noqa: PLC0415

    jit = numba.njit(cache=True, nogil=True)
    return jit(_meter_step_rows), jit(_discomfort_rows)


def _peak_curves(curves: BidCurves, supply: Any) -> tuple[BidCurves, BidCurves]:
    """The peak interval's aggregate demand, and its sellers with the substation's offer."""
    from transactive.market import aggregate  # noqa: PLC0415

    sides = aggregate(curves, by_side=True)
    peak_demand = sides.take([0])
    # the substation as a seller: its import at its offer price up to the market's room (an
    # unbounded supply is drawn to the largest demand bid)
    extent = supply.capacity_kw
    if not math.isfinite(extent):
        extent = float(peak_demand.power_kw.max())
    station = BidCurves._trusted(
        np.array([[supply.price_per_kwh, supply.price_per_kwh]]),
        np.array([[0.0, -extent]]),
        None,
    )
    sellers = BidCurves.concat([sides.take([1]), station.with_ids(["substation"])])
    return peak_demand, aggregate(sellers)


#: The kinds whose ``step_many`` goes through an interval's physics steps in one call.
_STEPS_AT_ONCE = (
    HvacPopulation,
    WaterHeaterPopulation,
    EVPopulation,
    BatteryPopulation,
    PVPopulation,
    BaseLoadPopulation,
)


def _dry_run(pop: Any, start_s: int, steps: int, dt: int, forecast: WeatherSample) -> FloatArray:
    """Mean power of devices left alone over an interval, stepped on a copy under the forecast.

    The market's expected power of a non-participant: its own model (thermostat, timer,
    profile) run through the interval on a copy, under the interval's forecast weather, so the
    devices themselves are not changed.
    """
    total = np.zeros(pop.n_devices)
    if isinstance(pop, _STEPS_AT_ONCE):  # the steps in one call, each step's energy recorded
        # on the population itself, left as it is (no copy: a third of the dry run's time)
        series = pop.step_many(start_s, dt, [forecast] * steps, record=True, dry_run=True)
        assert series.step_energy_kwh is not None
        for k in range(steps):  # summed as the step-by-step loop below sums them
            total += series.step_energy_kwh[k]
    else:
        copy_ = copy.deepcopy(pop)
        for k in range(steps):
            step = copy_.step(start_s + k * dt, dt, forecast)
            total += np.asarray(step.energy_kwh, dtype=np.float64)
    return np.asarray(total * 3600.0 / (steps * dt), dtype=np.float64)


def _block(power_kw: FloatArray, cap: float, floor: float) -> BidCurves:
    """Unresponsive power as curves: demand a block at the cap, injection a block at the floor."""
    p = np.asarray(power_kw, dtype=np.float64)
    n = p.size
    prices = np.where(p[:, None] >= 0, cap, floor) * np.ones((n, 2))
    powers = np.zeros((n, 2))
    powers[:, 0] = np.where(p >= 0, p, 0.0)
    powers[:, 1] = np.where(p >= 0, 0.0, p)
    return BidCurves._trusted(prices, powers, None)


def _houses(g: _Group) -> Any:
    """The thermal houses of a group (HVAC or heat pump), whose comfort is tracked; else None."""
    if g.kind == "hvac":
        return g.population
    if g.kind == "heat_pump":
        return g.population.houses
    return None


def wind_power_pu(
    speed_m_per_s: float | npt.ArrayLike,
    *,
    cut_in_m_per_s: float,
    rated_m_per_s: float,
    cut_out_m_per_s: float,
) -> FloatArray:
    """Output of a wind turbine per unit of its rating: the idealized cubic power curve.

    ``P/P_r = (v^3 - v_ci^3) / (v_r^3 - v_ci^3)`` between cut-in and rated speed, 1 from rated
    to cut-out, 0 below cut-in and from cut-out on: the wind's power grows with the cube of its
    speed until the rotor's control holds the rating (Manwell, McGowan, Rogers, "Wind Energy
    Explained", 2nd ed., Wiley 2009, ch. 2), the cubic model of Carrillo et al., "Review of
    power curve modelling for wind turbines", Renew. Sustain. Energy Rev. 21 (2013) 572.
    """
    v = np.asarray(speed_m_per_s, dtype=np.float64)
    ramp = (v**3 - cut_in_m_per_s**3) / (rated_m_per_s**3 - cut_in_m_per_s**3)
    pu = np.where(v < rated_m_per_s, np.clip(ramp, 0.0, 1.0), 1.0)
    return np.asarray(np.where((v < cut_in_m_per_s) | (v >= cut_out_m_per_s), 0.0, pu))


WIND_REFERENCE_HEIGHT_M = 10.0
"""Height of the weather file's wind speed (the TMY3 anemometer height)."""
WIND_SHEAR_EXPONENT = 1.0 / 7.0
"""Power-law shear exponent, the classic 1/7 of open land (Manwell et al. 2009, ch. 2)."""


def _wind_kw(generators: Any, speed_m_per_s: float) -> FloatArray:
    """Each generator's wind output (kW) at a 10 m wind speed (0 for dispatchable ones).

    The speed is brought to the hub by the power law ``v = v_ref (z / z_ref)^α`` (Manwell et
    al. 2009, ch. 2) and goes through :func:`wind_power_pu`.
    """
    out = np.zeros(len(generators))
    for i, gen in enumerate(generators):
        if gen.kind != "wind":
            continue
        v = speed_m_per_s * (gen.hub_height_m / WIND_REFERENCE_HEIGHT_M) ** WIND_SHEAR_EXPONENT
        pu = wind_power_pu(
            v,
            cut_in_m_per_s=gen.cut_in_m_per_s,
            rated_m_per_s=gen.rated_m_per_s,
            cut_out_m_per_s=gen.cut_out_m_per_s,
        )
        out[i] = gen.capacity_kw * float(pu)
    return out


def powermatcher_clearing(
    bids: BidCurves,
    home: npt.ArrayLike,
    *,
    homes_per_concentrator: int,
    price_cap: float,
    price_floor: float,
    supply: Any,
) -> Any:
    """Clear a PowerMatcher concentrator tree: devices, homes, neighbourhoods, auctioneer.

    Each home's agents' curves are summed per home, then the homes' per concentrator (home
    ``h`` under concentrator ``h // homes_per_concentrator``), buyers and sellers apart at every
    level (:func:`transactive.market.aggregate` with ``by_side=True``); rows whose ``home`` is
    negative (the supply-side generators) join the auctioneer directly. The auctioneer clears
    the top curves with :func:`transactive.market.clear` (and the grid connection ``supply``),
    and the price travels back down: every device's allocation is its own curve at the price
    with the buyers' and sellers' fills (:func:`transactive.market.allocate`; Kok, Warmer,
    Kamphuis, "PowerMatcher: multiagent control in the electricity infrastructure", AAMAS 2005,
    §3). With by-side sums this is exactly the flat double auction of all the bids (same
    price, same allocation per device), which the market layer's tests check.

    Returns the top clearing result with the device rows' ``allocation_kw``, ``marginal_fill``
    and ``ids`` (so it reads like the flat clearing of ``bids``).
    """
    from transactive.market import aggregate, allocate, clear  # noqa: PLC0415
    from transactive.market.clearing import _bounds_clamped  # noqa: PLC0415

    ids = bids.ids
    if ids is None:  # the tree's levels carry ids, so every row needs one
        bids = bids.with_ids(default_ids("bid", len(bids)))
    home = np.asarray(home, dtype=np.int64)
    at_home = home >= 0
    n_homes = int(home.max()) + 1 if at_home.any() else 0
    rows = np.flatnonzero(at_home)
    per_home = aggregate(bids.take(rows), home[rows], n_groups=n_homes, by_side=True)
    n_conc = -(-n_homes // homes_per_concentrator)
    of_home = np.arange(n_homes) // homes_per_concentrator
    per_conc = aggregate(
        per_home,
        np.concatenate([of_home, of_home]),
        n_groups=n_conc,
        by_side=True,
        group_ids=[f"concentrator-{c}" for c in range(n_conc)],
    )
    top = BidCurves.concat([per_conc, bids.take(np.flatnonzero(~at_home))])
    result = clear(top, price_cap=price_cap, price_floor=price_floor, supply=supply)
    allocation = np.asarray(allocate(bids, result), dtype=np.float64) + 0.0
    # the fill the flat clearing gives: on each curve's segment at the price, with rationing
    # at the cap and curtailment at the floor (the market layer's own bounds)
    lo, hi = _bounds_clamped(
        bids.price_per_kwh, bids.power_kw, result.clearing_price, price_floor, price_cap
    )
    width = hi - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        fill = np.where(width > 0, np.clip((allocation - lo) / width, 0.0, 1.0), 0.0) + 0.0
    allocation.setflags(write=False)
    fill.setflags(write=False)
    return dataclasses.replace(result, allocation_kw=allocation, marginal_fill=fill, ids=ids)


def _generators(
    generators: Any, wholesale_per_kwh: float, wind_kw: FloatArray, floor: float
) -> BidCurves:
    """Generators as sellers, each one block (anonymous: the loop names them ``generator-<name>``).

    A dispatchable one offers its capacity at its offer price
    (:meth:`transactive.sim.scenario.Generator.offer_price_per_kwh`), a wind turbine its
    forecast output at the price floor (must-take).
    """
    price = np.array(
        [
            floor if g.kind == "wind" else g.offer_price_per_kwh(wholesale_per_kwh)
            for g in generators
        ]
    )
    size = np.array(
        [w if g.kind == "wind" else g.capacity_kw for g, w in zip(generators, wind_kw, strict=True)]
    )
    return BidCurves._trusted(
        np.stack([price, price], axis=1), np.stack([np.zeros_like(size), -size], axis=1), None
    )


def _where_rows(mask: npt.NDArray[np.bool_], a: BidCurves, b: BidCurves) -> BidCurves:
    """Row ``i`` of ``a`` where ``mask[i]``, else of ``b`` (padded to the wider of the two)."""
    k = max(a.price_per_kwh.shape[1], b.price_per_kwh.shape[1])

    def pad(c: BidCurves) -> tuple[FloatArray, FloatArray]:
        extra = k - c.price_per_kwh.shape[1]
        pp, qq = c.price_per_kwh, c.power_kw
        if extra:
            pp = np.concatenate([pp, np.repeat(pp[:, -1:], extra, axis=1)], axis=1)
            qq = np.concatenate([qq, np.repeat(qq[:, -1:], extra, axis=1)], axis=1)
        return pp, qq

    pa, qa = pad(a)
    pb, qb = pad(b)
    m = mask[:, None]
    return BidCurves._trusted(np.where(m, pa, pb), np.where(m, qa, qb), b.ids)
