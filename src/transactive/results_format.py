"""The results directory of a simulated run: the contract between the simulator and the report.

:mod:`transactive.sim` writes it and :mod:`transactive.report` reads it; both take the format's
names from here, so the writer and the reader cannot drift apart. Format version 2:

- ``summary.json``: ``format_version``, the scenario, seed and package version, and per run
  (``baseline``, ``transactive``) every KPI of :data:`KPI_NAMES` (``null`` where one does not
  apply), ``peak_reduction_pct``, optional ``groups`` and ``published`` blocks;
- ``timeseries.parquet``: one row per run, interval and series (columns ``run``,
  ``interval_start_s``, ``time``, ``series``, ``value``): the series of
  :data:`SERIES_EVERY_RUN`, the market's :data:`SERIES_MARKET` and one ``load_kw:<kind>`` per
  device kind;
- ``devices.parquet`` (one row per run and device id, :data:`DEVICE_COLUMNS`),
  ``peak_curves.parquet``, ``peak_network.json`` and ``scenario.toml``.

A run whose mechanism is iterative (``ev-valley-filling``, ``ev-congestion``,
``day-ahead-flex``) also has, in the same format version (a directory without them reads as
before): an ``iterative`` block in ``summary.json`` (:data:`ITERATIVE_KEYS`), the tables of
:data:`ITERATIVE_FILES` (one row per round of the exchange, :data:`ITERATIVE_ROUND_COLUMNS`;
one row per period of the plan, :data:`ITERATIVE_PERIOD_COLUMNS`), with per-node prices the
long table :data:`ITERATIVE_PRICES_FILE` (:data:`ITERATIVE_PRICE_COLUMNS`), and the series
:data:`SERIES_ITERATIVE` in every run (``ev_scheduled_kw`` in the transactive run).

Version 2 added the gas of hybrid heat pumps (KPIs ``gas_kwh`` and ``gas_cost``, the series
``gas_kw``, the device columns ``gas_kwh`` and ``gas_cost``) and the smart appliances' KPI
``unserved_appliance_kwh``; ``cost`` now includes ``gas_cost``.
"""

from __future__ import annotations

__all__ = [
    "DEVICE_COLUMNS",
    "FILES",
    "FORMAT_VERSION",
    "ITERATIVE_FILES",
    "ITERATIVE_KEYS",
    "ITERATIVE_PERIOD_COLUMNS",
    "ITERATIVE_PRICES_FILE",
    "ITERATIVE_PRICE_COLUMNS",
    "ITERATIVE_ROUND_COLUMNS",
    "KPI_NAMES",
    "LOAD_PREFIX",
    "SERIES_EVERY_RUN",
    "SERIES_ITERATIVE",
    "SERIES_MARKET",
]

FORMAT_VERSION = 2

#: Every KPI of a run, in the order tables show them. ``cost`` is what the customers paid for
#: energy: their electricity (at the flat tariff, their tariff or the node's clearing price) and
#: the gas of hybrid heat pumps' boilers (at each house's gas price, the same in both runs), so
#: a hybrid that burns gas instead of buying electricity pays for it; ``gas_cost`` is the part
#: of ``cost`` paid for gas, ``gas_kwh`` that gas (both ``null`` without a hybrid).
#: ``unserved_appliance_kwh``: energy of the appliance cycles due by the horizon's end that
#: had not run in full by then (``null`` without appliances).
KPI_NAMES = (
    "peak_kw",
    "energy_kwh",
    "cost",
    "gas_kwh",
    "gas_cost",
    "losses_kwh",
    "pv_used_kwh",
    "comfort_violation_degree_hours",
    "capacity_violation_minutes",
    "voltage_violation_minutes",
    "unserved_ev_kwh",
    "unserved_appliance_kwh",
    "messages_lost",
)

#: The market's series (the baseline, on its flat tariff, may lack them).
SERIES_MARKET = ("clearing_price_per_kwh", "clearing_quantity_kw")

#: Series every run has.
SERIES_EVERY_RUN = (
    "feeder_load_kw",
    "capacity_kw",
    "vmin_pu",
    "max_loading_pct",
    "losses_kw",
    "mean_indoor_temperature_c",
    "comfort_min_c",
    "comfort_max_c",
    "ev_mean_soc",
    "gas_kw",
)

#: Prefix of the per-kind load series (``load_kw:hvac``, ...).
LOAD_PREFIX = "load_kw:"

#: The columns of ``devices.parquet`` (``unserved_kwh``: an EV's energy missing at its
#: departure or an appliance's cycle not run by its due time, NaN for other kinds; ``gas_kwh``
#: and ``gas_cost``: a heat pump's boiler gas and its cost, NaN for other kinds; ``cost``
#: includes ``gas_cost``).
DEVICE_COLUMNS = (
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
)

#: The files of a results directory.
FILES = (
    "summary.json",
    "timeseries.parquet",
    "devices.parquet",
    "peak_curves.parquet",
    "peak_network.json",
    "scenario.toml",
)

#: Series every run of an iterative mechanism has: the feeder head's apparent power in the AC
#: power flow (kVA). Its transactive run also has ``ev_scheduled_kw`` (the coordinated EVs'
#: scheduled power per interval).
SERIES_ITERATIVE = ("substation_kva",)

#: The files of an iterative mechanism's run, beside :data:`FILES`.
ITERATIVE_FILES = ("iterative.parquet", "iterative_periods.parquet")

#: Per-node prices of the plan (``ev-congestion``), long format; absent for uniform prices.
ITERATIVE_PRICES_FILE = "iterative_prices.parquet"

#: ``iterative.parquet``: one row per round of the exchange (``round`` from 1; the residuals
#: are the algorithm's relative ones; ``objective`` in the block's ``objective_unit``;
#: ``relative_gap`` to the centralized optimum).
ITERATIVE_ROUND_COLUMNS = ("round", "primal_residual", "dual_residual", "objective", "relative_gap")

#: ``iterative_periods.parquet``: one row per period of the plan (kW averages over the period):
#: the forecast base load (everything but the coordinated EVs), the EVs' schedule (the
#: exchange's and the centralized optimum's), the EVs' metered load in the transactive run and
#: their load in the baseline, the base load plus the schedule, the limit (NaN: none), the
#: uniform price (NaN with per-node prices) and the prices' lowest and highest over the nodes,
#: and the day-ahead pool's scheduled generation (NaN for the other kinds).
ITERATIVE_PERIOD_COLUMNS = (
    "period_start_s",
    "base_load_kw",
    "ev_scheduled_kw",
    "ev_centralized_kw",
    "ev_metered_kw",
    "ev_baseline_kw",
    "total_kw",
    "limit",
    "price",
    "price_min",
    "price_max",
    "generation_kw",
)

#: ``iterative_prices.parquet``: the plan's price per period and feeder node.
ITERATIVE_PRICE_COLUMNS = ("period_start_s", "node", "price")

#: The keys of the summary's ``iterative`` block.
ITERATIVE_KEYS = (
    "mechanism",
    "algorithm",
    "period_s",
    "n_periods",
    "n_evs",
    "rounds",
    "converged",
    "stop_reason",
    "tolerance",
    "max_rounds",
    "primal_residual",
    "dual_residual",
    "objective",
    "objective_unit",
    "centralized",
    "relative_gap",
    "wall_s",
    "messages_per_agent",
    "numbers_per_agent",
    "loss_probability",
    "price_unit",
    "prices_per_node",
    "limit",
    "ev_energy",
    "forecast",
    "billing",
    "leaving_after_horizon",
    "no_faults",
)
