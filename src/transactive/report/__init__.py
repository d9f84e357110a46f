"""Report figures and the run's report page (a face over the pure layers).

Figures are built with matplotlib's object interface only (``matplotlib.figure.Figure`` on an Agg
canvas, no ``pyplot`` global state), so they can be made from threads, servers and tests alike;
:func:`write_report` turns a results directory of ``transactive run`` into one self-contained
HTML page.
"""

from transactive.report.figures import (
    bid_curves_figure,
    convergence_figure,
    ev_soc_figure,
    feeder_load_figure,
    feeder_map,
    iterative_price_figure,
    load_stack_figure,
    price_figure,
    published_figure,
    save_png,
    schedule_figure,
    temperature_figure,
    voltage_day_figure,
)
from transactive.report.html import FORMAT_VERSION, KPIS, RUNS, Results, read_results, write_report

__all__ = [
    "FORMAT_VERSION",
    "KPIS",
    "RUNS",
    "Results",
    "bid_curves_figure",
    "convergence_figure",
    "ev_soc_figure",
    "feeder_load_figure",
    "feeder_map",
    "iterative_price_figure",
    "load_stack_figure",
    "price_figure",
    "published_figure",
    "read_results",
    "save_png",
    "schedule_figure",
    "temperature_figure",
    "voltage_day_figure",
    "write_report",
]
