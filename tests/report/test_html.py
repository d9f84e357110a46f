"""The run's report: validation of the results directory, and the page in headless Chromium.

The page is rendered by Debian's ``chromium`` driven by Playwright (never a downloaded browser);
a missing Chromium fails the test (``make test`` installs it), it is never skipped.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from playwright.sync_api import Browser, Page, Route, sync_playwright

from tests.report.results_fixture import Fixture, write_results
from transactive.errors import ValidationError
from transactive.report import (
    KPIS,
    bid_curves_figure,
    ev_soc_figure,
    feeder_load_figure,
    load_stack_figure,
    price_figure,
    published_figure,
    read_results,
    temperature_figure,
    write_report,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ALL_FIGURES = {
    "feeder-load",
    "load-stack",
    "price",
    "peak-curves",
    "temperature",
    "ev-soc",
    "voltage",
    "feeder-map-transactive",
    "feeder-map-baseline",
    "published",
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    fx = write_results(tmp_path_factory.mktemp("results") / "full")
    write_report(fx.directory)
    return fx


@pytest.fixture(scope="module")
def no_ev(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    fx = write_results(
        tmp_path_factory.mktemp("results") / "no_ev",
        with_ev=False,
        with_groups=False,
        with_published=False,
    )
    return fx


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.is_file(), (
        f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium; "
        "`make test` does it)"
    )
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_page(browser: Browser, path: Path) -> tuple[Page, list[str]]:
    """Open the report, failing every request that is not for the page itself or a data URL."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    outside: list[str] = []

    def guard(route: Route) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    page.route("**/*", guard)
    page.on(
        "request", lambda r: None if r.url.startswith(("file:", "data:")) else outside.append(r.url)
    )
    page.goto(path.as_uri(), wait_until="load")
    return page, outside


# ---------------------------------------------------------------------------------------------
# The page in Chromium
# ---------------------------------------------------------------------------------------------


def test_every_figure_is_drawn_and_nothing_is_fetched(
    full: Fixture, browser: Browser, tmp_path: Path
) -> None:
    page, outside = open_page(browser, full.directory / "report.html")
    try:
        drawn = page.eval_on_selector_all(
            "figure[data-figure] img",
            "imgs => imgs.map(i => [i.closest('figure').dataset.figure, i.complete, "
            "i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width])",
        )
        assert {d[0] for d in drawn} == ALL_FIGURES
        for key, complete, width, height, shown in drawn:
            assert complete and width > 300 and height > 200, key
            assert shown > 200, key  # laid out at a readable size, not collapsed
        assert page.locator(".missing").count() == 0
        shot = page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        assert shot.startswith(PNG_SIGNATURE)
    finally:
        page.close()
    assert outside == []


def test_kpi_table_has_the_summary_numbers(full: Fixture, browser: Browser) -> None:
    page, _ = open_page(browser, full.directory / "report.html")
    try:
        cells = page.eval_on_selector_all(
            "table.kpi td[data-kpi]",
            "tds => tds.map(t => [t.dataset.kpi, t.dataset.run, t.dataset.value, t.innerText])",
        )
        change = page.eval_on_selector_all(
            "table.kpi tbody tr", "rows => rows.map(r => r.lastElementChild.innerText)"
        )
    finally:
        page.close()
    decimals = {key: d for key, _, _, d in KPIS}
    assert len(cells) == 2 * len(KPIS)
    runs = full.summary["runs"]
    for key, run, raw, text in cells:
        expected = runs[run][key]
        if expected is None:  # a KPI that does not apply (no hybrid, no appliance)
            assert (raw, text) == ("null", "n/a")
            continue
        assert float(raw) == pytest.approx(expected, rel=0, abs=0)
        assert text == f"{expected:,.{decimals[key]}f}"
    assert {k for k, run, raw, _ in cells if raw == "null"} == {
        "gas_kwh",
        "gas_cost",
        "unserved_appliance_kwh",
    }
    peak_row = [k for k, *_ in KPIS].index("peak_kw")
    diff = runs["transactive"]["peak_kw"] - runs["baseline"]["peak_kw"]
    pct = 100 * diff / runs["baseline"]["peak_kw"]
    assert change[peak_row] == f"{diff:+,.1f} ({pct:+.1f} %)"
    assert pct == pytest.approx(-full.summary["peak_reduction_pct"])


