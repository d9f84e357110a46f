"""The report of an iterative mechanism's run: its files checked, its three figures drawn.

The run is the built-in ``ev-congestion`` scenario at a small size (40 homes and EVs, a tenth of
the feeder's own load as background, behind a 500 kVA transformer), so the page has every part:
the convergence, the schedules against the limit and the prices per node as a heat map. The page
is rendered in Debian's Chromium driven by Playwright, as the other report tests do.
"""

from __future__ import annotations

import json
import shutil
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import AxesImage
from playwright.sync_api import Browser, sync_playwright

from tests.report.test_html import CHROMIUM, CHROMIUM_ARGS, PNG_SIGNATURE, open_page
from transactive.errors import ValidationError
from transactive.report import read_results, write_report
from transactive.report.figures import (
    convergence_figure,
    iterative_price_figure,
    schedule_figure,
)
from transactive.sim import Scenario, simulate, write_results

NEW_FIGURES = {"iterative-convergence", "iterative-schedules", "iterative-prices"}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    text = (resources.files("transactive.sim") / "scenarios" / "ev-congestion.toml").read_text(
        encoding="utf-8"
    )
    data = tomllib.loads(text)
    data["population"]["base_load"]["count"] = 40
    data["population"]["ev"]["count"] = 40
    data["physics_step_s"] = 900
    data["feeder"]["scale"] = 0.1  # the feeder's own load as background, as in tests/sim
    data["mechanism"]["iterative"]["transformer_kva"] = 500.0
    out = tmp_path_factory.mktemp("iterative") / "ev-congestion"
    write_results(simulate(Scenario.model_validate(data)), out)
    write_report(out)
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.is_file(), f"{CHROMIUM} is missing: install Debian's chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_the_page_draws_the_three_figures(results: Path, browser: Browser, tmp_path: Path) -> None:
    page, outside = open_page(browser, results / "report.html")
    try:
        drawn = page.eval_on_selector_all(
            "figure[data-figure] img",
            "imgs => imgs.map(i => [i.closest('figure').dataset.figure, i.complete, "
            "i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width])",
        )
        keys = {d[0] for d in drawn}
        assert keys >= NEW_FIGURES | {"feeder-load", "load-stack", "ev-soc", "voltage"}
        for key, complete, width, height, shown in drawn:
            assert complete and width > 300 and height > 200, key
            assert shown > 200, key
        # no auction: the market's figures say why they are left out
        missing = page.eval_on_selector_all(
            ".missing", "ds => ds.map(d => [d.dataset.figure, d.textContent])"
        )
        assert {m[0] for m in missing} == {"price", "peak-curves", "temperature"}
        assert any("iterative mechanism" in m[1] for m in missing if m[0] == "price")
        block = json.loads((results / "summary.json").read_text())["iterative"]
        rounds = page.locator('tr[data-iterative="rounds"] td').inner_text()
        assert rounds.startswith(f"{block['rounds']:,} of at most")
        gap = page.locator('tr[data-iterative="relative_gap"] td').inner_text()
        assert float(gap) == pytest.approx(block["relative_gap"], rel=1e-3)
        assert "perfect forecast" in page.locator("table.iterative + p.note").inner_text()
        assert outside == []
        shot = page.screenshot(path=str(tmp_path / "iterative.png"), full_page=True)
        assert shot.startswith(PNG_SIGNATURE)
    finally:
        page.close()


