"""The operator's page's charts, drawn on the server as inline SVG (no script, no library).

Pure: arrays in, :class:`markupsafe.Markup` out. Every text that reaches the SVG (node names,
titles, numbers) goes through :func:`markupsafe.escape`, so a member-supplied name cannot
inject markup. The drawings follow the conventions of :mod:`transactive.report.figures`:

- :func:`price_chart`: the clearing price of each interval of one day as a step line (a gap
  where an interval has no price yet, or cleared without bids).
- :func:`supply_demand_chart`: the aggregate demand and supply curves of one interval (price
  on the vertical axis, power on the horizontal one, the textbook market cross; Hu et al. 2019
  §3.1, Fig. 3's double auction) and the clearing point.
- :func:`feeder_map_svg`: the feeder's nodes coloured by voltage and its branches by loading,
  with the same colour ramps as :func:`transactive.report.figures.feeder_map`; nodes outside
  their voltage limits are ringed and overloaded branches drawn on a black halo.

Colours are module constants so the page's style sheet and the tests use the same values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from markupsafe import Markup, escape

__all__ = [
    "CLEARING_COLOUR",
    "DEMAND_COLOUR",
    "PRICE_COLOUR",
    "SUPPLY_COLOUR",
    "FeederDrawing",
    "MapMarks",
    "colour_ramp",
    "feeder_map_svg",
    "nice_ticks",
    "price_chart",
    "supply_demand_chart",
]

FloatArray = npt.NDArray[np.float64]

PRICE_COLOUR = "#1f6fb2"
DEMAND_COLOUR = "#2166ac"
SUPPLY_COLOUR = "#e08214"
CLEARING_COLOUR = "#d6205a"
_AXIS_COLOUR = "#555555"
_GRID_COLOUR = "#e4e4e4"
_HALO_COLOUR = "#000000"
_RING_COLOUR = "#d000d0"
_UNRATED_COLOUR = "#c8c8c8"
#: :func:`transactive.report.figures.feeder_map`'s ramps: (position in [0, 1], colour).
VOLTAGE_RAMP = ((0.0, "#2c4fd6"), (0.5, "#3fbf6f"), (1.0, "#d62c2c"))
LOADING_RAMP = ((0.0, "#9fb8a5"), (0.5, "#f2c12e"), (0.8, "#e34a33"), (1.0, "#7f0000"))
OVERLOAD_PCT = 100.0

_W, _H = 640, 300
_LEFT, _RIGHT, _TOP, _BOTTOM = 62, 16, 14, 40


def _num(x: float) -> str:
    """A coordinate in the SVG: two decimals, no exponent."""
    return f"{x:.2f}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering ``[lo, hi]`` (1, 2 or 5 times a power of ten)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"tick range must be finite, got [{lo}, {hi}]")
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1.0, 2.0, 5.0, 10.0) if m * magnitude >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    k = 0
    while first + k * step <= hi + 1e-9 * step:
        ticks.append(round(first + k * step, 12))
        k += 1
    return ticks


def _tick_label(value: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step > 0 else 0
    return f"{value:.{min(decimals, 6)}f}"


def colour_ramp(ramp: Sequence[tuple[float, str]], t: npt.ArrayLike) -> list[str]:
    """Hex colours of positions ``t`` in [0, 1] on a piecewise-linear ramp (clipped)."""
    x = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0)
    stops = np.asarray([s for s, _ in ramp])
    rgb = np.asarray([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for _, c in ramp], dtype=float)
    channels = np.stack([np.interp(x, stops, rgb[:, k]) for k in range(3)], axis=-1)
    return ["#{:02x}{:02x}{:02x}".format(*(round(float(v)) for v in row)) for row in channels]


def _svg_open(kind: str, label: str, width: int = _W, height: int = _H) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="{kind}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">'
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>'
    )


@dataclass(frozen=True)
class _Frame:
    """The plotting area and the data ranges it maps."""

    x_lo: float
    x_hi: float
    y_lo: float
    y_hi: float

    def x(self, value: float) -> float:
        span = (self.x_hi - self.x_lo) or 1.0
        return _LEFT + (value - self.x_lo) / span * (_W - _LEFT - _RIGHT)

    def y(self, value: float) -> float:
        span = (self.y_hi - self.y_lo) or 1.0
        return _H - _BOTTOM - (value - self.y_lo) / span * (_H - _TOP - _BOTTOM)


def _axes(
    frame: _Frame,
    x_ticks: Sequence[float],
    y_ticks: Sequence[float],
    x_label: str,
    y_label: str,
    x_text: Sequence[str] | None = None,
) -> str:
    parts = []
    y_step = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else 1.0
    x_step = x_ticks[1] - x_ticks[0] if len(x_ticks) > 1 else 1.0
    for v in y_ticks:
        y = _num(frame.y(v))
        parts.append(
            f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y}" y2="{y}" stroke="{_GRID_COLOUR}"/>'
            f'<text x="{_LEFT - 6}" y="{y}" text-anchor="end" dominant-baseline="middle" '
            f'class="tick">{escape(_tick_label(v, y_step))}</text>'
        )
    for i, v in enumerate(x_ticks):
        x = _num(frame.x(v))
        text = x_text[i] if x_text is not None else _tick_label(v, x_step)
        parts.append(
            f'<line x1="{x}" x2="{x}" y1="{_TOP}" y2="{_H - _BOTTOM}" stroke="{_GRID_COLOUR}"/>'
            f'<text x="{x}" y="{_H - _BOTTOM + 16}" text-anchor="middle" class="tick">'
            f"{escape(text)}</text>"
        )
    parts.append(
        f'<rect x="{_LEFT}" y="{_TOP}" width="{_W - _LEFT - _RIGHT}" '
        f'height="{_H - _TOP - _BOTTOM}" fill="none" stroke="{_AXIS_COLOUR}"/>'
        f'<text x="{(_LEFT + _W - _RIGHT) / 2}" y="{_H - 6}" text-anchor="middle" '
        f'class="axis-label">{escape(x_label)}</text>'
        f'<text transform="translate(14 {(_TOP + _H - _BOTTOM) / 2}) rotate(-90)" '
        f'text-anchor="middle" class="axis-label">{escape(y_label)}</text>'
    )
    return "".join(parts)


def price_chart(
    start_h: npt.ArrayLike,
    end_h: npt.ArrayLike,
    price_per_kwh: Sequence[float | None],
    *,
    currency: str,
    day_label: str,
) -> Markup:
    """The clearing price over one day: one horizontal step per interval that has a price.

    Parameters
    ----------
    start_h, end_h : (I,) float
        Each interval's start and end in hours from the day's midnight (UTC), in [0, 24].
    price_per_kwh : sequence of float or None
        Each interval's clearing price (currency/kWh); None: no price (not cleared yet, or
        cleared without bids), drawn as a gap.
    currency : str
        The market's currency (axis label).
    day_label : str
        The day drawn (the chart's accessible label).

    """
    start = np.asarray(start_h, dtype=np.float64)
    end = np.asarray(end_h, dtype=np.float64)
    if start.shape != end.shape or start.shape != (len(price_per_kwh),):
        raise ValueError(
            f"price_chart needs one start, end and price per interval, got {start.shape}, "
            f"{end.shape} and {len(price_per_kwh)}"
        )
    prices = [p for p in price_per_kwh if p is not None and math.isfinite(p)]
    y_hi = max(prices) * 1.15 if prices else 1.0
    y_lo = min(0.0, *prices) if prices else 0.0
    if y_hi <= y_lo:
        y_hi = y_lo + 1.0
    y_ticks = nice_ticks(y_lo, y_hi, 4)
    frame = _Frame(0.0, 24.0, y_ticks[0], max(y_ticks[-1], y_hi))
    x_ticks = [0.0, 3.0, 6.0, 9.0, 12.0, 15.0, 18.0, 21.0, 24.0]
    parts = [
        _svg_open("price", f"clearing price on {day_label}"),
        _axes(
            frame,
            x_ticks,
            y_ticks,
            f"{day_label} (UTC, hour)",
            f"price ({currency}/kWh)",
            [f"{int(h):02d}:00" for h in x_ticks],
        ),
    ]
    # one path; a new sub-path after every gap
    path: list[str] = []
    dots: list[str] = []
    previous_end: float | None = None
    for s, e, p in zip(start.tolist(), end.tolist(), price_per_kwh, strict=True):
        if p is None or not math.isfinite(p):
            previous_end = None
            continue
        y = _num(frame.y(p))
        command = "L" if previous_end is not None and abs(previous_end - s) < 1e-9 else "M"
        path.append(f"{command}{_num(frame.x(s))} {y} L{_num(frame.x(e))} {y}")
        dots.append(
            f'<circle cx="{_num(frame.x(0.5 * (s + e)))}" cy="{y}" r="3.5" fill="{PRICE_COLOUR}">'
            f"<title>{escape(f'{p:.4f} {currency}/kWh')}</title></circle>"
        )
        previous_end = e
    if path:
        parts.append(
            f'<path d="{" ".join(path)}" fill="none" stroke="{PRICE_COLOUR}" stroke-width="3" '
            'stroke-linejoin="round" data-series="price"/>' + "".join(dots)
        )
    else:
        parts.append(
            f'<text x="{_W / 2}" y="{_H / 2}" text-anchor="middle" class="empty">'
            "no interval of this day has a price yet</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _curve_path(frame: _Frame, quantity_kw: FloatArray, price: FloatArray, x_max: float) -> str:
    xs = np.minimum(quantity_kw, x_max)
    return " ".join(
        f"{'M' if i == 0 else 'L'}{_num(frame.x(float(q)))} {_num(frame.y(float(p)))}"
        for i, (q, p) in enumerate(zip(xs.tolist(), price.tolist(), strict=True))
    )


def supply_demand_chart(
    demand_price: npt.ArrayLike,
    demand_kw: npt.ArrayLike,
    supply_price: npt.ArrayLike,
    supply_kw: npt.ArrayLike,
    *,
    clearing_price_per_kwh: float | None,
    clearing_quantity_kw: float | None,
    price_floor_per_kwh: float,
    price_cap_per_kwh: float,
    currency: str,
    label: str,
) -> Markup:
    """The aggregate demand and supply curves of an interval and where they cross.

    Parameters
    ----------
    demand_price, demand_kw : (K,) float
        The buyers' aggregate curve as breakpoints (price non-decreasing, power >= 0
        non-increasing), e.g. row 0 of ``aggregate(market_curves(...), by_side=True)``.
    supply_price, supply_kw : (L,) float
        The sellers' aggregate curve, power as the quantity offered (>= 0, non-decreasing in
        price): minus the sellers' row.
    clearing_price_per_kwh, clearing_quantity_kw : float or None
        The clearing point (None: no price).
    price_floor_per_kwh, price_cap_per_kwh : float
        The market's limits: the curves are drawn from the floor to the cap, each constant
        beyond its breakpoints.
    currency : str
        Axis label.
    label : str
        The chart's accessible label (which interval).

    """
    dp = np.asarray(demand_price, dtype=np.float64)
    dq = np.asarray(demand_kw, dtype=np.float64)
    sp = np.asarray(supply_price, dtype=np.float64)
    sq = np.asarray(supply_kw, dtype=np.float64)
    if dp.shape != dq.shape or sp.shape != sq.shape or dp.ndim != 1 or sp.ndim != 1:
        raise ValueError(
            f"supply_demand_chart needs 1-D price and power arrays of equal length, got demand "
            f"{dp.shape}/{dq.shape} and supply {sp.shape}/{sq.shape}"
        )
    floor, cap = float(price_floor_per_kwh), float(price_cap_per_kwh)
    if not (math.isfinite(floor) and math.isfinite(cap) and floor < cap):
        raise ValueError(f"price floor and cap must be finite with floor < cap, got {floor}, {cap}")

    def extended(p: FloatArray, q: FloatArray) -> tuple[FloatArray, FloatArray]:
        if p.size == 0:
            return np.asarray([floor, cap]), np.zeros(2)
        return np.r_[floor, p, cap], np.r_[q[0], q, q[-1]]

    dp, dq = extended(dp, dq)
    sp, sq = extended(sp, sq)
    # the power axis spans the demand and the clearing point; a large supply is cut at the edge
    reach = max(float(dq.max(initial=0.0)), float(clearing_quantity_kw or 0.0))
    if reach <= 0:
        reach = max(float(sq.max(initial=0.0)), 1.0)
    x_ticks = nice_ticks(0.0, reach * 1.25, 5)
    x_max = max(x_ticks[-1], reach * 1.25)
    y_ticks = nice_ticks(floor, cap, 5)
    frame = _Frame(0.0, x_max, min(y_ticks[0], floor), max(y_ticks[-1], cap))
    parts = [
        _svg_open("curves", label),
        _axes(frame, x_ticks, y_ticks, "power (kW)", f"price ({currency}/kWh)"),
        f'<path d="{_curve_path(frame, sq, sp, x_max)}" fill="none" stroke="{SUPPLY_COLOUR}" '
        'stroke-width="3" data-series="supply"/>',
        f'<path d="{_curve_path(frame, dq, dp, x_max)}" fill="none" stroke="{DEMAND_COLOUR}" '
        'stroke-width="3" data-series="demand"/>',
    ]
    if float(sq.max(initial=0.0)) > x_max:
        parts.append(
            f'<text x="{_W - _RIGHT - 4}" y="{_TOP + 14}" text-anchor="end" class="note">'
            f"supply continues to {escape(f'{float(sq.max()):,.0f}')} kW →</text>"
        )
    if clearing_price_per_kwh is not None and clearing_quantity_kw is not None:
        cx = _num(frame.x(min(clearing_quantity_kw, x_max)))
        cy = _num(frame.y(clearing_price_per_kwh))
        text = f"{clearing_quantity_kw:,.1f} kW at {clearing_price_per_kwh:.4f} {currency}/kWh"
        parts.append(
            f'<circle cx="{cx}" cy="{cy}" r="7" fill="{CLEARING_COLOUR}" stroke="#ffffff" '
            f'stroke-width="1.5" data-series="clearing"><title>{escape(text)}</title></circle>'
            f'<text x="{cx}" y="{cy}" dx="10" dy="-10" class="note">{escape(text)}</text>'
        )
    parts.append(
        f'<g class="legend"><line x1="{_LEFT + 10}" x2="{_LEFT + 34}" y1="{_TOP + 14}" '
        f'y2="{_TOP + 14}" stroke="{DEMAND_COLOUR}" stroke-width="3"/>'
        f'<text x="{_LEFT + 40}" y="{_TOP + 18}">demand</text>'
        f'<line x1="{_LEFT + 100}" x2="{_LEFT + 124}" y1="{_TOP + 14}" y2="{_TOP + 14}" '
        f'stroke="{SUPPLY_COLOUR}" stroke-width="3"/>'
        f'<text x="{_LEFT + 130}" y="{_TOP + 18}">supply</text></g></svg>'
    )
    return Markup("".join(parts))


@dataclass(frozen=True)
class FeederDrawing:
    """What a feeder map needs of the feeder: positions, branches, names and limits.

    Attributes
    ----------
    xy : (N, 2) float
        Node positions (:func:`transactive.network.layout.feeder_coordinates`).
    y_stretch : float or None
        Display units per ``y`` unit relative to ``x`` (1 for schematic geodata,
        ``1 / cos(latitude)`` for longitude/latitude); None: the drawing fills the box.
    branch_from, branch_to : (B,) int
        Each branch's end nodes.
    node_name : (N,) str
        Node names (shown in tooltips and the violations' list).
    branch_name : (B,) str
        Branch names (``"line 3"``, ``"trafo 0"``).
    vmin_pu, vmax_pu : (N,) float
        Voltage limits of every node.
    slack : int
        The substation's node.

    """

    xy: FloatArray
    y_stretch: float | None
    branch_from: npt.NDArray[np.int64]
    branch_to: npt.NDArray[np.int64]
    node_name: tuple[str, ...]
    branch_name: tuple[str, ...]
    vmin_pu: FloatArray
    vmax_pu: FloatArray
    slack: int


@dataclass(frozen=True)
class MapMarks:
    """The violations a map names: nodes outside their limits, branches above their rating."""

    low_nodes: tuple[tuple[str, float], ...]
    high_nodes: tuple[tuple[str, float], ...]
    overloaded: tuple[tuple[str, float], ...]
    #: The voltages the node colours span (p.u.) and the loading the branch ramp ends at (%).
    voltage_range_pu: tuple[float, float]
    loading_top_pct: float

    def legend(self) -> list[tuple[str, str]]:
        """(colour, label) of the voltage ramp's ends and middle, then the loading ramp's."""
        lo, hi = self.voltage_range_pu
        volts = colour_ramp(VOLTAGE_RAMP, [0.0, 0.5, 1.0])
        loads = colour_ramp(LOADING_RAMP, [0.0, 0.5, 1.0])
        top = self.loading_top_pct
        return [
            *((c, f"{v:.3f} pu") for c, v in zip(volts, (lo, 0.5 * (lo + hi), hi), strict=True)),
            *((c, f"{v:.0f} % loading") for c, v in zip(loads, (0.0, 0.5 * top, top), strict=True)),
        ]


_MAP_W, _MAP_H, _MAP_PAD = 640, 420, 18


def feeder_map_svg(
    drawing: FeederDrawing,
    vm_pu: npt.ArrayLike,
    branch_loading_pct: Sequence[float | None],
    *,
    label: str,
) -> tuple[Markup, MapMarks]:
    """The feeder's nodes coloured by voltage and branches by loading, violations marked.

    Parameters
    ----------
    drawing : FeederDrawing
        The feeder's geometry.
    vm_pu : (N,) float
        Every node's voltage (p.u.), finite and positive.
    branch_loading_pct : sequence of float or None, length B
        Every branch's loading in per cent of its rating; None: unrated (drawn grey).
    label : str
        The map's accessible label.

    Returns
    -------
    (Markup, MapMarks)
        The SVG and the violations it marks (for the page's list).

    Raises
    ------
    ValueError
        Arrays that do not match the feeder (naming both lengths), voltages not finite or not
        positive.

    """
    n, nb = drawing.xy.shape[0], drawing.branch_from.size
    vm = np.asarray(vm_pu, dtype=np.float64)
    if vm.shape != (n,) or len(branch_loading_pct) != nb:
        raise ValueError(
            f"the network state has {vm.size} node voltages and {len(branch_loading_pct)} branch "
            f"loadings; the feeder has {n} nodes and {nb} branches"
        )
    if not (np.isfinite(vm).all() and (vm > 0).all()):
        raise ValueError("node voltages must be finite and positive")
    loading = np.asarray(
        [np.nan if v is None else float(v) for v in branch_loading_pct], dtype=np.float64
    )
    xy = drawing.xy
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = np.maximum(hi - lo, 1e-9)
    box_w, box_h = _MAP_W - 2 * _MAP_PAD, _MAP_H - 2 * _MAP_PAD
    if drawing.y_stretch is None:
        sx, sy = box_w / span[0], box_h / span[1]
    else:
        scale = min(box_w / span[0], box_h / (span[1] * drawing.y_stretch))
        sx, sy = scale, scale * drawing.y_stretch
    px = _MAP_PAD + (xy[:, 0] - lo[0]) * sx + (box_w - span[0] * sx) / 2
    py = _MAP_H - _MAP_PAD - (xy[:, 1] - lo[1]) * sy - (box_h - span[1] * sy) / 2

    lo_v, hi_v = float(vm.min()), float(vm.max())
    if hi_v - lo_v < 0.01:
        mid = 0.5 * (lo_v + hi_v)
        lo_v, hi_v = mid - 0.005, mid + 0.005
    node_colour = colour_ramp(VOLTAGE_RAMP, (vm - lo_v) / (hi_v - lo_v))
    top = max(OVERLOAD_PCT, float(np.nanmax(loading)) if np.isfinite(loading).any() else 0.0)
    branch_colour = colour_ramp(LOADING_RAMP, np.nan_to_num(loading, nan=0.0) / top)
    width = float(np.clip(160.0 / max(n, 1), 1.6, 4.0))
    radius = float(np.clip(260.0 / max(n, 1), 2.5, 7.0))

    parts = [
        _svg_open("map", label, _MAP_W, _MAP_H),
    ]
    overloaded = np.flatnonzero(np.nan_to_num(loading, nan=0.0) > OVERLOAD_PCT)
    frm, to = drawing.branch_from, drawing.branch_to
    for b in overloaded.tolist():
        parts.append(
            f'<line x1="{_num(px[frm[b]])}" y1="{_num(py[frm[b]])}" x2="{_num(px[to[b]])}" '
            f'y2="{_num(py[to[b]])}" stroke="{_HALO_COLOUR}" stroke-width="{_num(width * 2.6)}" '
            'stroke-linecap="round"/>'
        )
    for b in range(nb):
        colour = _UNRATED_COLOUR if math.isnan(loading[b]) else branch_colour[b]
        shown = "unrated" if math.isnan(loading[b]) else f"{loading[b]:.1f} %"
        parts.append(
            f'<line x1="{_num(px[frm[b]])}" y1="{_num(py[frm[b]])}" x2="{_num(px[to[b]])}" '
            f'y2="{_num(py[to[b]])}" stroke="{colour}" stroke-width="{_num(width)}" '
            f'stroke-linecap="round" data-branch="{b}"><title>'
            f"{escape(drawing.branch_name[b])}: {escape(shown)}</title></line>"
        )
    checked = np.arange(n) != drawing.slack
    low = np.flatnonzero(checked & (vm < drawing.vmin_pu))
    high = np.flatnonzero(checked & (vm > drawing.vmax_pu))
    for k in np.r_[low, high].tolist():
        parts.append(
            f'<circle cx="{_num(px[k])}" cy="{_num(py[k])}" r="{_num(radius * 1.9)}" '
            f'fill="none" stroke="{_RING_COLOUR}" stroke-width="2"/>'
        )
    for k in range(n):
        title = f"node {drawing.node_name[k]}: {vm[k]:.4f} pu"
        if k == drawing.slack:
            side = radius * 2.2
            parts.append(
                f'<rect x="{_num(px[k] - side / 2)}" y="{_num(py[k] - side / 2)}" '
                f'width="{_num(side)}" height="{_num(side)}" fill="#000000" data-node="{k}">'
                f"<title>substation, {escape(title)}</title></rect>"
            )
        else:
            parts.append(
                f'<circle cx="{_num(px[k])}" cy="{_num(py[k])}" r="{_num(radius)}" '
                f'fill="{node_colour[k]}" stroke="#333333" stroke-width="0.5" data-node="{k}">'
                f"<title>{escape(title)}</title></circle>"
            )
    parts.append("</svg>")
    marks = MapMarks(
        low_nodes=tuple((drawing.node_name[k], float(vm[k])) for k in low.tolist()),
        high_nodes=tuple((drawing.node_name[k], float(vm[k])) for k in high.tolist()),
        overloaded=tuple((drawing.branch_name[b], float(loading[b])) for b in overloaded.tolist()),
        voltage_range_pu=(lo_v, hi_v),
        loading_top_pct=top,
    )
    return Markup("".join(parts)), marks
