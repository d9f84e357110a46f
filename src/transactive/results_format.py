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

Version 2 added the gas of hybrid heat pumps (KPIs ``gas_kwh`` and ``gas_cost``, the series
``gas_kw``, the device columns ``gas_kwh`` and ``gas_cost``) and the smart appliances' KPI
``unserved_appliance_kwh``; ``cost`` now includes ``gas_cost``.
"""

from __future__ import annotations

__all__ = [
    "DEVICE_COLUMNS",
    "FILES",
    "FORMAT_VERSION",
    "KPI_NAMES",
    "LOAD_PREFIX",
    "SERIES_EVERY_RUN",
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