def test_groups_and_published_are_shown(full: Fixture, browser: Browser) -> None:
    page, _ = open_page(browser, full.directory / "report.html")
    try:
        groups = page.eval_on_selector_all(
            "table.groups td[data-kpi]",
            "tds => tds.map(t => [t.dataset.scope, t.dataset.kpi, t.dataset.value])",
        )
        published = page.eval_on_selector_all(
            "table.published tbody tr",
            "rows => rows.map(r => [r.dataset.published, "
            "...Array.from(r.querySelectorAll('td')).map(c => c.innerText)])",
        )
    finally:
        page.close()
    for scope, key, raw in groups:
        name = scope.removeprefix("group:")
        assert float(raw) == full.summary["groups"][name]["transactive"][key]
    assert {s for s, *_ in groups} == {f"group:{g}" for g in full.summary["groups"]}
    rows = {r[0]: r[1:] for r in published}
    # our peak reduction is read from the summary; the bill change is the simulator's own "ours"
    assert rows["peak_reduction_pct"][:2] == [f"{full.summary['peak_reduction_pct']:,.2f}", "5"]
    assert rows["participants_bill_change_pct"][:2] == ["-4.00", "-5"]


def test_figures_without_data_are_left_out_with_a_note(
    no_ev: Fixture, browser: Browser, tmp_path: Path
) -> None:
    summary = json.loads((no_ev.directory / "summary.json").read_text())
    summary["peak_interval"]["clearing_price_per_kwh"] = None
    summary["peak_interval"]["clearing_quantity_kw"] = None
    (no_ev.directory / "summary.json").write_text(json.dumps(summary))
    out = write_report(no_ev.directory, tmp_path / "page.html")
    assert out == tmp_path / "page.html"
    page, outside = open_page(browser, out)
    try:
        drawn = set(
            page.eval_on_selector_all("figure[data-figure]", "f => f.map(x => x.dataset.figure)")
        )
        notes = dict(
            page.eval_on_selector_all(
                ".missing", "m => m.map(x => [x.dataset.figure, x.innerText])"
            )
        )
        unserved = page.locator("td[data-kpi='unserved_ev_kwh'][data-run='baseline']").inner_text()
        has_groups = page.locator("table.groups").count()
    finally:
        page.close()
    assert drawn == ALL_FIGURES - {"ev-soc", "peak-curves", "published"}
    assert set(notes) == {"ev-soc", "peak-curves"}
    assert "No EV" in notes["ev-soc"] and "did not clear" in notes["peak-curves"]
    assert unserved == "n/a"
    assert has_groups == 0
    assert outside == []


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"src", "href", "srcset", "action", "data"}:
                self.refs.append((tag, name, value or ""))
        if tag in {"script", "link", "iframe", "object", "embed"}:
            self.refs.append((tag, "", ""))


def test_page_is_self_contained(full: Fixture) -> None:
    text = (full.directory / "report.html").read_text()
    tags = _Tags()
    tags.feed(text)
    assert tags.refs, "the page has images"
    assert all(
        tag == "img" and value.startswith("data:image/png;base64,") for tag, _, value in tags.refs
    )
    assert not re.search(r"url\(|@import|https?://", text.split("<body>")[0])


# ---------------------------------------------------------------------------------------------
# The results directory's validation
# ---------------------------------------------------------------------------------------------


