"""Report figures: feeder maps and day series for people (a face over the pure layers).

Built with matplotlib's object interface only (``matplotlib.figure.Figure`` on an Agg canvas,
no ``pyplot`` global state), so figures can be made from threads, servers and tests alike.
"""

from transactive.report.figures import feeder_map, save_png, voltage_day_figure

__all__ = ["feeder_map", "save_png", "voltage_day_figure"]