def test_the_iterative_files_are_read_and_checked(results: Path, tmp_path: Path) -> None:
    res = read_results(results)
    assert res.iterative_rounds is not None and res.iterative_periods is not None
    assert res.iterative_prices is not None  # per node
    block = res.summary["iterative"]
    assert len(res.iterative_rounds) == block["rounds"]
    assert len(res.iterative_prices) == block["n_periods"] * res.feeder.n_nodes
    # a missing table, a broken one and a block without its keys are named, all at once
    broken = tmp_path / "broken"
    shutil.copytree(results, broken)
    (broken / "iterative_prices.parquet").unlink()
    rounds = pd.read_parquet(broken / "iterative.parquet")
    rounds.loc[3, "primal_residual"] = np.nan
    rounds.loc[0, "round"] = 7
    rounds.to_parquet(broken / "iterative.parquet")
    with pytest.raises(ValidationError) as info:
        read_results(broken)
    fields = {p.field for p in info.value.problems}
    assert "iterative_prices.parquet" in fields
    assert "iterative.parquet: round" in fields
    assert "iterative.parquet: primal_residual" in fields
    data = json.loads((broken / "summary.json").read_text())
    del data["iterative"]["relative_gap"]
    (broken / "summary.json").write_text(json.dumps(data))
    with pytest.raises(ValidationError) as info:
        read_results(broken)
    assert any("relative_gap" in p.reason for p in info.value.problems)


def test_convergence_figure() -> None:
    primal = np.array([1e-1, 1e-2, 1e-3, 5e-5])
    dual = np.array([2e-1, 0.0, 2e-3, 8e-5])  # a zero leaves a gap on the log axis
    gap = np.array([np.inf, 3e-2, -1e-4, 1e-6])  # inf while a plan cannot be served
    fig = convergence_figure(primal, dual, gap, tolerance=1e-4)
    top, bottom = fig.axes
    assert top.get_yscale() == "log" and bottom.get_yscale() == "log"
    lines = {line.get_gid(): line for line in top.get_lines() + bottom.get_lines()}
    assert set(lines) == {"residual:primal", "residual:dual", "tolerance", "relative-gap"}
    np.testing.assert_array_equal(lines["residual:primal"].get_ydata(), primal)
    assert np.isnan(np.asarray(lines["residual:dual"].get_ydata())[1])
    shown_gap = np.asarray(lines["relative-gap"].get_ydata())
    assert np.isnan(shown_gap[0]) and shown_gap[2] == pytest.approx(1e-4)  # |gap|
    with pytest.raises(ValidationError) as info:
        convergence_figure(primal, dual[:3], [np.nan] * 4, tolerance=0.0)
    fields = {p.field for p in info.value.problems}
    assert {"relative_gap", "tolerance"} <= fields


def test_schedule_figure() -> None:
    t = np.arange(6.0)
    base = np.array([100.0, 120.0, 90.0, 80.0, 80.0, 110.0])
    ev = np.array([0.0, 10.0, 60.0, 70.0, 40.0, 0.0])
    fig = schedule_figure(
        t, base, ev, centralized_kw=ev, baseline_kw=ev[::-1], limit=180.0, limit_unit="kVA"
    )
    (ax,) = fig.axes
    lines = {line.get_gid(): line for line in ax.get_lines()}
    assert set(lines) == {
        "series:base",
        "series:scheduled",
        "series:centralized",
        "series:baseline",
        "capacity",
    }
    np.testing.assert_allclose(np.asarray(lines["series:scheduled"].get_ydata())[:6], base + ev)
    assert "180 kVA" in str(lines["capacity"].get_label())
    no_limit = schedule_figure(t, base, ev, limit=float("inf"))
    assert "capacity" not in {line.get_gid() for line in no_limit.axes[0].get_lines()}
    with pytest.raises(ValidationError):
        schedule_figure(t, base, ev[:3])


def test_price_figure_per_period_and_per_node() -> None:
    t = np.arange(4.0)
    one = iterative_price_figure(t, [0.04, 0.05, 0.06, 0.05], unit="currency/kWh")
    assert [line.get_gid() for line in one.axes[0].get_lines()] == ["series:price"]
    per_node = np.arange(12.0).reshape(4, 3) / 100.0
    fig = iterative_price_figure(t, per_node, unit="currency/kWh")
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(images) == 1 and isinstance(images[0], AxesImage)
    assert images[0].get_gid() == "price-map"
    np.testing.assert_allclose(np.asarray(images[0].get_array()), per_node.T)
    band = {line.get_gid() for line in fig.axes[0].get_lines()}
    assert band == {"series:price-min", "series:price-max"}
    with pytest.raises(ValidationError):
        iterative_price_figure(t, np.full((3, 3), 0.1), unit="currency/kWh")
