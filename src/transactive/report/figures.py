"""Feeder maps and day series as matplotlib figures (Agg canvas, no pyplot state).

:func:`feeder_map`
    The feeder drawn at one interval: branches as line segments coloured by loading (per cent of
    the rating), nodes as dots coloured by voltage (pu), the substation (slack) as a black
    square; nodes outside their voltage limits get a magenta ring and branches above 100 % a black
    halo; the lowest voltage and the most loaded branch are labelled. Positions come from
    :func:`transactive.network.layout.feeder_coordinates` (the net's geodata, else a tree
    layout). The colours follow the convention of pandapower's plotting tutorials (voltage from
    blue, low, to red, high; loading from green-grey to red).
:func:`voltage_day_figure`
    The minimum node voltage over a day for one or more runs (e.g. ``"baseline"`` and
    ``"transactive"``), with the lower limit drawn.
:func:`feeder_load_figure`, :func:`price_figure`, :func:`temperature_figure`,
:func:`ev_soc_figure`, :func:`load_stack_figure`
    Day series of the runs (interval averages drawn as staircases): feeder load against
    capacity, clearing price with the cleared quantity, indoor temperature against the comfort
    band, EV state of charge, and the load of every device kind stacked (injection below zero).
:func:`bid_curves_figure`
    The aggregate demand and supply of one interval with the clearing point.
:func:`published_figure`
    Our figures beside the published ones, one small panel per quantity.
:func:`convergence_figure`, :func:`schedule_figure`, :func:`iterative_price_figure`
    An iterative mechanism's run: residuals per round (log scale) with the gap to the
    centralized optimum, the day-ahead schedules on top of the base load against the limit,
    and the final prices per period (a heat map per node when they are locational).
:func:`save_png`
    Write a figure to a PNG file.

Figures are built with ``matplotlib.figure.Figure`` and ``FigureCanvasAgg`` directly, so nothing
here touches ``matplotlib.pyplot``'s global figure registry or the process-wide backend.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import Colormap, LinearSegmentedColormap, Normalize, to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MultipleLocator

from transactive.errors import Problems
from transactive.network.feeders import Feeder
from transactive.network.layout import feeder_coordinates, has_geodata, is_geographic

__all__ = [
    "bid_curves_figure",
    "convergence_figure",
    "ev_soc_figure",
    "feeder_load_figure",
    "feeder_map",
    "iterative_price_figure",
    "load_stack_figure",
    "price_figure",
    "published_figure",
    "save_png",
    "schedule_figure",
    "temperature_figure",
    "voltage_day_figure",
]

FloatArray = npt.NDArray[np.float64]

#: ``gid`` of the artists a caller (or a test) may look up on a map's axes.
BRANCHES_GID = "branches"
NODES_GID = "nodes"
OVERLOAD_GID = "overloaded-branches"
OUT_OF_LIMITS_GID = "nodes-outside-limits"
SLACK_GID = "slack"
LIMIT_GID = "voltage-limit"

_DPI = 150
_OVERLOAD_PCT = 100.0


def _loading_cmap() -> Colormap:
    cmap = LinearSegmentedColormap.from_list(
        "branch_loading",
        [(0.0, "#9fb8a5"), (0.5, "#f2c12e"), (0.8, "#e34a33"), (1.0, "#7f0000")],
    )
    return cmap.with_extremes(bad="#c8c8c8")  # NaN: unrated branches, impedance switches


def _voltage_cmap() -> Colormap:
    return LinearSegmentedColormap.from_list(
        "node_voltage", [(0.0, "#2c4fd6"), (0.5, "#3fbf6f"), (1.0, "#d62c2c")]
    )


def feeder_map(
    feeder: Feeder,
    vm_pu: npt.ArrayLike,
    branch_loading_pct: npt.ArrayLike,
    *,
    coordinates: npt.ArrayLike | None = None,
    title: str | None = None,
) -> Figure:
    """The feeder coloured by node voltage and branch loading at one interval.

    Parameters
    ----------
    feeder : Feeder
        The feeder drawn.
    vm_pu : (N,) float
        Voltage of every node (e.g. ``PowerFlowResult.vm_pu`` or ``FeederDay.vm_pu[t]``).
    branch_loading_pct : (B,) float
        Loading of every branch in per cent of its rating; NaN (an unrated branch) is drawn grey.
    coordinates : (N, 2) float, optional
        Node positions; default :func:`~transactive.network.layout.feeder_coordinates`.
        SimBench's longitude/latitude are drawn with ``y`` stretched by ``1 / cos(latitude)``
        (an equirectangular projection); other geodata with equal axes; a tree layout fills
        the axes.
    title : str, optional
        Figure title (default: the feeder's name).

    Returns
    -------
    matplotlib.figure.Figure
        On an Agg canvas. Its axes hold a ``LineCollection`` with ``gid="branches"`` (one
        segment per branch, colour array = the loadings) and a scatter with ``gid="nodes"``
        (colour array = the voltages).

    Raises
    ------
    ValidationError
        Arrays of the wrong shape, voltages not finite or not positive (a power flow that did
        not converge), coordinates not finite.

    """
    vm, loading, xy, source = _checked_map(feeder, vm_pu, branch_loading_pct, coordinates)
    n = feeder.n_nodes
    frm, to = np.asarray(feeder.branch_from), np.asarray(feeder.branch_to)
    vmin_lim, vmax_lim = np.asarray(feeder.vmin_pu), np.asarray(feeder.vmax_pu)

    fig = Figure(figsize=_map_size(xy, source), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()

    # branches: loading colour, overloaded ones on a black halo
    segments = np.stack([xy[frm], xy[to]], axis=1)
    width = float(np.clip(220.0 / max(n, 1), 1.6, 4.0))
    overloaded = np.flatnonzero(np.nan_to_num(loading, nan=0.0) > _OVERLOAD_PCT)
    if overloaded.size:
        halo = LineCollection(
            list(segments[overloaded]),
            colors="black",
            linewidths=width * 2.6,
            capstyle="round",
            zorder=1,
            gid=OVERLOAD_GID,
        )
        ax.add_collection(halo)
    finite_loading = loading[np.isfinite(loading)]
    top = max(_OVERLOAD_PCT, float(finite_loading.max(initial=0.0)))
    lines = LineCollection(
        list(segments),
        cmap=_loading_cmap(),
        norm=Normalize(0.0, top),
        linewidths=width,
        capstyle="round",
        zorder=2,
        gid=BRANCHES_GID,
    )
    lines.set_array(loading)
    ax.add_collection(lines)

    # nodes: voltage colour, a ring on those outside their limits, the slack as a square
    size = float(np.clip(2400.0 / max(n, 1), 14.0, 80.0))
    # the voltages' own range (at least 0.01 pu wide), so the spread within the feeder shows
    lo_v, hi_v = float(vm.min()), float(vm.max())
    if hi_v - lo_v < 0.01:
        mid = 0.5 * (lo_v + hi_v)
        lo_v, hi_v = mid - 0.005, mid + 0.005
    nodes = ax.scatter(
        xy[:, 0],
        xy[:, 1],
        c=vm,
        cmap=_voltage_cmap(),
        norm=Normalize(lo_v, hi_v),
        s=size,
        edgecolors="#333333",
        linewidths=0.4,
        zorder=3,
        gid=NODES_GID,
    )
    checked = np.arange(n) != feeder.slack
    outside = np.flatnonzero(checked & ((vm < vmin_lim) | (vm > vmax_lim)))
    legend: list[Line2D] = [
        Line2D([], [], marker="s", color="black", linestyle="", markersize=8, label="substation")
    ]
    if outside.size:
        ax.scatter(
            xy[outside, 0],
            xy[outside, 1],
            s=size * 3.2,
            facecolors="none",
            edgecolors="#d000d0",
            linewidths=1.6,
            zorder=4,
            gid=OUT_OF_LIMITS_GID,
        )
        legend.append(
            Line2D(
                [],
                [],
                marker="o",
                markerfacecolor="none",
                markeredgecolor="#d000d0",
                markeredgewidth=1.6,
                linestyle="",
                markersize=9,
                label=f"voltage outside limits ({_count(outside.size, 'node')})",
            )
        )
    if overloaded.size:
        legend.append(
            Line2D(
                [],
                [],
                color="black",
                linewidth=5.0,
                label=f"over {_OVERLOAD_PCT:.0f} % ({_count(overloaded.size, 'branch')})",
            )
        )
    ax.scatter(
        xy[feeder.slack, 0],
        xy[feeder.slack, 1],
        marker="s",
        s=size * 2.5,
        color="black",
        zorder=5,
        gid=SLACK_GID,
    )

    _label_extremes(ax, feeder, vm, loading, xy)

    # colour bars with the limits marked
    vbar = fig.colorbar(nodes, ax=ax, location="right", fraction=0.05, pad=0.02)
    vbar.set_label("node voltage (pu)")
    for limit in np.unique(np.r_[vmin_lim[checked], vmax_lim[checked]]):
        if lo_v <= limit <= hi_v:
            vbar.ax.axhline(limit, color="#d000d0", linewidth=1.5)
    lbar = fig.colorbar(lines, ax=ax, location="bottom", fraction=0.05, pad=0.02, aspect=40)
    lbar.set_label("branch loading (% of rating)")
    if top > _OVERLOAD_PCT:
        lbar.ax.axvline(_OVERLOAD_PCT, color="black", linewidth=1.5)

    ax.set_title(title if title is not None else feeder.name, fontsize=12)
    fig.legend(handles=legend, loc="outside lower center", ncols=len(legend), fontsize=8)
    _frame(ax, feeder, xy, source)
    return fig


def _count(n: int, noun: str) -> str:
    plural = noun + ("es" if noun.endswith("ch") else "s")
    return f"{n} {noun if n == 1 else plural}"


def _label_extremes(
    ax: Axes, feeder: Feeder, vm: FloatArray, loading: FloatArray, xy: FloatArray
) -> None:
    """Label the lowest voltage node and the most loaded branch, pointing away from the middle."""
    box = {"boxstyle": "round,pad=0.25", "facecolor": "white", "alpha": 0.85, "linewidth": 0.5}
    line = {"arrowstyle": "-", "color": "#555555", "linewidth": 0.8}
    centre = 0.5 * (xy.min(axis=0) + xy.max(axis=0))
    span = np.maximum(np.ptp(xy, axis=0), 1e-12)

    def outward(point: FloatArray, fallback: FloatArray) -> FloatArray:
        d = (point - centre) / span
        norm = float(np.hypot(d[0], d[1]))
        return d / norm if norm > 0.1 else fallback

    def place(text: str, point: FloatArray, direction: FloatArray) -> None:
        ax.annotate(
            text,
            xy=(float(point[0]), float(point[1])),
            # sideways, so labels near the top or bottom stay inside the axes
            xytext=(float(np.copysign(30.0, direction[0])), float(12.0 * direction[1])),
            textcoords="offset points",
            ha="left" if direction[0] >= 0 else "right",
            va="bottom" if direction[1] >= 0 else "top",
            fontsize=8,
            bbox=box,
            arrowprops=line,
            zorder=6,
        )

    low = int(np.argmin(vm))
    low_dir = outward(xy[low], np.asarray([0.6, -0.8]))
    place(f"lowest {vm[low]:.4f} pu\nnode {feeder.node_name[low]}", xy[low], low_dir)
    # (below 1 % the most loaded branch says nothing: e.g. case33bw's placeholder ratings)
    if np.isfinite(loading).any() and np.nanmax(loading) >= 1.0:
        b = int(np.nanargmax(loading))
        kinds, elements = np.asarray(feeder.branch_kind), np.asarray(feeder.branch_element)
        mid = 0.5 * (xy[feeder.branch_from[b]] + xy[feeder.branch_to[b]])
        text = f"most loaded {loading[b]:.1f} %\n{kinds[b]} {elements[b]}"
        place(text, mid, outward(mid, -low_dir))


def _y_stretch(xy: FloatArray, source: str) -> float | None:
    """Display units per y unit relative to x (None: the axes are filled, no fixed aspect)."""
    if source == "geographic":
        latitude = float(np.clip(np.mean(xy[:, 1]), -80.0, 80.0))
        return float(1.0 / np.cos(np.radians(latitude)))
    if source == "tree":
        return None
    return 1.0


def _map_size(xy: FloatArray, source: str) -> tuple[float, float]:
    """Figure size in inches: 7 high, as wide as the drawing needs (8 to 11)."""
    stretch = _y_stretch(xy, source)
    if stretch is None:
        return (10.0, 7.0)
    span = np.ptp(xy, axis=0)
    tall = float(span[1] * stretch / max(float(span[0]), 1e-12))
    return (float(np.clip(5.2 / max(tall, 1e-3) + 2.3, 8.0, 11.0)), 7.0)


def _frame(ax: Axes, feeder: Feeder, xy: FloatArray, source: str) -> None:
    """Limits, aspect and a caption saying where the positions come from."""
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    pad = np.asarray([0.08, 0.1]) * np.maximum(hi - lo, 1e-9)
    ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
    ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    stretch = _y_stretch(xy, source)
    if stretch is not None:
        ax.set_aspect(stretch, adjustable="box")
    caption = {
        "geographic": "positions: SimBench geodata (longitude/latitude)",
        "geodata": "positions: the net's bus geodata",
        "tree": "tree layout: depth from the substation from left to right",
    }.get(source, "")
    caption_parts = [caption] if caption else []
    caption_parts.append(f"{feeder.n_nodes} nodes, {feeder.n_branches} branches")
    ax.text(
        0.0,
        -0.01,
        "; ".join(caption_parts),
        transform=ax.transAxes,
        fontsize=7,
        color="#555555",
        va="top",
    )


def _checked_map(
    feeder: Feeder,
    vm_pu: npt.ArrayLike,
    branch_loading_pct: npt.ArrayLike,
    coordinates: npt.ArrayLike | None,
) -> tuple[FloatArray, FloatArray, FloatArray, str]:
    problems = Problems(subject=f"feeder map of {feeder.name!r}")
    n, nb = feeder.n_nodes, feeder.n_branches
    vm = np.asarray(vm_pu, dtype=np.float64)
    loading = np.asarray(branch_loading_pct, dtype=np.float64)
    if vm.shape != (n,):
        problems.add("vm_pu", f"needs shape ({n},) (one voltage per node), got {vm.shape}")
    else:
        problems.check(
            ~(np.isfinite(vm) & (vm > 0)),
            "vm_pu",
            "must be finite and positive (did the power flow converge?)",
        )
    if loading.shape != (nb,):
        problems.add(
            "branch_loading_pct",
            f"needs shape ({nb},) (one loading per branch), got {loading.shape}",
        )
    else:
        problems.check(
            np.isinf(loading) | (loading < 0),
            "branch_loading_pct",
            "must be non-negative and not infinite (NaN marks an unrated branch)",
        )
    source = "given"
    if coordinates is None:
        xy = feeder_coordinates(feeder)
        if has_geodata(feeder):
            source = "geographic" if is_geographic(feeder) else "geodata"
        else:
            source = "tree"
    else:
        xy = np.asarray(coordinates, dtype=np.float64)
        if xy.shape != (n, 2):
            problems.add("coordinates", f"needs shape ({n}, 2) (x, y per node), got {xy.shape}")
        else:
            problems.check(~np.isfinite(xy).all(axis=1), "coordinates", "must be finite")
    problems.raise_if_any()
    return vm, loading, xy, source


def voltage_day_figure(
    time_h: npt.ArrayLike,
    series: Mapping[str, npt.ArrayLike],
    *,
    vmin_limit_pu: float | None = None,
    title: str | None = None,
) -> Figure:
    """The minimum node voltage over a day for one or more runs, with the lower limit.

    Parameters
    ----------
    time_h : (T,) float
        Start of every interval in hours (e.g. ``FeederDay.time_h``), increasing.
    series : mapping of str to (T,) float
        Minimum voltage per interval of every run, by label (e.g. ``{"baseline": day.vmin_pu,
        "transactive": other.vmin_pu}``); NaN (a power flow that did not converge) leaves a gap.
    vmin_limit_pu : float, optional
        Lower voltage limit, drawn as a dashed line.
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
        One line per series (``Line2D`` labelled with the series' name), plus the limit line
        (``gid="voltage-limit"``).

    Raises
    ------
    ValidationError
        No series, ``time_h`` not one-dimensional, finite and increasing, a series of another
        length, a limit that is not a positive number.

    """
    t, values = _checked_day(time_h, series, vmin_limit_pu)
    fig = Figure(figsize=(9.0, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    step_h = float(np.median(np.diff(t))) if t.size > 1 else 1.0
    for label, v in values.items():
        if np.isfinite(v).any():
            k = int(np.nanargmin(v))
            hours, minutes = divmod(round(t[k] * 60.0), 60)
            shown = f"{label} (lowest {v[k]:.4f} pu at {hours:02d}:{minutes:02d})"
        else:
            shown = f"{label} (no converged interval)"
        ax.plot(t, v, linewidth=1.8, label=shown, gid=f"series:{label}")
    if vmin_limit_pu is not None:
        ax.axhline(
            vmin_limit_pu,
            color="#d62c2c",
            linestyle="--",
            linewidth=1.3,
            label=f"limit {vmin_limit_pu:.3f} pu",
            gid=LIMIT_GID,
        )
    span = float(t[-1] - t[0]) + step_h
    ax.set_xlim(float(t[0]), float(t[0]) + span)
    if span <= 48.0:
        ax.xaxis.set_major_locator(MultipleLocator(3.0 if span > 6 else 1.0))
    ax.set_xlabel("time (h)")
    ax.set_ylabel("minimum node voltage (pu)")
    ax.grid(visible=True, linewidth=0.5, alpha=0.5)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title if title is not None else "Minimum node voltage over the day")
    return fig


def _checked_day(
    time_h: npt.ArrayLike, series: Mapping[str, npt.ArrayLike], vmin_limit_pu: float | None
) -> tuple[FloatArray, dict[str, FloatArray]]:
    problems = Problems(subject="voltage day figure")
    t = np.asarray(time_h, dtype=np.float64)
    if t.ndim != 1 or t.size == 0:
        problems.add("time_h", f"must be one-dimensional and not empty, got shape {t.shape}")
    elif not np.isfinite(t).all():
        problems.check(~np.isfinite(t), "time_h", "must be finite")
    elif t.size > 1 and not (np.diff(t) > 0).all():
        problems.check(np.r_[False, np.diff(t) <= 0], "time_h", "must increase")
    if not series:
        problems.add("series", "needs at least one run to draw")
    values: dict[str, FloatArray] = {}
    for label, raw in series.items():
        v = np.asarray(raw, dtype=np.float64)
        if v.shape != t.shape:
            problems.add(f"series[{label!r}]", f"needs shape {t.shape} like time_h, got {v.shape}")
        elif np.isinf(v).any() or (v <= 0).any():
            problems.check(np.isinf(v) | (v <= 0), f"series[{label!r}]", "must be positive")
        values[str(label)] = v
    if vmin_limit_pu is not None and not (np.isfinite(vmin_limit_pu) and vmin_limit_pu > 0):
        problems.add("vmin_limit_pu", f"must be a positive number, got {vmin_limit_pu}")
    problems.raise_if_any()
    return t, values


def save_png(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` to the PNG file ``path`` (150 dpi); return the path.

    Raises
    ------
    ValidationError
        The path does not end in ``.png``, its folder does not exist, or it is a folder.

    """
    out = Path(path)
    problems = Problems(subject=f"figure file {str(out)!r}")
    if out.suffix.lower() != ".png":
        problems.add("path", "must end in .png")
    if not out.parent.is_dir():
        problems.add("path", f"folder {str(out.parent)!r} does not exist")
    if out.is_dir():
        problems.add("path", "is a folder, not a file")
    problems.raise_if_any()
    figure.savefig(out, format="png", dpi=_DPI)
    return out


# ---------------------------------------------------------------------------------------------
# Day series of a run against its baseline, the market at the peak, published comparisons.
# ---------------------------------------------------------------------------------------------

#: Colours of the two runs every report compares (other labels take matplotlib's cycle).
RUN_COLOURS: Mapping[str, str] = {"baseline": "#8a8a8a", "transactive": "#1f6fb4"}
CAPACITY_GID = "capacity"
COMFORT_GID = "comfort-band"
CLEARING_GID = "clearing-point"

#: Colours of the device kinds in the load stack (unknown kinds take the tab20 cycle).
_KIND_COLOURS: Mapping[str, str] = {
    "base_load": "#b9b9b9",
    "hvac": "#4c8bd6",
    "water_heater": "#e39b3a",
    "ev": "#7b52ab",
    "battery": "#2a9d8f",
    "pv": "#f2c12e",
    "chp": "#c0504d",
    "heat_pump": "#6aa84f",
    "appliance": "#d35fb7",
}


def _checked_series(
    subject: str,
    time_h: npt.ArrayLike,
    series: Mapping[str, npt.ArrayLike],
    *,
    name: str = "series",
    need_one: bool = True,
) -> tuple[FloatArray, dict[str, FloatArray], Problems]:
    """Time axis and same-length series; NaN is a gap, infinities are refused."""
    problems = Problems(subject=subject)
    t = np.asarray(time_h, dtype=np.float64)
    if t.ndim != 1 or t.size == 0:
        problems.add("time_h", f"must be one-dimensional and not empty, got shape {t.shape}")
    elif not np.isfinite(t).all():
        problems.check(~np.isfinite(t), "time_h", "must be finite")
    elif t.size > 1 and not (np.diff(t) > 0).all():
        problems.check(np.r_[False, np.diff(t) <= 0], "time_h", "must increase")
    if need_one and not series:
        problems.add(name, "needs at least one series to draw")
    values: dict[str, FloatArray] = {}
    for label, raw in series.items():
        v = np.asarray(raw, dtype=np.float64)
        if v.shape != t.shape:
            problems.add(f"{name}[{label!r}]", f"needs shape {t.shape} like time_h, got {v.shape}")
        else:
            problems.check(np.isinf(v), f"{name}[{label!r}]", "must not be infinite")
        values[str(label)] = v
    return t, values, problems


def _step_of(t: FloatArray) -> float:
    return float(np.median(np.diff(t))) if t.size > 1 else 1.0


def _steps(t: FloatArray, v: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Interval averages as a staircase: each value held from its start to the next start."""
    return np.r_[t, t[-1] + _step_of(t)], np.r_[v, v[-1]]


def _time_axis(ax: Axes, t: FloatArray) -> None:
    span = float(t[-1] - t[0]) + _step_of(t)
    ax.set_xlim(float(t[0]), float(t[0]) + span)
    if span <= 48.0:
        ax.xaxis.set_major_locator(MultipleLocator(3.0 if span > 6 else 1.0))
    ax.set_xlabel("time (h)")
    ax.grid(visible=True, linewidth=0.5, alpha=0.5)


def _day_axes(size: tuple[float, float] = (9.0, 4.2)) -> tuple[Figure, Axes]:
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _run_lines(ax: Axes, t: FloatArray, values: Mapping[str, FloatArray], fmt: str) -> None:
    """One staircase per run, labelled with its peak (``fmt`` formats the value)."""
    for label, v in values.items():
        x, y = _steps(t, v)
        if np.isfinite(v).any():
            k = int(np.nanargmax(v))
            shown = f"{label} (peak {fmt.format(v[k])} at {_clock(t[k])})"
        else:
            shown = f"{label} (no data)"
        ax.plot(
            x,
            y,
            drawstyle="steps-post",
            linewidth=1.8,
            color=RUN_COLOURS.get(label),
            label=shown,
            gid=f"series:{label}",
        )


def _clock(hours: float) -> str:
    h, m = divmod(round(float(hours) * 60.0), 60)
    return f"{h:02d}:{m:02d}"


def feeder_load_figure(
    time_h: npt.ArrayLike,
    load_kw: Mapping[str, npt.ArrayLike],
    *,
    capacity_kw: npt.ArrayLike | None = None,
    title: str | None = None,
) -> Figure:
    """The feeder's load over the day for each run, against the feeder's capacity.

    Every value is the average power over its interval, drawn as a staircase (held from the
    interval's start to the next one's), the form in which PNNL-17167 (Olympic Peninsula, §4)
    shows the feeder load against its imposed limit.

    Parameters
    ----------
    time_h : (T,) float
        Start of every interval in hours, increasing.
    load_kw : mapping of str to (T,) float
        Average feeder load per interval of every run (``{"baseline": ..., "transactive": ...}``);
        NaN leaves a gap.
    capacity_kw : (T,) float, optional
        The capacity limit per interval (it may change over the day); drawn dashed red, with the
        intervals where a run is above it shaded.
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
        One ``Line2D`` per run (``gid="series:<run>"``) and the capacity (``gid="capacity"``).

    Raises
    ------
    ValidationError
        No run, ``time_h`` not one-dimensional, finite and increasing, a series or the capacity
        of another length or infinite.

    """
    t, values, problems = _checked_series("feeder load figure", time_h, load_kw, name="load_kw")
    cap: FloatArray | None = None
    if capacity_kw is not None:
        cap = np.asarray(capacity_kw, dtype=np.float64)
        if cap.shape != t.shape:
            problems.add("capacity_kw", f"needs shape {t.shape} like time_h, got {cap.shape}")
        else:
            problems.check(np.isinf(cap) | (cap <= 0), "capacity_kw", "must be positive")
    problems.raise_if_any()
    fig, ax = _day_axes()
    _run_lines(ax, t, values, "{:,.0f} kW")
    if cap is not None and np.isfinite(cap).any():
        x, y = _steps(t, cap)
        ax.plot(
            x,
            y,
            drawstyle="steps-post",
            color="#d62c2c",
            linestyle="--",
            linewidth=1.4,
            label="capacity",
            gid=CAPACITY_GID,
        )
        for label, v in values.items():
            over = np.nan_to_num(v, nan=-np.inf) > cap
            if over.any():
                ax.fill_between(
                    x,
                    np.r_[cap, cap[-1]],
                    np.r_[v, v[-1]],
                    where=np.r_[over, over[-1]],
                    step="post",
                    color=RUN_COLOURS.get(label, "#d62c2c"),
                    alpha=0.25,
                    linewidth=0,
                )
    _time_axis(ax, t)
    ax.set_ylabel("feeder load (kW)")
    ax.set_ylim(bottom=min(0.0, float(np.nanmin([np.nanmin(v) for v in values.values()] + [0]))))
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title if title is not None else "Feeder load against capacity")
    return fig


def price_figure(
    time_h: npt.ArrayLike,
    price_per_kwh: Mapping[str, npt.ArrayLike],
    *,
    quantity_kw: npt.ArrayLike | None = None,
    currency: str = "USD",
    title: str | None = None,
) -> Figure:
    """The clearing price over the day, with the cleared quantity on a second axis.

    Parameters
    ----------
    time_h : (T,) float
        Start of every interval in hours, increasing.
    price_per_kwh : mapping of str to (T,) float
        Clearing price per interval by label (a run with no market, e.g. a flat-tariff baseline,
        is left out by the caller); NaN (no clearing) leaves a gap.
    quantity_kw : (T,) float, optional
        Cleared quantity per interval, drawn as light bars on a right-hand axis.
    currency : str
        Currency of the prices, for the axis label.
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
        One ``Line2D`` per price series (``gid="series:<label>"``).

    Raises
    ------
    ValidationError
        No series, a bad ``time_h``, a series or the quantity of another length or infinite.

    """
    t, values, problems = _checked_series(
        "price figure", time_h, price_per_kwh, name="price_per_kwh"
    )
    qty: FloatArray | None = None
    if quantity_kw is not None:
        qty = np.asarray(quantity_kw, dtype=np.float64)
        if qty.shape != t.shape:
            problems.add("quantity_kw", f"needs shape {t.shape} like time_h, got {qty.shape}")
        else:
            problems.check(np.isinf(qty), "quantity_kw", "must not be infinite")
    problems.raise_if_any()
    fig, ax = _day_axes()
    if qty is not None:
        right = ax.twinx()
        right.bar(
            t,
            qty,
            width=_step_of(t),
            align="edge",
            color="#1f6fb4",
            alpha=0.12,
            gid="cleared-quantity",
        )
        right.set_ylabel("cleared quantity (kW)", color="#5a7fa8")
        ax.set_zorder(right.get_zorder() + 1)
        ax.patch.set_visible(False)
    for label, v in values.items():
        x, y = _steps(t, v)
        if np.isfinite(v).any():
            lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
            shown = f"{label} (from {lo:.3f} to {hi:.3f} {currency}/kWh)"
        else:
            shown = f"{label} (no clearing)"
        ax.plot(
            x,
            y,
            drawstyle="steps-post",
            linewidth=1.8,
            color=RUN_COLOURS.get(label),
            label=shown,
            gid=f"series:{label}",
        )
    _time_axis(ax, t)
    ax.set_ylabel(f"clearing price ({currency}/kWh)")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title if title is not None else "Clearing price over the day")
    return fig


def bid_curves_figure(
    demand_price_per_kwh: npt.ArrayLike,
    demand_kw: npt.ArrayLike,
    supply_price_per_kwh: npt.ArrayLike,
    supply_kw: npt.ArrayLike,
    *,
    clearing_price_per_kwh: float,
    clearing_quantity_kw: float,
    currency: str = "USD",
    title: str | None = None,
) -> Figure:
    """The aggregate demand and supply curves of one interval with their clearing point.

    Quantity on the horizontal axis and price on the vertical one, as the double auction's
    supply and demand diagram is drawn (PNNL-17167, §2; TESP's ``simple_auction``). Breakpoints
    are joined by straight lines, the curves' own interpolation (linear between breakpoints,
    vertical segments where two breakpoints share a price).

    Parameters
    ----------
    demand_price_per_kwh, demand_kw : (K,) float
        Breakpoints of the aggregate demand: prices non-decreasing, powers (kW, >= 0)
        non-increasing along them.
    supply_price_per_kwh, supply_kw : (M,) float
        Breakpoints of the aggregate supply: prices non-decreasing, powers (kW, >= 0)
        non-decreasing along them.
    clearing_price_per_kwh, clearing_quantity_kw : float
        The clearing point, marked and labelled.
    currency : str
        Currency of the prices, for the axis label.
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
        Lines ``gid="demand"`` and ``gid="supply"`` (x = power, y = price) and the point
        ``gid="clearing-point"``.

    Raises
    ------
    ValidationError
        Arrays of unequal lengths or empty, values not finite, negative powers, prices not
        non-decreasing, demand increasing or supply decreasing in price, a clearing point that is
        not finite.

    """
    problems = Problems(subject="bid curves figure")
    sides: dict[str, tuple[FloatArray, FloatArray]] = {}
    for side, raw_p, raw_q, sign in (
        ("demand", demand_price_per_kwh, demand_kw, -1.0),
        ("supply", supply_price_per_kwh, supply_kw, 1.0),
    ):
        p = np.asarray(raw_p, dtype=np.float64)
        q = np.asarray(raw_q, dtype=np.float64)
        sides[side] = (p, q)
        if p.ndim != 1 or p.size == 0 or p.shape != q.shape:
            problems.add(
                side, f"needs two equal, non-empty 1-D arrays, got {p.shape} and {q.shape}"
            )
            continue
        ok = problems.check(~np.isfinite(p), f"{side} price_per_kwh", "must be finite")
        ok &= problems.check(~np.isfinite(q), f"{side} power_kw", "must be finite")
        if not ok:
            continue
        problems.check(q < 0, f"{side} power_kw", "must be >= 0 (kW bought or offered)")
        problems.check(np.r_[False, np.diff(p) < 0], f"{side} price_per_kwh", "must not decrease")
        trend = "increase" if sign < 0 else "decrease"
        problems.check(
            np.r_[False, sign * np.diff(q) < 0], f"{side} power_kw", f"must not {trend} in price"
        )
    if not (np.isfinite(clearing_price_per_kwh) and np.isfinite(clearing_quantity_kw)):
        problems.add(
            "clearing point",
            f"must be finite, got ({clearing_quantity_kw}, {clearing_price_per_kwh})",
        )
    problems.raise_if_any()

    fig, ax = _day_axes((7.5, 5.0))
    colours = {"demand": "#1f6fb4", "supply": "#d9822b"}
    for side, (p, q) in sides.items():
        ax.plot(q, p, linewidth=2.0, color=colours[side], label=side, gid=side)
    ax.plot(
        [clearing_quantity_kw],
        [clearing_price_per_kwh],
        marker="o",
        markersize=9,
        color="black",
        linestyle="",
        label=f"clearing: {clearing_quantity_kw:,.0f} kW at "
        f"{clearing_price_per_kwh:.4f} {currency}/kWh",
        gid=CLEARING_GID,
        zorder=5,
    )
    ax.axhline(clearing_price_per_kwh, color="black", linewidth=0.7, linestyle=":")
    ax.axvline(clearing_quantity_kw, color="black", linewidth=0.7, linestyle=":")
    # the prices near the crossing matter; a cap far above would flatten them into a line
    prices = np.r_[sides["demand"][0], sides["supply"][0]]
    inner = prices[prices <= 4.0 * max(abs(clearing_price_per_kwh), 1e-9)]
    top = float(inner.max(initial=clearing_price_per_kwh))
    bottom = float(prices.min())
    pad = 0.08 * max(top - bottom, 1e-6)
    ax.set_ylim(bottom - pad, top + pad)
    if prices.max() > top + pad:
        ax.text(
            0.99,
            0.99,
            f"prices above {top + pad:.3f} cut off (cap {prices.max():.3f})",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=7,
            color="#555555",
        )
    ax.set_xlim(left=0.0)
    ax.set_xlabel("power (kW)")
    ax.set_ylabel(f"price ({currency}/kWh)")
    ax.grid(visible=True, linewidth=0.5, alpha=0.5)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(title if title is not None else "Supply and demand at the peak interval")
    return fig


def temperature_figure(
    time_h: npt.ArrayLike,
    temperature_c: Mapping[str, npt.ArrayLike],
    *,
    comfort_min_c: npt.ArrayLike,
    comfort_max_c: npt.ArrayLike,
    title: str | None = None,
) -> Figure:
    """Mean indoor temperature of every run against the (mean) comfort band.

    Parameters
    ----------
    time_h : (T,) float
        Start of every interval in hours, increasing.
    temperature_c : mapping of str to (T,) float
        Mean indoor air temperature per interval by run.
    comfort_min_c, comfort_max_c : (T,) float
        Lower and upper edges of the comfort band (mean over the houses), shaded.
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
        One ``Line2D`` per run and the band (``gid="comfort-band"``).

    Raises
    ------
    ValidationError
        No run, a bad ``time_h``, series of another length or infinite, a band whose lower edge
        is above its upper one.

    """
    band = {"comfort_min_c": comfort_min_c, "comfort_max_c": comfort_max_c}
    t, values, problems = _checked_series(
        "temperature figure", time_h, temperature_c, name="temperature_c"
    )
    _, edges, band_problems = _checked_series(
        "temperature figure", time_h, band, name="band", need_one=False
    )
    problems.found.extend(p for p in band_problems.found if not p.field.startswith("time_h"))
    lo, hi = edges["comfort_min_c"], edges["comfort_max_c"]
    if lo.shape == t.shape and hi.shape == t.shape:
        problems.check(lo > hi, "band", "comfort_min_c must not be above comfort_max_c")
    problems.raise_if_any()
    fig, ax = _day_axes()
    x, y_lo = _steps(t, lo)
    _, y_hi = _steps(t, hi)
    ax.fill_between(
        x,
        y_lo,
        y_hi,
        step="post",
        color="#3fbf6f",
        alpha=0.18,
        label="comfort band",
        gid=COMFORT_GID,
    )
    for label, v in values.items():
        xs, ys = _steps(t, v)
        ax.plot(
            xs,
            ys,
            drawstyle="steps-post",
            linewidth=1.8,
            color=RUN_COLOURS.get(label),
            label=label,
            gid=f"series:{label}",
        )
    _time_axis(ax, t)
    ax.set_ylabel("mean indoor temperature (°C)")
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title if title is not None else "Indoor temperature against the comfort band")
    return fig


def ev_soc_figure(
    time_h: npt.ArrayLike,
    soc: Mapping[str, npt.ArrayLike],
    *,
    title: str | None = None,
) -> Figure:
    """Mean state of charge of the EV fleet over the day for every run (in per cent).

    Parameters
    ----------
    time_h : (T,) float
        Start of every interval in hours, increasing.
    soc : mapping of str to (T,) float
        Mean state of charge per interval (fraction, 0 to 1) by run.
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
        One ``Line2D`` per run (``gid="series:<run>"``, y in per cent).

    Raises
    ------
    ValidationError
        No run, a bad ``time_h``, series of another length, or values outside [0, 1].

    """
    t, values, problems = _checked_series("EV state of charge figure", time_h, soc, name="soc")
    for label, v in values.items():
        if v.shape == t.shape:
            problems.check((v < 0) | (v > 1), f"soc[{label!r}]", "must be a fraction in [0, 1]")
    problems.raise_if_any()
    fig, ax = _day_axes()
    for label, v in values.items():
        xs, ys = _steps(t, 100.0 * v)
        ax.plot(
            xs,
            ys,
            drawstyle="steps-post",
            linewidth=1.8,
            color=RUN_COLOURS.get(label),
            label=label,
            gid=f"series:{label}",
        )
    _time_axis(ax, t)
    ax.set_ylim(0.0, 100.0)
    ax.set_ylabel("mean EV state of charge (%)")
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title if title is not None else "EV state of charge")
    return fig


def load_stack_figure(
    time_h: npt.ArrayLike,
    loads_kw: Mapping[str, Mapping[str, npt.ArrayLike]],
    *,
    title: str | None = None,
) -> Figure:
    """The load of every device kind stacked over the day, one panel per run on a shared axis.

    Consumption is stacked upwards from zero and injection (PV, a discharging battery)
    downwards, each kind split into its positive and negative parts per interval, so the stack's
    top minus its bottom is the net load (the sign convention: positive power is consumption).

    Parameters
    ----------
    time_h : (T,) float
        Start of every interval in hours, increasing.
    loads_kw : mapping of str to mapping of str to (T,) float
        ``{run: {kind: load per interval}}``; kinds stack in the order given.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per run (titled with the run's name); each kind is a ``PolyCollection``
        ``gid="kind:<kind>"`` (and ``"kind:<kind>:injection"`` for its negative part).

    Raises
    ------
    ValidationError
        No run, a run with no kind, a bad ``time_h``, a series of another length or not finite.

    """
    problems = Problems(subject="load stack figure")
    t = np.asarray(time_h, dtype=np.float64)
    runs: dict[str, dict[str, FloatArray]] = {}
    if not loads_kw:
        problems.add("loads_kw", "needs at least one run to draw")
    for run, kinds in loads_kw.items():
        _, values, run_problems = _checked_series(
            "load stack figure", t, kinds, name=f"loads_kw[{run!r}]"
        )
        problems.found.extend(
            p for p in run_problems.found if not (runs and p.field.startswith("time_h"))
        )
        for kind, v in values.items():
            if v.shape == t.shape:
                problems.check(np.isnan(v), f"loads_kw[{run!r}][{kind!r}]", "must not be NaN")
        runs[str(run)] = values
    problems.raise_if_any()

    fig = Figure(figsize=(9.0, 3.2 * len(runs) + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(runs), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    all_kinds = list(dict.fromkeys(k for kinds in runs.values() for k in kinds))
    cycle = [c for c in _cmap_colours("tab20", 20) if c not in _KIND_COLOURS.values()]
    colours = {
        kind: _KIND_COLOURS.get(kind, cycle[i % len(cycle)]) for i, kind in enumerate(all_kinds)
    }
    x = np.r_[t, t[-1] + _step_of(t)]
    for ax, (run, kinds) in zip(axes, runs.items(), strict=True):
        up = np.zeros(t.size)
        down = np.zeros(t.size)
        for kind, v in kinds.items():
            pos, neg = np.clip(v, 0.0, None), np.clip(v, None, 0.0)
            if (pos > 0).any():
                ax.fill_between(
                    x,
                    np.r_[up, up[-1]],
                    np.r_[up + pos, up[-1] + pos[-1]],
                    step="post",
                    color=colours[kind],
                    linewidth=0,
                    label=kind,
                    gid=f"kind:{kind}",
                )
                up = up + pos
            if (neg < 0).any():
                ax.fill_between(
                    x,
                    np.r_[down, down[-1]],
                    np.r_[down + neg, down[-1] + neg[-1]],
                    step="post",
                    color=colours[kind],
                    linewidth=0,
                    hatch="//",
                    alpha=0.8,
                    label=f"{kind} (injection)" if (pos > 0).any() else kind,
                    gid=f"kind:{kind}:injection",
                )
                down = down + neg
        net = up + down
        ax.plot(*_steps(t, net), drawstyle="steps-post", color="black", linewidth=1.0, label="net")
        ax.axhline(0.0, color="#333333", linewidth=0.6)
        ax.set_title(run, fontsize=10, loc="left")
        ax.set_ylabel("load (kW)")
        _time_axis(ax, t)
        ax.legend(loc="upper left", fontsize=7, ncols=4)
    for ax in axes[:-1]:
        ax.set_xlabel("")
    fig.suptitle(title if title is not None else "Load by device kind")
    return fig


def _cmap_colours(name: str, n: int) -> list[str]:
    cmap = colormaps[name]
    return [to_hex(cmap(i / max(n - 1, 1))) for i in range(n)]


def _above(value: float) -> str:
    """Vertical alignment that puts a bar's label outside its end."""
    return "bottom" if value >= 0 else "top"


def published_figure(
    items: Sequence[tuple[str, float | None, float, str, str]],
    *,
    title: str | None = None,
) -> Figure:
    """Our figures beside the published ones: one small panel of two bars per quantity.

    Parameters
    ----------
    items : sequence of (name, ours, published, unit, source)
        Each quantity's name, our value (None when this run has no counterpart, drawn as a
        note), the published value, its unit and the publication (e.g. ``"PNNL-17167"``).
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per item, titled with its name; the bars carry ``gid="ours"`` and
        ``gid="published"``.

    Raises
    ------
    ValidationError
        No item, or a value that is not finite.

    """
    problems = Problems(subject="published comparison figure")
    if not items:
        problems.add("items", "needs at least one quantity to compare")
    for i, (name, ours, published, _unit, _source) in enumerate(items):
        if ours is not None and not np.isfinite(ours):
            problems.add(f"items[{i}] ({name})", f"our value must be finite, got {ours}")
        if not np.isfinite(published):
            problems.add(f"items[{i}] ({name})", f"published value must be finite, got {published}")
    problems.raise_if_any()
    cols = min(len(items), 3)
    rows = -(-len(items) // cols)
    fig = Figure(figsize=(3.4 * cols + 0.4, 3.4 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (name, ours, published, unit, source) in zip(axes, items, strict=False):
        ax.bar([1], [published], color="#bbbbbb", width=0.6, gid="published")
        ax.text(1, published, f"{published:g}", ha="center", va=_above(published), fontsize=8)
        if ours is not None:
            ax.bar([0], [ours], color=RUN_COLOURS["transactive"], width=0.6, gid="ours")
            ax.text(0, ours, f"{ours:.3g}", ha="center", va=_above(ours), fontsize=8)
        else:
            ax.text(0, 0, "not in\nthis run", ha="center", va="bottom", fontsize=8)
        ax.axhline(0.0, color="#333333", linewidth=0.6)
        # long names and sources wrap, so that constrained layout keeps room for the bars
        ax.set_xticks([0, 1], ["ours", textwrap.fill(source, 18)], fontsize=8)
        ax.set_xlim(-0.6, 1.6)
        ax.set_ylabel(unit, fontsize=8)
        ax.set_title(textwrap.fill(name.replace("_", " "), 28), fontsize=9)
        ax.margins(y=0.2)
    for ax in axes[len(items) :]:
        ax.set_visible(False)
    fig.suptitle(title if title is not None else "Our results beside the published ones")
    return fig


# ---------------------------------------------------------------------------------------------
# Iterative mechanisms: convergence, the day-ahead schedules, the prices.
# ---------------------------------------------------------------------------------------------

RESIDUAL_COLOURS: Mapping[str, str] = {"primal": "#1f6fb4", "dual": "#e39b3a"}
TOLERANCE_GID = "tolerance"
GAP_GID = "relative-gap"
PRICE_MAP_GID = "price-map"


def _positive_or_nan(v: FloatArray) -> FloatArray:
    """``v`` where it is finite and > 0, else NaN (a gap on a log axis)."""
    return np.where(np.isfinite(v) & (v > 0), v, np.nan)


def convergence_figure(
    primal_residual: npt.ArrayLike,
    dual_residual: npt.ArrayLike,
    relative_gap: npt.ArrayLike,
    *,
    tolerance: float | None = None,
    title: str | None = None,
) -> Figure:
    """An iterative mechanism's convergence: residuals per round and the gap to the optimum.

    Two panels over the rounds, both on log scales: the primal and dual residuals (relative, as
    the algorithm defines them) with the stopping rule's tolerance, and the absolute relative
    gap ``|objective - optimum| / |optimum|`` of every round's objective to the centralized
    optimum (Gan, Topcu and Low, IEEE Trans. Power Systems 28(2), 2013, Fig. 3, plot the same
    kind of convergence). Values that are zero, negative (on the residual panel) or not finite
    (an objective of ``inf`` while the schedules cannot be served) leave gaps.

    Parameters
    ----------
    primal_residual, dual_residual, relative_gap : (K,) float
        One value per round (round 1 first).
    tolerance : float, optional
        The stopping rule's tolerance, drawn dashed on the residual panel.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes; lines ``gid="residual:primal"``, ``gid="residual:dual"``,
        ``gid="tolerance"`` and ``gid="relative-gap"``.

    Raises
    ------
    ValidationError
        No round, arrays of different lengths, NaN residuals, a tolerance that is not > 0.

    """
    problems = Problems(subject="convergence figure")
    arrays = {}
    for name, raw in (
        ("primal_residual", primal_residual),
        ("dual_residual", dual_residual),
        ("relative_gap", relative_gap),
    ):
        v = np.asarray(raw, dtype=np.float64)
        if v.ndim != 1 or v.size == 0:
            problems.add(name, f"must be one-dimensional and not empty, got shape {v.shape}")
        arrays[name] = v
    sizes = {v.shape for v in arrays.values()}
    if len(sizes) > 1:
        problems.add("relative_gap", f"all three need one value per round, got shapes {sizes}")
    for name in ("primal_residual", "dual_residual"):
        problems.check(np.isnan(arrays[name]), name, "must not be NaN")
    if tolerance is not None and not (np.isfinite(tolerance) and tolerance > 0):
        problems.add("tolerance", f"must be a finite number > 0, got {tolerance!r}")
    problems.raise_if_any()
    k = np.arange(1, arrays["primal_residual"].size + 1)
    fig = Figure(figsize=(9.0, 5.6), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True)
    for side in ("primal", "dual"):
        v = arrays[f"{side}_residual"]
        top.plot(
            k,
            _positive_or_nan(v),
            color=RESIDUAL_COLOURS[side],
            linewidth=1.5,
            label=f"{side} residual (last {v[-1]:.2e})",
            gid=f"residual:{side}",
        )
    if tolerance is not None:
        top.axhline(
            tolerance,
            color="#d62c2c",
            linestyle="--",
            linewidth=1.2,
            label=f"tolerance {tolerance:g}",
            gid=TOLERANCE_GID,
        )
    top.set_yscale("log")
    top.set_ylabel("relative residual")
    top.grid(visible=True, which="both", linewidth=0.4, alpha=0.5)
    top.legend(loc="upper right", fontsize=8)
    gap = np.abs(arrays["relative_gap"])
    last = arrays["relative_gap"][-1]
    bottom.plot(
        k,
        _positive_or_nan(gap),
        color="#2a9d8f",
        linewidth=1.5,
        label=f"|gap| to the centralized optimum (last {last:+.2e})",
        gid=GAP_GID,
    )
    bottom.set_yscale("log")
    bottom.set_xlabel("round")
    bottom.set_ylabel("|relative gap|")
    bottom.grid(visible=True, which="both", linewidth=0.4, alpha=0.5)
    bottom.legend(loc="upper right", fontsize=8)
    fig.suptitle(title if title is not None else "Convergence of the iterative mechanism")
    return fig


def schedule_figure(
    time_h: npt.ArrayLike,
    base_load_kw: npt.ArrayLike,
    scheduled_kw: npt.ArrayLike,
    *,
    centralized_kw: npt.ArrayLike | None = None,
    baseline_kw: npt.ArrayLike | None = None,
    limit: float | None = None,
    limit_unit: str = "kW",
    title: str | None = None,
) -> Figure:
    """The day-ahead schedules per period: the EVs' total on top of the base load, the limit.

    Parameters
    ----------
    time_h : (T,) float
        Start of every period in hours, increasing.
    base_load_kw : (T,) float
        The forecast load without the coordinated EVs (drawn filled).
    scheduled_kw : (T,) float
        The coordinated EVs' scheduled total, drawn on top of the base load.
    centralized_kw : (T,) float, optional
        The centralized optimum's EV total, drawn (on top of the base load) dashed.
    baseline_kw : (T,) float, optional
        The same EVs' load in the baseline (charging at once), on top of the base load.
    limit : float, optional
        The limit the schedules are planned against (the capacity, the transformer's kVA, the
        generators' total), drawn dashed red; ``inf`` or None draws none.
    limit_unit : str
        Its unit, for the legend.
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
        Lines ``gid="series:base"``, ``gid="series:scheduled"``, ``gid="series:centralized"``,
        ``gid="series:baseline"`` (those given) and ``gid="capacity"`` (the limit).

    Raises
    ------
    ValidationError
        A bad ``time_h``, series of another length or infinite, a limit that is not > 0.

    """
    series: dict[str, npt.ArrayLike] = {"base": base_load_kw, "scheduled": scheduled_kw}
    if centralized_kw is not None:
        series["centralized"] = centralized_kw
    if baseline_kw is not None:
        series["baseline"] = baseline_kw
    t, values, problems = _checked_series("schedule figure", time_h, series)
    if limit is not None and not (np.isnan(limit) or limit > 0):
        problems.add("limit", f"must be > 0 (or inf / NaN for none), got {limit!r}")
    problems.raise_if_any()
    fig, ax = _day_axes()
    base = values["base"]
    x, y = _steps(t, base)
    ax.fill_between(x, 0.0, y, step="post", color="#d9d9d9", linewidth=0)
    ax.plot(
        x,
        y,
        drawstyle="steps-post",
        color="#6b6b6b",
        linewidth=1.0,
        label="base load (forecast)",
        gid="series:base",
    )
    styles = {
        "baseline": ("#8a8a8a", ":", "base + EVs charging at once (baseline)"),
        "centralized": ("#2a9d8f", "--", "base + EVs, centralized optimum"),
        "scheduled": (RUN_COLOURS["transactive"], "-", "base + EVs, iterative schedule"),
    }
    for key in ("baseline", "centralized", "scheduled"):
        if key not in values:
            continue
        colour, style, label = styles[key]
        total = base + values[key]
        peak = int(np.nanargmax(total)) if np.isfinite(total).any() else 0
        x, y = _steps(t, total)
        ax.plot(
            x,
            y,
            drawstyle="steps-post",
            color=colour,
            linestyle=style,
            linewidth=1.9 if key == "scheduled" else 1.4,
            label=f"{label} (peak {total[peak]:,.0f} kW at {_clock(t[peak])})",
            gid=f"series:{key}",
        )
    if limit is not None and np.isfinite(limit):
        ax.axhline(
            limit,
            color="#d62c2c",
            linestyle="--",
            linewidth=1.3,
            label=f"limit {limit:,.0f} {limit_unit}",
            gid=CAPACITY_GID,
        )
    _time_axis(ax, t)
    ax.set_ylabel("average power per period (kW)")
    ax.set_ylim(bottom=0.0)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title if title is not None else "Day-ahead schedules against the base load")
    return fig


def iterative_price_figure(
    time_h: npt.ArrayLike,
    prices: npt.ArrayLike,
    *,
    unit: str,
    title: str | None = None,
) -> Figure:
    """An iterative mechanism's final prices per period: one line, or a heat map per node.

    Parameters
    ----------
    time_h : (T,) float
        Start of every period in hours, increasing.
    prices : (T,) or (T, B) float
        One price per period (a staircase), or one per period and node (a heat map, periods
        across and nodes up, with the lowest and highest node price in a panel above).
    unit : str
        The prices' unit (e.g. ``"currency/kWh"``), for the axis or the colour bar.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        ``gid="series:price"`` (one price) or an image ``gid="price-map"`` with the band's lines
        ``gid="series:price-min"`` and ``gid="series:price-max"`` (per node).

    Raises
    ------
    ValidationError
        A bad ``time_h``, prices of another shape or not finite.

    """
    t, _, problems = _checked_series("price figure", time_h, {}, need_one=False)
    p = np.asarray(prices, dtype=np.float64)
    if p.ndim not in (1, 2) or p.shape[0] != t.shape[0] or (p.ndim == 2 and p.shape[1] == 0):
        problems.add("prices", f"needs shape (T,) or (T, B) with T = {t.shape[0]}, got {p.shape}")
    else:
        problems.check(
            ~np.isfinite(p).all(axis=-1) if p.ndim == 2 else ~np.isfinite(p),
            "prices",
            "must be finite",
        )
    problems.raise_if_any()
    if p.ndim == 1:
        fig, ax = _day_axes()
        x, y = _steps(t, p)
        ax.plot(
            x,
            y,
            drawstyle="steps-post",
            color=RUN_COLOURS["transactive"],
            linewidth=1.8,
            label=f"price (from {p.min():.4g} to {p.max():.4g})",
            gid="series:price",
        )
        _time_axis(ax, t)
        ax.set_ylabel(f"price ({unit})")
        ax.legend(loc="upper left", fontsize=8)
        ax.set_title(title if title is not None else "Final prices per period")
        return fig
    fig = Figure(figsize=(9.0, 5.6), layout="constrained")
    FigureCanvasAgg(fig)
    band, heat = fig.subplots(2, 1, sharex=True, height_ratios=(1.0, 2.2))
    lo, hi = p.min(axis=1), p.max(axis=1)
    x, y_lo = _steps(t, lo)
    _, y_hi = _steps(t, hi)
    band.fill_between(x, y_lo, y_hi, step="post", color="#1f6fb4", alpha=0.2, linewidth=0)
    band.plot(
        x,
        y_lo,
        drawstyle="steps-post",
        color="#1f6fb4",
        linewidth=1.0,
        label="lowest node",
        gid="series:price-min",
    )
    band.plot(
        x,
        y_hi,
        drawstyle="steps-post",
        color="#b3261e",
        linewidth=1.0,
        label="highest node",
        gid="series:price-max",
    )
    band.set_ylabel(unit, fontsize=8)
    band.grid(visible=True, linewidth=0.5, alpha=0.5)
    band.legend(loc="upper left", fontsize=8)
    step = _step_of(t)
    image = heat.imshow(
        p.T,
        aspect="auto",
        origin="lower",
        interpolation="nearest",
        extent=(float(t[0]), float(t[-1]) + step, -0.5, p.shape[1] - 0.5),
        cmap="viridis",
        gid=PRICE_MAP_GID,
    )
    fig.colorbar(image, ax=heat, label=f"price ({unit})")
    heat.set_ylabel("node")
    _time_axis(heat, t)
    heat.grid(visible=False)
    fig.suptitle(title if title is not None else "Final prices per period and node")
    return fig
