"""``transactive run brooklyn``: the P2P street on real ledger nodes, on a short day around noon.

The runs need the NATS JetStream server at 127.0.0.1:4222 (as ``tests/ledger`` do): a missing
server is an error of the fixture, not a skip. Each run has its own ledger id, so its own stream,
deleted after the run.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from transactive.cli import app
from transactive.errors import ValidationError
from transactive.ledger.contract import ACCOUNT_GRID, ACCOUNT_NETWORK, ACCOUNT_PLATFORM
from transactive.report.street import read_street_results, write_street_report
from transactive.sim import BUILTIN_SCENARIOS, builtin_scenarios
from transactive.sim.p2p_street import (
    StreetResult,
    is_street_scenario,
    load_street,
    parse_street,
    run_street,
    street_summary,
    write_street_results,
)

#: Six quarter-hours from 11:00, when the PV homes have a surplus and the others a demand.
FIRST_INTERVAL = 44
N_INTERVALS = 6


def _builtin_text() -> str:
    return (resources.files("transactive.sim") / "scenarios" / "brooklyn.toml").read_text("utf-8")


def _short_text(first: int = FIRST_INTERVAL, n: int = N_INTERVALS) -> str:
    text = _builtin_text()
    text = re.sub(r"(?m)^first_interval = \d+$", f"first_interval = {first}", text)
    return re.sub(r"(?m)^n_intervals = \d+$", f"n_intervals = {n}", text)


@pytest.fixture(scope="module")
def street(tmp_path_factory: pytest.TempPathFactory) -> tuple[StreetResult, Path]:
    sc = parse_street(_short_text(), source="short brooklyn")
    out = tmp_path_factory.mktemp("brooklyn")
    res = run_street(sc, out / "ledger")
    write_street_results(res, out)
    write_street_report(out)
    return res, out


def _settle_effects(res: StreetResult) -> dict[int, dict[str, Any]]:
    return {
        start: next(t for t in outcome["txs"] if t["kind"] == "interval.settle")["effects"]
        for start, outcome in res.settlements.items()
    }


# ---------------------------------------------------------------------------------- the run


def test_every_interval_is_settled_with_trades(street: tuple[StreetResult, Path]) -> None:
    res, _ = street
    assert sorted(res.settlements) == res.interval_start_s.tolist()
    assert len(res.trades) > 0
    sellers = {t["seller"] for t in res.trades}
    buyers = {t["buyer"] for t in res.trades}
    pv_homes = {h.id for h in res.scenario.street.homes if h.pv_kwp > 0}
    assert sellers <= pv_homes  # only PV homes have a surplus at noon
    assert buyers.isdisjoint(pv_homes)
    assert len(sellers) > 1  # the round robin: not always the same home first


def test_energy_balance_traded_plus_grid_is_metered(street: tuple[StreetResult, Path]) -> None:
    res, _ = street
    lot = res.scenario.ledger.lot_kwh
    effects = _settle_effects(res)
    for k, start in enumerate(res.interval_start_s.tolist()):
        traded: dict[str, float] = defaultdict(float)
        for t in res.trades:
            if t["interval_start_s"] == start:
                traded[t["buyer"]] += t["energy_kwh"]
                traded[t["seller"]] -= t["energy_kwh"]
        energy = effects[start]["energy"]
        for h, home in enumerate(res.home_ids):
            e = energy[home]
            # metered is the profile (in whole lots), traded + grid = metered
            assert e["metered_kwh"] == pytest.approx(res.metered_kwh[k, h], abs=lot / 10)
            assert e["contracted_kwh"] == pytest.approx(traded[home], abs=lot / 10)
            assert e["contracted_kwh"] + e["deviation_kwh"] == pytest.approx(
                e["metered_kwh"], abs=lot / 10
            )
        # the metered energy is the street's load minus its PV
        hours = 0.25
        np.testing.assert_allclose(
            res.metered_kwh[k], (res.load_kw[k] - res.pv_kw[k]) * hours, atol=lot
        )
        assert effects[start]["grid_kwh"] == pytest.approx(
            float(res.metered_kwh[k].sum()), abs=lot / 10
        )


def test_money_is_conserved_and_fees_reach_their_accounts(
    street: tuple[StreetResult, Path],
) -> None:
    res, _ = street
    assert sum(res.balances_minor.values()) == 0  # double entry
    by_reason: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for effects in _settle_effects(res).values():
        for p in effects["postings"]:
            by_reason[p["reason"]][p["debit"]] -= p["amount_minor"]
            by_reason[p["reason"]][p["credit"]] += p["amount_minor"]
    energy = by_reason["energy"]
    assert all(a.startswith("member:") for a in energy)
    assert sum(energy.values()) == 0  # the P2P payments sum to zero across homes
    assert energy  # and there were some
    assert by_reason["platform_fee"][ACCOUNT_PLATFORM] == res.balances_minor[ACCOUNT_PLATFORM] > 0
    assert by_reason["network_fee"][ACCOUNT_NETWORK] == res.balances_minor[ACCOUNT_NETWORK] > 0
    grid = by_reason["grid_import"][ACCOUNT_GRID] + by_reason["grid_export"][ACCOUNT_GRID]
    assert grid == res.balances_minor[ACCOUNT_GRID]
    minor = res.scenario.ledger.minor_units
    fees = res.scenario.fees
    traded = sum(t["energy_kwh"] for t in res.trades)
    # each trade's fee rounded once: within half a minor unit per posting
    assert res.balances_minor[ACCOUNT_NETWORK] / minor == pytest.approx(
        traded * fees.network_fee_per_kwh, abs=len(res.trades) / minor
    )
    assert res.balances_minor[ACCOUNT_PLATFORM] / minor == pytest.approx(
        2 * traded * fees.platform_fee_per_kwh, abs=2 * len(res.trades) / minor
    )


def test_bills_against_the_baseline(street: tuple[StreetResult, Path]) -> None:
    res, _ = street
    traders = {t["buyer"] for t in res.trades} | {t["seller"] for t in res.trades}
    for home in res.homes:
        if home.home_id in traders:
            # price + fees below import for a buyer, price - fee above feed-in for a seller
            assert home.bill < home.baseline_bill, home
        else:
            assert home.bill == home.baseline_bill, home  # the same postings, the same rounding
    s = street_summary(res)
    street_saving = s["baseline_street_bill"] - s["street_bill"]
    t = res.scenario.tariff
    spread = t.import_price_per_kwh - t.feed_in_price_per_kwh
    fees = res.scenario.fees
    per_kwh = spread - 2 * fees.platform_fee_per_kwh - fees.network_fee_per_kwh
    assert street_saving == pytest.approx(s["traded_kwh"] * per_kwh, abs=0.01)


def test_every_node_holds_the_same_verified_ledger(street: tuple[StreetResult, Path]) -> None:
    res, _ = street
    assert set(res.heads) == set(res.verify) == set(res.home_ids)
    assert res.heads_equal and res.states_equal
    assert len({h["head"] for h in res.heads.values()}) == 1
    for member, report in res.verify.items():
        assert report["ok"], (member, report["problems"])
        assert report["head_seq"] == res.heads[member]["seq"] == res.blocks
        assert report["head_hash"] == res.heads[member]["head"]
        assert report["ledger"] == res.ledger_id


def test_pv_used_on_the_street_is_at_least_the_baseline(street: tuple[StreetResult, Path]) -> None:
    res, _ = street
    s = street_summary(res)
    assert s["pv_used_on_street_pct"] >= s["baseline_pv_used_on_street_pct"]
    assert s["pv_used_on_street_pct"] > s["baseline_pv_used_on_street_pct"]  # trades happened
    assert s["pv_exported_upstream_kwh"] < s["baseline_pv_exported_kwh"]
    # what the trades contract locally is what physically stays on the street (the lots aside)
    assert s["pv_used_on_street_pct"] <= s["pv_used_on_street_physical_pct"] + 0.5


def test_trades_are_charged_the_networks_fees_and_losses(street: tuple[StreetResult, Path]) -> None:
    res, _ = street
    assert all("ac_loss_kwh" in t for t in res.trades)
    s = street_summary(res)
    assert s["ac_trade_loss_kwh"] > 0
    assert s["ac_network_charges"] == pytest.approx(
        s["ac_trade_loss_kwh"] * res.scenario.network.loss_price_per_kwh, rel=1e-9
    )  # no use-of-system charge in the scenario: the losses at the loss price
    assert s["ac_trade_loss_kwh"] < 0.05 * s["traded_kwh"]  # short LV lines
    for iv in res.network:
        assert iv.secure and not iv.refused, iv


def test_the_results_directory_and_report(street: tuple[StreetResult, Path]) -> None:
    res, out = street
    data = read_street_results(out)
    assert len(data["trades.csv"]) == len(res.trades)
    assert len(data["intervals.csv"]) == N_INTERVALS
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ledger"]["all_verified"] and summary["ledger"]["heads_equal"]
    assert tomllib.loads((out / "scenario.toml").read_text())["street"]["n_intervals"] == 6
    page = (out / "report.html").read_text()
    assert "Ledger verification" in page and "ledger verify" in page
    for member in res.home_ids:
        assert f"<td class='l'>{member}</td>" in page
    assert page.count("data:image/png;base64,") == 4
    assert "http://" not in page and "https://" not in page  # loads nothing
    assert not list((out / "ledger").glob("*.key"))  # the homes' keys are not left behind
    assert sorted(p.stem for p in (out / "ledger").glob("*.db")) == sorted(res.home_ids)


def test_a_missing_results_file_is_named(street: tuple[StreetResult, Path], tmp_path: Path) -> None:
    _, out = street
    for name in ("summary.json", "trades.csv"):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    with pytest.raises(ValidationError, match=r"verify\.json: is missing"):
        read_street_results(tmp_path)


# ---------------------------------------------------------------------------------- the face


def test_transactive_run_a_street_file(tmp_path: Path) -> None:
    scenario = tmp_path / "street.toml"
    scenario.write_text(_short_text(FIRST_INTERVAL, 2))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(scenario), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "heads equal True" in result.output and "verified True" in result.output
    assert (out / "report.html").is_file()
    assert json.loads((out / "summary.json").read_text())["intervals"] == 2


def test_brooklyn_is_built_in() -> None:
    assert "brooklyn" in BUILTIN_SCENARIOS
    assert "ledger node" in builtin_scenarios()["brooklyn"]
    assert is_street_scenario("brooklyn") and not is_street_scenario("default")
    sc = load_street("brooklyn")
    assert sc.street.n_intervals == 96 and len(sc.street.homes) == 10
    assert sum(h.pv_kwp > 0 for h in sc.street.homes) == 5


def _refused(text: str) -> str:
    with pytest.raises(ValidationError) as info:
        parse_street(text, source="bad street")
    return str(info.value)


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("bus = 7,", "bus = 99,", "street.homes.0.bus"),
        ("bus = 10,", "bus = 42,", "street.homes.1.bus"),  # the MV side of the transformer
        ('load_profile = "H0-C", load_peak_kw = 3.5', 'load_profile = "X9"', "street.homes.2"),
        ('"H0-A", load_peak_kw = 5.0', '"H0-Z", load_peak_kw = 5.0', "street.homes.3.load_profile"),
        ('pv_profile = "PV6" }', 'pv_profile = "PV99" }', "street.homes.1.pv_profile"),
        (', pv_profile = "PV5" },\n    { id = "h02"', ' },\n    { id = "h02"', "pv_profile"),
        ("feed_in_price_per_kwh = 0.08", "feed_in_price_per_kwh = 0.5", "feed_in_price_per_kwh"),
        ("seller_share = 0.35", "seller_share = 1.5", "bidding.seller_share"),
        ("n_intervals = 96", "n_intervals = 97", "street.n_intervals"),
        ('grid = "1-LV-rural1--0-sw"', 'grid = "no-such-grid"', "street.grid"),
        ("lot_kwh = 0.001", "lot_kwh = 0.001\nlots = 1", "ledger.lots"),
        ('{ id = "h02", bus = 10', '{ id = "h01", bus = 10', "street.homes"),
    ],
)
def test_bad_scenario_input_is_refused_naming_the_field(old: str, new: str, field: str) -> None:
    text = _builtin_text()
    assert old in text
    message = _refused(text.replace(old, new, 1))
    assert field in message, message


def test_no_nats_server_is_a_clear_error(tmp_path: Path) -> None:
    text = _short_text(FIRST_INTERVAL, 2).replace("127.0.0.1:4222", "127.0.0.1:1")
    sc = parse_street(text)
    with pytest.raises(ValidationError, match=r"ledger\.nats_url: no NATS JetStream server"):
        run_street(sc, tmp_path)
    assert not list(tmp_path.iterdir())  # refused before anything was made


def test_the_run_command_refuses_live_and_bad_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", "brooklyn", "--live", "http://127.0.0.1:1"])
    assert result.exit_code == 1 and "--live" in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text(_builtin_text().replace("seller_share = 0.35", "seller_share = -1"))
    result = CliRunner().invoke(app, ["run", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "bidding.seller_share" in result.output
    assert not (tmp_path / "o").exists()


def test_a_trade_the_dso_refuses_is_reported(street: tuple[StreetResult, Path]) -> None:
    line_max_i_ka = 0.004  # 4 A lines: the street's trades overload them
    from transactive.network.feeders import load_feeder  # noqa: PLC0415
    from transactive.sim.p2p_street import _network  # noqa: PLC0415

    res, _ = street
    network = res.scenario.network.model_copy(update={"line_max_i_ka": line_max_i_ka})
    sc = res.scenario.model_copy(update={"network": network})
    feeder = load_feeder(sc.street.grid, line_max_i_ka=line_max_i_ka)
    lots = np.rint(res.metered_kwh / sc.ledger.lot_kwh).astype(np.int64)
    trades = [dict(t) for t in res.trades]
    checked = _network(sc, feeder, res.home_ids, res.interval_start_s, lots, trades)
    refused = [r for iv in checked for r in iv.refused]
    assert refused, [iv.reason for iv in checked]
    ids = {f"{t['buy_order_id']}/{t['sell_order_id']}/{t['sequence']}" for t in res.trades}
    for r in refused:
        assert r["trade_id"] in ids, r
        assert r["violation"].startswith("overload of line "), r
    assert any(not iv.secure or iv.refused for iv in checked)
