"""The page end to end: ``transactive serve --demo`` and Debian's Chromium driven by Playwright.

Nothing is downloaded: the browser is ``/usr/bin/chromium`` (``make test`` installs it; a
missing one fails the test, it is never skipped) and every request the page makes to anywhere
but the server is recorded and aborted. The operator signs in through the form; a prosumer bids
through the API (httpx) and the operator advances the interval through the API; the page shows
each step without a reload (the live view), waited for in the DOM. The screenshot is checked:
its size, and that the price chart, the curves and the feeder map are drawn in their colours.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, Route, sync_playwright

from tests.platform.test_cli_platform import _login, _read_credentials, _serve, _stop, _wait_for
from transactive.platform.web import charts

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
#: How long the DOM may take to show a step (a generous bound: not a speed test, see
#: benchmarks/bench_page_live.py for the latency).
WAIT_MS = 20_000


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


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def _pixels_near(image: Image.Image, box: dict[str, float], colour: str, tol: int = 24) -> int:
    """Pixels within ``tol`` of ``colour`` (per channel) inside an element's bounding box."""
    target = _rgb(colour)
    crop = image.crop(
        (int(box["x"]), int(box["y"]), int(box["x"] + box["width"]), int(box["y"] + box["height"]))
    ).convert("RGB")
    pixels = np.asarray(crop, dtype=np.int64)
    return int((np.abs(pixels - np.asarray(target)) <= tol).all(axis=-1).sum())


