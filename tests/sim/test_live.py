"""The simulator's devices against a live ``transactive serve`` (issue 13), over real HTTP.

One server process (a free port, a SQLite file in a temporary folder) for the module; the
small scenario below (four homes, six 5-minute intervals, a double auction without the DSO's
check, a capacity that rations two of them) runs in-process and live, and both runs' clearings,
metered energy, series and KPIs must agree; the service must have settled every interval with
accounts summing to zero and each home's account holding its bill.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from transactive.cli import app
from transactive.errors import ValidationError
from transactive.sim import SimulationResult, parse_scenario, simulate
from transactive.sim.engine import InProcessMarket, MarketAccess, MarketAnswer, MarketRequest
from transactive.sim.live import LiveMarket, LiveService, LiveServiceError, check_live

SCENARIO = """
name = "live"
description = "test: four homes against the live service"
start = 2021-07-15T17:00:00-05:00
horizon_h = 0.5
market_interval_s = 300
physics_step_s = 60

[feeder]
name = "case33bw"
scale = 0.0

[population]
seed = 3

[population.hvac]
count = 4
participation = 0.75

[population.water_heater]
count = 3
participation = 1.0

[population.ev]
count = 2
participation = 1.0
options = { arrival_mean_h = 0.1 }

[population.pv]
count = 2

[population.battery]
count = 2

[population.base_load]
count = 4
participation = 0.0

[mechanism]
kind = "double_auction"
dso_check = false

