"""Report figures: what the feeder map and the day figure show, and that they render to PNG."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure

from transactive.errors import ValidationError
from transactive.network.feeders import Feeder, load_feeder
from transactive.network.layout import feeder_coordinates
from transactive.network.powerflow import PowerFlowResult, run_powerflow
from transactive.report import feeder_map, save_png, voltage_day_figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@cache
def flow(name: str) -> tuple[Feeder, PowerFlowResult]:
    fd = load_feeder(name)
    return fd, run_powerflow(fd)


def floats(values: object) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def by_gid(fig: Figure, gid: str) -> list[object]:
    ax: Axes = fig.axes[0]
    return [a for a in (*ax.collections, *ax.lines) if a.get_gid() == gid]


def branches_of(fig: Figure) -> LineCollection:
    (lines,) = by_gid(fig, "branches")
    assert isinstance(lines, LineCollection)
    return lines


def nodes_of(fig: Figure) -> PathCollection:
    (nodes,) = by_gid(fig, "nodes")
    assert isinstance(nodes, PathCollection)
    return nodes


def test_map_shows_loading_per_branch_and_voltage_per_node() -> None:
    fd, res = flow("cigre_mv")
    fig = feeder_map(fd, res.vm_pu, res.branch_loading_pct)
    assert isinstance(fig.canvas, FigureCanvasAgg)
    xy = feeder_coordinates(fd)
    lines = branches_of(fig)
    segments = lines.get_segments()
    assert len(segments) == fd.n_branches
    for b, seg in enumerate(segments):
        np.testing.assert_allclose(seg, xy[[fd.branch_from[b], fd.branch_to[b]]])
    np.testing.assert_allclose(np.asarray(lines.get_array()), res.branch_loading_pct)
    nodes = nodes_of(fig)
    np.testing.assert_allclose(floats(nodes.get_offsets()), xy)
    np.testing.assert_allclose(np.asarray(nodes.get_array()), res.vm_pu)
    (slack,) = by_gid(fig, "slack")
    assert isinstance(slack, PathCollection)
    np.testing.assert_allclose(floats(slack.get_offsets()), xy[[fd.slack]])
    # colour bars for both, with units
    labels = {a.get_ylabel() or a.get_xlabel() for a in fig.axes[1:]}
    assert labels == {"node voltage (pu)", "branch loading (% of rating)"}


def test_map_highlights_overloads_and_voltages_outside_limits() -> None:
    fd, res = flow("case33bw")
    loading = np.full(fd.n_branches, 40.0)
    loading[[3, 7]] = [120.0, 101.0]
    vm = np.asarray(res.vm_pu).copy()  # nodes 12..17 and 29..32 are below 0.92 pu
    fig = feeder_map(fd, vm, loading, title="a test")
    (halo,) = by_gid(fig, "overloaded-branches")
    assert isinstance(halo, LineCollection)
    assert len(halo.get_segments()) == 2
    assert by_gid(fig, "nodes-outside-limits") == []  # the base case is within 0.9 pu
    assert fig.axes[0].get_title() == "a test"
    low = vm.copy()
    low[[5, 17]] = [0.85, 0.80]
    fig = feeder_map(fd, low, loading)
    (rings,) = by_gid(fig, "nodes-outside-limits")
    assert isinstance(rings, PathCollection)
    xy = feeder_coordinates(fd)
    np.testing.assert_allclose(floats(rings.get_offsets()), xy[[5, 17]])
    assert fig.axes[0].get_title() == "case33bw"


def test_map_without_problems_has_no_highlight() -> None:
    fd, res = flow("case33bw")
    fig = feeder_map(fd, res.vm_pu, np.zeros(fd.n_branches))
    assert by_gid(fig, "overloaded-branches") == []
    assert by_gid(fig, "nodes-outside-limits") == []


def test_map_renders_simbench_mv_to_png(tmp_path: Path) -> None:
    fd, res = flow("1-MV-urban--0-sw")
    fig = feeder_map(fd, res.vm_pu, res.branch_loading_pct, title="MV urban")
    path = save_png(fig, tmp_path / "mv.png")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = mpimg.imread(path)
    assert image.shape[0] == 1050  # 7 in at 150 dpi
    assert image.shape[2] in (3, 4)
    assert len(branches_of(fig).get_segments()) == fd.n_branches


def test_map_with_given_coordinates() -> None:
    fd, res = flow("case33bw")
    xy = np.column_stack([np.arange(33.0), np.zeros(33)])
    fig = feeder_map(fd, res.vm_pu, res.branch_loading_pct, coordinates=xy)
    np.testing.assert_allclose(floats(nodes_of(fig).get_offsets()), xy)


def test_map_rejects_bad_input() -> None:
    fd, res = flow("case33bw")
    with pytest.raises(ValidationError) as err:
        feeder_map(fd, res.vm_pu[:-1], res.branch_loading_pct[:3], coordinates=np.zeros((33, 3)))
    message = str(err.value)
    assert "vm_pu: needs shape (33,)" in message
    assert "branch_loading_pct: needs shape (32,)" in message
    assert "coordinates: needs shape (33, 2)" in message
    vm = np.asarray(res.vm_pu).copy()
    vm[4] = np.nan
    with pytest.raises(ValidationError, match=r"did the power flow converge\?\) \(entry 4\)"):
        feeder_map(fd, vm, res.branch_loading_pct)


def test_day_figure_has_one_line_per_series(tmp_path: Path) -> None:
    time_h = np.arange(96) * 0.25
    base = 1.0 - 0.08 * np.sin(np.pi * time_h / 24.0)
    series = {"baseline": base, "transactive": base + 0.02}
    fig = voltage_day_figure(time_h, series, vmin_limit_pu=0.93)
    ax = fig.axes[0]
    drawn = [line for line in ax.lines if str(line.get_gid()).startswith("series:")]
    assert [line.get_gid() for line in drawn] == ["series:baseline", "series:transactive"]
    for line, values in zip(drawn, series.values(), strict=True):
        np.testing.assert_allclose(floats(line.get_xdata()), time_h)
        np.testing.assert_allclose(floats(line.get_ydata()), floats(values))
    assert "lowest 0.9200 pu at 12:00" in str(drawn[0].get_label())
    (limit,) = by_gid(fig, "voltage-limit")
    assert limit.get_ydata()[0] == 0.93  # type: ignore[attr-defined]
    assert ax.get_ylabel() == "minimum node voltage (pu)"
    assert ax.get_xlabel() == "time (h)"
    path = save_png(fig, tmp_path / "day.png")
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_day_figure_without_limit_and_with_gaps() -> None:
    time_h = np.arange(4.0)
    fig = voltage_day_figure(time_h, {"run": [0.95, np.nan, 0.97, 0.96]})
    assert by_gid(fig, "voltage-limit") == []
    assert len(fig.axes[0].lines) == 1


def test_day_figure_rejects_bad_input() -> None:
    with pytest.raises(ValidationError, match="at least one run"):
        voltage_day_figure(np.arange(3.0), {})
    with pytest.raises(ValidationError) as err:
        voltage_day_figure(
            [0.0, 2.0, 1.0], {"a": [1.0, 1.0], "b": [1.0, -1.0, 1.0]}, vmin_limit_pu=-0.9
        )
    message = str(err.value)
    assert "time_h: must increase (entry 2)" in message
    assert "series['a']: needs shape (3,)" in message
    assert "series['b']: must be positive (entry 1)" in message
    assert "vmin_limit_pu" in message


def test_save_png_rejects_bad_paths(tmp_path: Path) -> None:
    fig = voltage_day_figure([0.0, 1.0], {"a": [1.0, 0.99]})
    with pytest.raises(ValidationError, match=r"must end in \.png"):
        save_png(fig, tmp_path / "day.pdf")
    with pytest.raises(ValidationError, match="does not exist"):
        save_png(fig, tmp_path / "missing" / "day.png")
    folder = tmp_path / "folder.png"
    folder.mkdir()
    with pytest.raises(ValidationError, match="is a folder"):
        save_png(fig, folder)