def _open_page(browser: Browser, base: str) -> tuple[Page, list[str]]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    outside: list[str] = []

    def guard(route: Route) -> None:
        if route.request.url.startswith(base + "/"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    return page, outside


def test_the_page_shows_a_bid_cleared_and_checked_live(tmp_path: Path, browser: Browser) -> None:
    proc, base, _db = _serve(tmp_path, "--demo")
    try:
        members, _ = _read_credentials(proc)
        _wait_for(f"{base}/openapi.json", proc)
        page, outside = _open_page(browser, base)
        page.goto(f"{base}/", wait_until="load")
        assert page.url == f"{base}/ui/login"
        page.fill("input[name=client_id]", members["operator"]["client_id"])
        page.fill("input[name=client_secret]", members["operator"]["secret"])
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/ui/")
        page.wait_for_selector("[data-live-state].on", timeout=WAIT_MS)  # the stream is open
        assert page.evaluate("document.cookie") == ""  # HttpOnly: scripts cannot read it

        with httpx.Client(base_url=f"{base}/api/v1", timeout=30.0) as http:
            homes = ("home-2", "home-3", "home-1")
            heads = {n: _login(http, members[n]) for n in (*homes, "operator")}
            market = http.get("/markets", headers=heads["operator"]).json()[0]["id"]
            interval = http.get(
                f"/markets/{market}/intervals?state=open", headers=heads["operator"]
            ).json()[0]["id"]
            row = f'[data-interval-id="{interval}"]'
            assert page.get_attribute(row, "data-state") == "open"
            for k, name in enumerate(homes):
                contract = http.get("/contracts", headers=heads[name]).json()[0]["id"]
                r = http.post(
                    "/bids",
                    json={
                        "interval_id": interval,
                        "contract_id": contract,
                        "points": [
                            {"price_per_kwh": 0.05, "power_kw": 8.0},
                            {"price_per_kwh": 0.3, "power_kw": 1.0 + k},
                        ],
                    },
                    headers={**heads[name], "Idempotency-Key": f"e2e-{name}"},
                )
                assert r.status_code == 201, r.text
            page.wait_for_selector('[data-open-bids]:has-text("3 active bid")', timeout=WAIT_MS)

            def advance(**params: str) -> None:
                r = http.post(
                    f"/intervals/{interval}/advance", params=params, headers=heads["operator"]
                )
                assert r.status_code == 200, r.text

            advance(force="true")
            page.wait_for_selector(f'{row}[data-state="gate_closed"]', timeout=WAIT_MS)
            advance()
            page.wait_for_selector(f'{row}[data-state="cleared"]', timeout=WAIT_MS)
            page.wait_for_selector(f'[data-curves-interval="{interval}"] svg', timeout=WAIT_MS)
            page.wait_for_selector(
                '[data-figure="price"] path[data-series="price"]', state="attached"
            )
            advance()  # the DSO's security check
            page.wait_for_selector(f'{row}[data-state="checked"]', timeout=WAIT_MS)
            page.wait_for_selector(f'[data-map-interval="{interval}"] svg', timeout=WAIT_MS)
            awards = page.locator("[data-award-contract]").count()
            assert awards == 3
            assert page.url == f"{base}/ui/"  # never reloaded: the same document all along
            assert page.evaluate("performance.getEntriesByType('navigation').length") == 1

        shot = page.screenshot(full_page=True)
        image = Image.open(io.BytesIO(shot))
        height = page.evaluate("document.documentElement.scrollHeight")
        assert image.size == (1400, max(1000, height))
        boxes: dict[str, dict[str, float]] = {}
        for name in ("price", "curves", "map"):
            box = page.locator(f'[data-figure="{name}"] svg').bounding_box()
            assert box is not None and box["width"] > 300 and box["height"] > 150, (name, box)
            boxes[name] = {k: float(box[k]) for k in ("x", "y", "width", "height")}
        assert _pixels_near(image, boxes["price"], charts.PRICE_COLOUR) > 20
        assert _pixels_near(image, boxes["curves"], charts.DEMAND_COLOUR) > 50
        assert _pixels_near(image, boxes["curves"], charts.SUPPLY_COLOUR) > 50
        assert _pixels_near(image, boxes["curves"], charts.CLEARING_COLOUR) > 20
        # the map: 32 nodes drawn in the voltage ramp's colours (not one blank or grey box)
        node_colours = set(
            page.eval_on_selector_all(
                '[data-figure="map"] circle[data-node]', "cs => cs.map(c => c.getAttribute('fill'))"
            )
        )
        assert len(node_colours) > 3
        drawn = sum(_pixels_near(image, boxes["map"], c, tol=10) for c in node_colours)
        assert drawn > 200
        (tmp_path / "page.png").write_bytes(shot)
        assert outside == []
        page.close()
    finally:
        _out, err = _stop(proc)
    assert "Traceback" not in err, err


def test_the_event_stream_names_what_changed(tmp_path: Path) -> None:
    proc, base, _db = _serve(tmp_path, "--demo")
    try:
        members, _ = _read_credentials(proc)
        _wait_for(f"{base}/openapi.json", proc)
        with httpx.Client(base_url=base, timeout=30.0, follow_redirects=True) as http:
            member = members["dso"]
            r = http.post(
                "/ui/login",
                data={"client_id": member["client_id"], "client_secret": member["secret"]},
            )
            assert r.status_code == 200 and "data-live" in r.text  # followed to the page
            with httpx.Client(base_url=f"{base}/api/v1", timeout=30.0) as api:
                operator = _login(api, members["operator"])
            market = http.get("/api/v1/markets", headers=operator).json()[0]["id"]
            interval = http.get(f"/api/v1/markets/{market}/intervals", headers=operator).json()[0][
                "id"
            ]
            with http.stream("GET", "/ui/events?after=0") as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                lines = stream.iter_lines()
                # reconnecting from seq 0: everything the demo's seeding wrote
                data = next(line for line in lines if line.startswith("data: "))
                assert '"accounts"' in data and '"market"' in data
                r = http.post(f"/api/v1/intervals/{interval}/advance?force=true", headers=operator)
                assert r.status_code == 200, r.text
                data = next(line for line in lines if line.startswith("data: "))
                assert data.endswith('"topics":["audit","market"]}'), data
    finally:
        _stop(proc)