def copy_of(fx: Fixture, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(fx.directory, out)
    return out


def edit_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def edit_parquet(path: Path, change: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    change(pd.read_parquet(path)).to_parquet(path, index=False)


def problems_of(directory: Path) -> list[str]:
    with pytest.raises(ValidationError) as err:
        read_results(directory)
    return [str(p) for p in err.value.problems]


def test_the_fixture_follows_the_format(full: Fixture) -> None:
    res = read_results(full.directory)
    assert res.interval_start_s.size == 24
    assert res.time_h[0] == 0.0 and res.time_h[-1] == 23.0
    for run in ("baseline", "transactive"):
        for name, values in full.series[run].items():
            if run == "baseline" and name.startswith("clearing_"):
                assert name not in res.series[run]
            else:
                assert res.series[run][name].tolist() == pytest.approx(values.tolist(), nan_ok=True)
    assert res.feeder.n_nodes == len(res.peak_network["runs"]["transactive"]["vm_pu"])


def test_every_problem_is_named_at_once(full: Fixture, tmp_path: Path) -> None:
    d = copy_of(full, tmp_path)
    (d / "devices.parquet").unlink()
    edit_json(d / "summary.json", lambda s: s.update(format_version=1))
    edit_json(d / "summary.json", lambda s: s["runs"]["baseline"].pop("losses_kwh"))
    edit_parquet(
        d / "timeseries.parquet",
        lambda f: f[~((f["run"] == "transactive") & (f["series"] == "vmin_pu"))],
    )
    found = problems_of(d)
    assert any(p.startswith("devices.parquet: is missing") for p in found)
    assert any("format_version: must be 2" in p and "got 1" in p for p in found)
    assert any("runs.baseline" in p and "losses_kwh" in p for p in found)
    assert any("transactive" in p and "lacks the series vmin_pu" in p for p in found)
    assert len(found) == 4


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "nowhere") == ["results_dir: is not a directory"]


def test_an_empty_directory_names_every_file(tmp_path: Path) -> None:
    found = problems_of(tmp_path)
    assert len(found) == 6 and all(p.endswith("is missing") for p in found)


@pytest.mark.parametrize(
    ("file", "change", "expected"),
    [
        (
            "summary.json",
            lambda s: s.update(peak_reduction_pct=3.0),
            "peak_reduction_pct: must be 100 (baseline - transactive) / baseline peak",
        ),
        (
            "summary.json",
            lambda s: s["runs"]["transactive"].update(cost="cheap"),
            "KPIs must be finite numbers or null: cost",
        ),
        ("summary.json", lambda s: s.update(start="2026-07-15T00:00:00"), "must carry its UTC"),
        ("summary.json", lambda s: s["peak_interval"].update(start_s=61), "is not an interval"),
        (
            "summary.json",
            lambda s: s["published"]["peak_reduction_pct"].pop("source"),
            "published.peak_reduction_pct: must be {value",
        ),
        (
            "peak_network.json",
            lambda n: n["runs"]["baseline"]["vm_pu"].pop(),
            "runs.baseline.vm_pu: needs 33 values (the order of load_feeder('case33bw')), got 32",
        ),
        (
            "peak_network.json",
            lambda n: n.update(feeder="no-such-feeder"),
            "peak_network.json: feeder 'no-such-feeder'",
        ),
        (
            "peak_network.json",
            lambda n: n["runs"]["transactive"]["branch_loading_pct"].__setitem__(4, "high"),
            "branch_loading_pct: must be finite numbers or null (entry 4)",
        ),
    ],
)
def test_json_problems_are_named(
    full: Fixture,
    tmp_path: Path,
    file: str,
    change: Callable[[dict[str, Any]], None],
    expected: str,
) -> None:
    d = copy_of(full, tmp_path)
    edit_json(d / file, change)
    found = problems_of(d)
    assert any(expected in p for p in found), found


@pytest.mark.parametrize(
    ("file", "change", "expected"),
    [
        (
            "timeseries.parquet",
            lambda f: f[~((f["run"] == "baseline") & (f["interval_start_s"] == 0))],
            "must cover the same intervals",
        ),
        (
            "timeseries.parquet",
            lambda f: f[
                ~(
                    (f["run"] == "baseline")
                    & (f["series"] == "losses_kw")
                    & (f["interval_start_s"] == 3600)
                )
            ],
            "series without a row at every one of the 24 intervals: losses_kw",
        ),
        (
            "timeseries.parquet",
            lambda f: pd.concat([f, f.iloc[[0]]]),
            "more than one row per run, interval and series",
        ),
        (
            "timeseries.parquet",
            lambda f: f[f["series"] != "load_kw:ev"],
            "lacks the load of device kinds in devices.parquet: load_kw:ev",
        ),
        (
            "timeseries.parquet",
            lambda f: f.assign(value=f["value"].where(f["series"] != "ev_mean_soc", float("nan"))),
            "ev_mean_soc: is NaN at every interval though the run has ev devices",
        ),
        ("timeseries.parquet", lambda f: f.drop(columns="time"), "lacks the columns time"),
        (
            "timeseries.parquet",
            lambda f: f.assign(time=f["time"].dt.tz_localize(None)),
            "time: must be a timestamp with time zone",
        ),
        (
            "devices.parquet",
            lambda f: pd.concat([f, f.iloc[[0]]]),
            "device_id: must be unique within a run",
        ),
        (
            "peak_curves.parquet",
            lambda f: f.assign(power_kw=f["power_kw"].where(f.index != 2, 1e5)),
            "demand power_kw: must not increase in price",
        ),
        (
            "peak_curves.parquet",
            lambda f: f.assign(side=f["side"].replace("supply", "offer")),
            "side: must be demand or supply",
        ),
    ],
)
def test_table_problems_are_named(
    full: Fixture,
    tmp_path: Path,
    file: str,
    change: Callable[[pd.DataFrame], pd.DataFrame],
    expected: str,
) -> None:
    d = copy_of(full, tmp_path)
    edit_parquet(d / file, change)
    found = problems_of(d)
    assert any(expected in p for p in found), found


def test_an_unreadable_file_is_named(full: Fixture, tmp_path: Path) -> None:
    d = copy_of(full, tmp_path)
    (d / "summary.json").write_text("{not json")
    (d / "peak_curves.parquet").write_bytes(b"PAR1 broken")
    (d / "scenario.toml").write_text("name = ")
    found = problems_of(d)
    assert any(p.startswith("summary.json: cannot be read as JSON") for p in found)
    assert any(p.startswith("peak_curves.parquet: cannot be read as parquet") for p in found)
    assert any(p.startswith("scenario.toml: cannot be read as TOML") for p in found)


def test_write_report_refuses_a_bad_destination(full: Fixture, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="does not exist"):
        write_report(full.directory, tmp_path / "no" / "page.html")
    with pytest.raises(ValidationError, match="is a folder"):
        write_report(full.directory, tmp_path)


# ---------------------------------------------------------------------------------------------
# The new figure functions
# ---------------------------------------------------------------------------------------------

T = np.arange(24.0)
LOAD = 1000.0 + 800.0 * np.exp(-(((T - 18.0) / 3.0) ** 2))


def line(fig: Figure, gid: str, ax: int = 0) -> Line2D:
    (found,) = [x for x in fig.axes[ax].get_lines() if x.get_gid() == gid]
    return found


def test_feeder_load_figure_draws_runs_as_interval_steps_and_the_capacity() -> None:
    cap = np.full(24, 1500.0)
    fig = feeder_load_figure(T, {"baseline": LOAD, "transactive": LOAD * 0.9}, capacity_kw=cap)
    base = line(fig, "series:baseline")
    assert base.get_drawstyle() == "steps-post"
    np.testing.assert_allclose(np.asarray(base.get_xdata()), np.r_[T, 24.0])
    np.testing.assert_allclose(np.asarray(base.get_ydata()), np.r_[LOAD, LOAD[-1]])
    assert "peak 1,800 kW at 18:00" in str(base.get_label())
    np.testing.assert_allclose(np.asarray(line(fig, "capacity").get_ydata())[:24], cap)
    assert fig.axes[0].get_xlim() == (0.0, 24.0)


def test_price_figure_draws_prices_and_the_cleared_quantity() -> None:
    price = 0.05 + 0.01 * np.sin(T)
    fig = price_figure(T, {"transactive": price}, quantity_kw=LOAD, currency="USD")
    np.testing.assert_allclose(np.asarray(line(fig, "series:transactive").get_ydata())[:24], price)
    bars = [p.get_height() for p in fig.axes[1].patches if isinstance(p, Rectangle)]
    np.testing.assert_allclose(bars, LOAD)
    assert fig.axes[0].get_ylabel() == "clearing price (USD/kWh)"


def test_bid_curves_figure_puts_quantity_across_and_marks_the_clearing() -> None:
    fig = bid_curves_figure(
        [0.0, 0.1, 0.2],
        [30.0, 20.0, 10.0],
        [0.0, 0.05, 0.3],
        [0.0, 15.0, 40.0],
        clearing_price_per_kwh=0.12,
        clearing_quantity_kw=18.0,
    )
    demand = line(fig, "demand")
    np.testing.assert_allclose(np.asarray(demand.get_xdata()), [30.0, 20.0, 10.0])
    np.testing.assert_allclose(np.asarray(demand.get_ydata()), [0.0, 0.1, 0.2])
    point = line(fig, "clearing-point")
    assert (point.get_xdata()[0], point.get_ydata()[0]) == (18.0, 0.12)  # type: ignore[index]


def test_bid_curves_figure_names_every_bad_input() -> None:
    with pytest.raises(ValidationError) as err:
        bid_curves_figure(
            [0.0, 0.1, 0.05],
            [10.0, 20.0, -1.0],
            [0.0],
            [0.0, 1.0],
            clearing_price_per_kwh=float("nan"),
            clearing_quantity_kw=1.0,
        )
    text = str(err.value)
    assert "demand price_per_kwh: must not decrease (entry 2)" in text
    assert "demand power_kw: must be >= 0" in text
    assert "demand power_kw: must not increase in price (entry 1)" in text
    assert "supply: needs two equal" in text
    assert "clearing point: must be finite" in text


def test_temperature_figure_shades_the_band() -> None:
    fig = temperature_figure(
        T,
        {"baseline": np.full(24, 23.0)},
        comfort_min_c=np.full(24, 21.0),
        comfort_max_c=np.full(24, 25.0),
    )
    (band,) = [c for c in fig.axes[0].collections if c.get_gid() == "comfort-band"]
    ys = np.concatenate([np.asarray(p.vertices)[:, 1] for p in band.get_paths()])
    assert ys.min() == 21.0 and ys.max() == 25.0
    with pytest.raises(ValidationError, match="comfort_min_c must not be above comfort_max_c"):
        temperature_figure(
            T,
            {"b": np.full(24, 23.0)},
            comfort_min_c=np.full(24, 26.0),
            comfort_max_c=np.full(24, 25.0),
        )


def test_ev_soc_figure_shows_per_cent_and_refuses_fractions_outside_0_1() -> None:
    soc = np.linspace(0.2, 0.9, 24)
    fig = ev_soc_figure(T, {"transactive": soc})
    np.testing.assert_allclose(
        np.asarray(line(fig, "series:transactive").get_ydata())[:24], 100 * soc
    )
    bad = soc.copy()
    bad[[3, 5]] = [1.2, -0.1]
    with pytest.raises(ValidationError, match=r"must be a fraction in \[0, 1\] \(entries 3, 5\)"):
        ev_soc_figure(T, {"transactive": bad})


def test_load_stack_sums_to_the_net_load_and_stacks_injection_below_zero() -> None:
    kinds = {"base_load": np.full(24, 500.0), "pv": -300.0 * (np.abs(T - 12) < 4), "hvac": LOAD}
    fig = load_stack_figure(T, {"baseline": kinds, "transactive": kinds})
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["baseline", "transactive"]
    gids = {c.get_gid() for c in fig.axes[0].collections}
    assert gids == {"kind:base_load", "kind:pv:injection", "kind:hvac"}
    (net,) = [x for x in fig.axes[0].get_lines() if x.get_label() == "net"]
    np.testing.assert_allclose(np.asarray(net.get_ydata())[:24], sum(kinds.values()))
    with pytest.raises(ValidationError) as err:
        load_stack_figure(T, {"baseline": {"hvac": np.full(24, np.nan)}, "transactive": {}})
    text = str(err.value)
    assert "loads_kw['baseline']['hvac']: must not be NaN" in text
    assert "loads_kw['transactive']: needs at least one series" in text


def test_published_figure_draws_ours_beside_the_publication() -> None:
    fig = published_figure([("peak", 4.0, 5.0, "%", "PNNL-17167"), ("bill", None, -5.0, "%", "X")])
    first = {p.get_gid(): p.get_height() for p in fig.axes[0].patches if isinstance(p, Rectangle)}
    assert first == {"published": 5.0, "ours": 4.0}
    assert {p.get_gid() for p in fig.axes[1].patches} == {"published"}
    with pytest.raises(ValidationError, match="published value must be finite"):
        published_figure([("peak", 1.0, float("inf"), "%", "X")])


@pytest.mark.parametrize(
    "draw",
    [
        feeder_load_figure,
        price_figure,
        ev_soc_figure,
    ],
)
def test_day_figures_refuse_a_bad_time_axis_and_series(draw: Callable[..., Figure]) -> None:
    with pytest.raises(ValidationError) as err:
        draw(np.array([0.0, 2.0, 1.0]), {"a": np.zeros(2), "b": np.array([0.5, np.inf, 0.5])})
    text = str(err.value)
    assert "time_h: must increase (entry 2)" in text
    assert "['a']: needs shape (3,)" in text
    assert "['b']: must not be infinite (entry 1)" in text
    with pytest.raises(ValidationError, match="needs at least one series"):
        draw(T, {})


def test_the_report_labels_every_kpi_the_simulator_writes():
    from transactive.results_format import KPI_NAMES  # noqa: PLC0415

    assert tuple(k for k, *_ in KPIS) == KPI_NAMES
