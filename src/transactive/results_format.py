"""The results directory of a simulated run: the contract between the simulator and the report.

:mod:`transactive.sim` writes it and :mod:`transactive.report` reads it; both take the format's
names from here, so the writer and the reader cannot drift apart. Format version 1:

- ``summary.json``: ``format_version``, the scenario, seed and package version, and per run
  (``baseline``, ``transactive``) every KPI of :data:`KPI_NAMES` (``null`` where one does not
  apply), ``peak_reduction_pct``, optional ``groups`` and ``published`` blocks;
- ``timeseries.parquet``: one row per run, interval and series (columns ``run``,
  ``interval_start_s``, ``time``, ``series``, ``value``): the series of
  :data:`SERIES_EVERY_RUN`, the market's :data:`SERIES_MARKET` and one ``load_kw:<kind>`` per
  device kind;
- ``devices.parquet`` (one row per run and device id), ``peak_curves.parquet``,
  ``peak_network.json`` and ``scenario.toml``.
"""

from __future__ import annotations

__all__ = [
    "FILES",
    "FORMAT_VERSION",
    "KPI_NAMES",
    "LOAD_PREFIX",
    "SERIES_EVERY_RUN",
    "SERIES_MARKET",
]

FORMAT_VERSION = 1

#: Every KPI of a run, in the order tables show them.
KPI_NAMES = (
    "peak_kw",
    "energy_kwh",
    "cost",
    "losses_kwh",
    "pv_used_kwh",
    "comfort_violation_degree_hours",
    "capacity_violation_minutes",
    "voltage_violation_minutes",
    "unserved_ev_kwh",
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
)

#: Prefix of the per-kind load series (``load_kw:hvac``, ...).
LOAD_PREFIX = "load_kw:"

#: The files of a results directory.
FILES = (
    "summary.json",
    "timeseries.parquet",
    "devices.parquet",
    "peak_curves.parquet",
    "peak_network.json",
    "scenario.toml",
)
