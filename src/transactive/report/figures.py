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
:func:`save_png`
    Write a figure to a PNG file.

Figures are built with ``matplotlib.figure.Figure`` and ``FigureCanvasAgg`` directly, so nothing
here touches ``matplotlib.pyplot``'s global figure registry or the process-wide backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import Colormap, LinearSegmentedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MultipleLocator

from transactive.errors import Problems
from transactive.network.feeders import Feeder
from transactive.network.layout import feeder_coordinates, has_geodata, is_geographic

__all__ = ["feeder_map", "save_png", "voltage_day_figure"]

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