[supply]
price_per_kwh = 0.08
capacity_kw = 7.0
"""
SUPPLY_PRICE = 0.08
CREDENTIALS = re.compile(r"client_id=(?P<client_id>\S+)\s+client_secret=(?P<secret>\S+)")
runner = CliRunner()


@dataclass(frozen=True)
class Server:
    url: str
    operator_id: str
    operator_secret: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``transactive serve`` on an empty SQLite file: its first operator's credentials."""
    port = _free_port()
    folder = tmp_path_factory.mktemp("live")
    db = folder / "platform.db"
    log = (folder / "serve.log").open("w")  # the server's log (a pipe nobody reads would fill)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("TRANSACTIVE_DATABASE_URL", None)
    exe = str(Path(sys.executable).with_name("transactive"))
    proc = subprocess.Popen(
        [exe, "serve", "--port", str(port), "--database-url", f"sqlite:///{db}"],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        found = None
        for line in proc.stdout:
            found = found or CREDENTIALS.search(line)
            if line.startswith("API: "):
                break
        assert found is not None, (folder / "serve.log").read_text()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/docs", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not answer"
            assert proc.poll() is None, "the server exited"
            time.sleep(0.2)
        yield Server(url, found["client_id"], found["secret"])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        log.close()
        print((folder / "serve.log").read_text()[-5000:])  # shown with a failure


class Recording:
    """A market access that keeps every request, answer and metered energy it passes on."""

    def __init__(self, inner: MarketAccess) -> None:
        self.inner = inner
        self.requests: list[MarketRequest] = []
        self.answers: list[MarketAnswer] = []
        self.energy_kwh: list[np.ndarray[Any, Any]] = []

    def clear(self, request: MarketRequest) -> MarketAnswer:
        answer = self.inner.clear(request)
        self.requests.append(request)
        self.answers.append(answer)
        return answer

    def metered(self, t: int, energy_kwh: np.ndarray[Any, Any]) -> None:
        self.energy_kwh.append(np.array(energy_kwh))
        self.inner.metered(t, energy_kwh)


@dataclass
class Runs:
    in_process: SimulationResult
    live: SimulationResult
    local: Recording
    remote: Recording
    market: LiveMarket
    service: LiveService


@pytest.fixture(scope="module")
def runs(server: Server) -> Iterator[Runs]:
    sc = parse_scenario(SCENARIO)
    recorded: dict[str, Recording] = {}

    def in_process(name: str, scenario: Any, feeder: Any) -> Recording:
        # without the DSO's check the in-process market uses only the feeder's node count
        n = feeder.n_nodes
        zeros = np.zeros(n)
        inner = InProcessMarket(
            scenario, feeder, None, limits=None, background_p_kw=zeros, background_q_kvar=zeros
        )
        recorded["local"] = Recording(inner)
        return recorded["local"]

    local = simulate(sc, market_access=in_process)
    with LiveService(
        server.url, operator_id=server.operator_id, operator_secret=server.operator_secret
    ) as service:

        def live(name: str, scenario: Any, feeder: Any) -> Recording:
            recorded["remote"] = Recording(service(name, scenario, feeder))
            return recorded["remote"]

        remote = simulate(sc, market_access=live)
        yield Runs(
            local,
            remote,
            recorded["local"],
            recorded["remote"],
            service.markets["transactive"],
            service,
        )


def _check_the_recorded_in_process_market_is_the_plain_run(runs: Runs) -> None:
    # the comparison below stands on the recorded run: it is the default run, bit for bit
    plain = simulate(parse_scenario(SCENARIO))
    for name in ("baseline", "transactive"):
        for key, values in plain.runs[name].series.items():
            np.testing.assert_array_equal(values, runs.in_process.runs[name].series[key])


def _check_the_same_clearing_every_interval(runs: Runs) -> None:
    local, remote = runs.local, runs.remote
    n = parse_scenario(SCENARIO).n_intervals
    assert len(local.answers) == len(remote.answers) == n
    for t, (a, b) in enumerate(zip(local.answers, remote.answers, strict=True)):
        ra, rb = a.result, b.result
        assert rb.clearing_price == pytest.approx(ra.clearing_price, abs=1e-9), t
        assert rb.clearing_quantity_kw == pytest.approx(ra.clearing_quantity_kw, abs=1e-9), t
        assert rb.supply_kw == pytest.approx(ra.supply_kw, abs=1e-9), t
        np.testing.assert_allclose(rb.allocation_kw, ra.allocation_kw, rtol=0, atol=1e-9)
        np.testing.assert_allclose(rb.marginal_fill, ra.marginal_fill, rtol=0, atol=1e-9)
        np.testing.assert_allclose(b.node_price_per_kwh, a.node_price_per_kwh, rtol=0, atol=1e-9)
        np.testing.assert_allclose(
            remote.energy_kwh[t], local.energy_kwh[t], rtol=0, atol=1e-9, err_msg=str(t)
        )
    prices = [a.result.clearing_price for a in local.answers]
    # the capacity rations some intervals (a price above the substation's), not all
    assert max(prices) > SUPPLY_PRICE + 1e-6
    assert min(prices) == pytest.approx(SUPPLY_PRICE)
    # devices with a curve, and some rows whose award is inside a block (a partial fill)
    fills = np.concatenate([a.result.marginal_fill for a in local.answers])
    assert np.any((fills > 1e-9) & (fills < 1 - 1e-9))


def _check_the_same_kpis_and_series(runs: Runs) -> None:
    for name in ("baseline", "transactive"):
        a, b = runs.in_process.runs[name], runs.live.runs[name]
        assert a.kpis.keys() == b.kpis.keys()
        for key, value in a.kpis.items():
            if value is None:
                assert b.kpis[key] is None, key
            else:
                assert b.kpis[key] == pytest.approx(value, abs=1e-9), key
        for key, values in a.series.items():
            np.testing.assert_allclose(b.series[key], values, rtol=0, atol=1e-9, err_msg=key)
        for key in ("energy_kwh", "cost"):
            np.testing.assert_allclose(b.devices[key], a.devices[key], rtol=0, atol=1e-9)


def _check_every_interval_settled_and_the_accounts_sum_to_zero(runs: Runs) -> None:
    op = runs.service.operator
    market = runs.market
    intervals = op.call("GET", f"/markets/{market.market_id}/intervals")
    assert [i["id"] for i in intervals] == market.interval_ids
    assert {i["state"] for i in intervals} == {"settled"}
    accounts = op.call("GET", "/accounts")
    assert sum(a["balance_minor"] for a in accounts) == 0
    (clearing,) = [a for a in accounts if a["market_id"] == market.market_id]
    assert clearing["balance_minor"] == 0
    # the bids on the service are the devices' and the supply's, keyed by device and interval
    first = market.interval_ids[0]
    keys = {
        b["idempotency_key"] for b in op.call("GET", "/bids", params={"interval_id": str(first)})
    }
    assert keys == {f"{d}@{first}" for d in [*market.device_ids, "supply"]}


def _check_each_home_account_holds_its_bill(runs: Runs) -> None:
    market = runs.market
    devices = runs.live.runs["transactive"].devices
    cost = dict(zip(devices["device_id"].tolist(), devices["cost"].tolist(), strict=True))
    group = dict(zip(devices["device_id"].tolist(), devices["group"].tolist(), strict=True))
    n_int = len(market.interval_ids)
    accounts = runs.service.operator.call("GET", "/accounts")
    balances = {a["member_id"]: a["balance_minor"] for a in accounts if a["member_id"]}
    assert len(market.homes) >= 3
    for home, agent in market.homes.items():
        mine = [d for d, o in zip(market.device_ids, market.owners, strict=True) if o is agent]
        assert mine and all(group[d] == "participant" for d in mine)
        bill_minor = 100 * sum(cost[d] for d in mine)
        # each interval: the energy apportioned within one cent, the imbalance within half
        assert abs(balances[agent.member_id] - bill_minor) <= 1.5 * n_int, home
        # a home sees its own awards only
        awards = agent.call("GET", f"/intervals/{market.interval_ids[0]}/awards")
        assert {a["member_id"] for a in awards} == {agent.member_id}
    # the flat-billed devices (non-participants' blocks) are the retailer's contracts
    retail = [
        d for d, o in zip(market.device_ids, market.owners, strict=True) if o is market.retailer
    ]
    assert retail and all(group[d] == "non-participant" for d in retail)


def test_live_and_in_process_runs_agree_and_the_service_settles_them(runs: Runs) -> None:
    """One test over the one pair of runs, so that parallel workers do not both make them."""
    _check_the_recorded_in_process_market_is_the_plain_run(runs)
    _check_the_same_clearing_every_interval(runs)
    _check_the_same_kpis_and_series(runs)
    _check_every_interval_settled_and_the_accounts_sum_to_zero(runs)
    _check_each_home_account_holds_its_bill(runs)


def test_unsupported_scenarios_are_refused_with_every_reason() -> None:
    text = (
        SCENARIO.replace("dso_check = false", "dso_check = true\nprice_floor_per_kwh = -0.1")
        + "\n[comms]\nloss_probability = 0.1\n"
    )
    with pytest.raises(ValidationError) as err:
        check_live(parse_scenario(text))
    fields = {p.field for p in err.value.problems}
    assert fields == {"mechanism.dso_check", "mechanism.price_floor_per_kwh", "comms"}
    fixed = SCENARIO.replace('kind = "double_auction"', 'kind = "fixed"')
    with pytest.raises(ValidationError, match=r"mechanism\.kind"):
        check_live(parse_scenario(fixed))
    with pytest.raises(ValidationError) as err:
        LiveService("127.0.0.1:8000", operator_id="", operator_secret="x")
    assert {p.field for p in err.value.problems} == {"url", "operator_id"}


def test_a_service_that_is_not_there_is_named() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(LiveServiceError, match="could not be reached") as err:
        LiveService(url, operator_id="a", operator_secret="b")
    assert err.value.status is None


def test_cli_runs_live_with_credentials_from_the_environment(
    server: Server, tmp_path: Path
) -> None:
    path = tmp_path / "live.toml"
    path.write_text(SCENARIO.replace("horizon_h = 0.5", "horizon_h = 0.25"), encoding="utf-8")
    service = LiveService(
        server.url, operator_id=server.operator_id, operator_secret=server.operator_secret
    )
    before = len(service.operator.call("GET", "/markets"))
    other = service.operator.call("POST", "/members", json={"name": "a home", "role": "prosumer"})
    with pytest.raises(LiveServiceError, match="is a prosumer, not the platform operator"):
        LiveService(
            server.url, operator_id=other["client_id"], operator_secret=other["client_secret"]
        )
    env = {
        "TRANSACTIVE_OPERATOR_ID": server.operator_id,
        "TRANSACTIVE_OPERATOR_SECRET": server.operator_secret,
    }
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["run", str(path), "--live", server.url, "--out", str(out), "--quiet"], env=env
    )
    assert result.exit_code == 0, result.output
    assert (out / "summary.json").is_file()
    markets = service.operator.call("GET", "/markets")
    assert len(markets) == before + 1
    intervals = service.operator.call("GET", f"/markets/{markets[-1]['id']}/intervals")
    service.close()
    assert [i["state"] for i in intervals] == ["settled"] * 3
    # a refused scenario and bad credentials exit 1 with the reason
    bad = tmp_path / "dso.toml"
    bad.write_text(SCENARIO.replace("dso_check = false", "dso_check = true"), encoding="utf-8")
    result = runner.invoke(app, ["run", str(bad), "--live", server.url, "--quiet"], env=env)
    assert result.exit_code == 1
    assert "mechanism.dso_check" in result.output
    wrong = {**env, "TRANSACTIVE_OPERATOR_SECRET": "not-the-secret"}
    result = runner.invoke(
        app, ["run", str(path), "--live", server.url, "--out", str(out), "--quiet"], env=wrong
    )
    assert result.exit_code == 1
    assert "answered 401 to POST /token" in result.output
    result = runner.invoke(app, ["run", str(path), "--operator-id", "x", "--quiet"])
    assert result.exit_code == 1
    assert "go with --live" in result.output
