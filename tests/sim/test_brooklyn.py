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
from transactive.ledger.contract import ACCOUNT_GRID, ACCOUNT_NETWORK, ACCOUNT_PLATFORM, Ledger
from transactive.ledger.store import Store, payload_of
from transactive.ledger.verify import replay_records
from transactive.market.p2p.network import TradeSet, trade_charges
from transactive.network.feeders import load_feeder
from transactive.report.street import read_street_results, write_street_report
from transactive.settlement.network_fees import NetworkTariff
from transactive.sim import BUILTIN_SCENARIOS, builtin_scenarios
from transactive.sim.p2p_street import (
    DSO_ID,
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
#: 13 A lines: at 11:00-11:45 the DSO's check refuses some of every interval's trades, not all
#: (with the SimBench ratings it refuses none; at 10 A every trade).
RERATED_LINE_MAX_I_KA = 0.013


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
    # the DSO charged every interval: its charges replace the flat fee, credits included
    assert "network_fee" not in by_reason
    network = (
        by_reason["network_charge"][ACCOUNT_NETWORK] + by_reason["loss_charge"][ACCOUNT_NETWORK]
    )
    assert network == res.balances_minor[ACCOUNT_NETWORK] > 0
    members = {a: v for a, v in by_reason["loss_charge"].items() if a.startswith("member:")}
    assert min(members.values()) < 0 < max(members.values())  # sellers pay, buyers are credited
    grid = by_reason["grid_import"][ACCOUNT_GRID] + by_reason["grid_export"][ACCOUNT_GRID]
    assert grid == res.balances_minor[ACCOUNT_GRID]
    minor = res.scenario.ledger.minor_units
    fees = res.scenario.fees
    traded = sum(t["energy_kwh"] for t in res.trades)
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
    per_kwh = spread - 2 * res.scenario.fees.platform_fee_per_kwh
    network = s["network_charges"] + s["loss_charges"]  # the DSO's, as the ledger settled them
    assert network == res.balances_minor[ACCOUNT_NETWORK] / res.scenario.ledger.minor_units
    assert street_saving == pytest.approx(s["traded_kwh"] * per_kwh - network, abs=0.01)


def test_every_node_holds_the_same_verified_ledger(street: tuple[StreetResult, Path]) -> None:
    res, _ = street
    assert res.dso_id == DSO_ID
    assert set(res.heads) == set(res.verify) == {*res.home_ids, DSO_ID}  # the DSO's node too
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


def _ledger_of(store_path: Path) -> Ledger:
    """A node's copy of the ledger, replayed from its SQLite store (not from the run's result)."""
    store = Store.open(store_path, read_only=True)
    try:
        records = list(store.records())
    finally:
        store.close()
    genesis_raw, _outcome = payload_of(records[0])
    ledger, problems, _rows = replay_records(genesis_raw, records)
    assert ledger is not None and not problems, problems
    return ledger


def _check_charges_are_trade_charges(res: StreetResult, state: dict[str, Any]) -> int:
    """The ledger's network charges against ``trade_charges`` run here on the ledger's trades.

    Each entry within one minor unit of its leg's amount; each interval's entries sum to its
    total rounded once. Returns how many entries were checked.
    """
    sc = res.scenario
    minor = sc.ledger.minor_units
    feeder = load_feeder(sc.street.grid, line_max_i_ka=sc.network.line_max_i_ka)
    bus_of = {h.id: int(feeder.bus_node[h.bus]) for h in sc.street.homes}
    home_node = np.array([bus_of[m] for m in res.home_ids])
    net = sc.network
    tariff = NetworkTariff(
        loss_price_per_kwh=net.loss_price_per_kwh,
        import_per_kwh=net.import_use_of_system_per_kwh,
        export_per_kwh=net.export_use_of_system_per_kwh,
        currency=sc.tariff.currency,
    )
    checked = 0
    for k, start in enumerate(res.interval_start_s.tolist()):
        iv = state["intervals"][str(start)]
        standing = [t for t in iv["trades"] if t["trade_id"] not in iv["refused"]]
        posted = {(c["trade_id"], c["payer"]): c for c in iv["charges"]}
        assert len(posted) == len(iv["charges"]) == 2 * len(standing)
        if not standing:
            continue
        ts = TradeSet(
            np.array([t["trade_id"] for t in standing]),
            np.array([t["buyer"] for t in standing]),
            np.array([t["seller"] for t in standing]),
            np.array([t["energy_kwh"] for t in standing]),
            np.array([t["price_per_kwh"] for t in standing]),
            900,
        )
        p_node = np.bincount(home_node, weights=res.metered_kwh[k] * 4.0, minlength=feeder.n_nodes)
        legs = np.zeros(feeder.n_nodes)
        np.add.at(legs, [bus_of[b] for b in ts.buyer_ids], ts.power_kw)
        np.subtract.at(legs, [bus_of[s] for s in ts.seller_ids], ts.power_kw)
        charges = trade_charges(
            ts,
            bus_of,
            feeder,
            tariff=tariff,
            start_s=float(start % 86400),
            method=net.loss_method,
            background_p_kw=p_node - legs,  # the metered flows, refused trades' energy included
        )
        fee = charges.leg_fees.use_of_system_charge * minor
        loss = charges.leg_fees.loss_charge * minor
        for t, tid in enumerate(ts.trade_ids.tolist()):
            for leg, payer in ((2 * t, "buyer"), (2 * t + 1, "seller")):
                entry = posted[(tid, payer)]
                assert abs(entry["network_fee_minor"] - fee[leg]) <= 1.0, (entry, fee[leg])
                assert abs(entry["loss_charge_minor"] - loss[leg]) <= 1.0, (entry, loss[leg])
                checked += 1
        # the rounding does not add up across legs: the interval's totals are rounded once
        assert abs(sum(c["loss_charge_minor"] for c in iv["charges"]) - loss.sum()) <= 0.5 + 1e-6
        assert abs(sum(c["network_fee_minor"] for c in iv["charges"]) - fee.sum()) <= 0.5 + 1e-6
    return checked


def test_the_ledger_holds_the_dsos_network_charges(street: tuple[StreetResult, Path]) -> None:
    res, out = street
    # read back from a home's store (its own replay of the ledger), not the run's figures
    state = _ledger_of(out / "ledger" / f"{res.home_ids[-1]}.db").summary()
    assert _check_charges_are_trade_charges(res, state) == 2 * len(res.trades) > 0
    entries = [c for iv in state["intervals"].values() for c in iv["charges"]]
    # on a street that exports at noon the buyers' legs relieve the feeder: credits on the ledger
    assert any(c["payer"] == "buyer" and c["loss_charge_minor"] < 0 for c in entries)
    assert any(c["payer"] == "seller" and c["loss_charge_minor"] > 0 for c in entries)
    minor = res.scenario.ledger.minor_units
    s = street_summary(res)
    assert s["loss_charges"] * minor == pytest.approx(sum(c["loss_charge_minor"] for c in entries))
    # use of system on the buyers' kWh only (the scenario's rates), whole minor units per leg
    assert all(c["network_fee_minor"] == 0 for c in entries if c["payer"] == "seller")
    assert s["network_charges"] == pytest.approx(
        s["traded_kwh"] * res.scenario.network.import_use_of_system_per_kwh,
        abs=len(res.network) / minor,
    )
    # the run's per-trade columns are the ledger's entries
    for t in res.trades:
        for payer in ("buyer", "seller"):
            (c,) = [c for c in entries if c["trade_id"] == t["trade_id"] and c["payer"] == payer]
            assert t[f"ledger_{payer}_loss_charge"] * minor == pytest.approx(
                c["loss_charge_minor"], abs=1e-9
            )
    # the ledger's settlement posted them, not the flat fee
    effects = _settle_effects(res)
    assert {e["network"] for e in effects.values()} == {"dso_charges"}
    assert all(e["reversed_trades"] == [] for e in effects.values())


def test_trades_are_charged_the_networks_fees_and_losses(street: tuple[StreetResult, Path]) -> None:
    res, _ = street
    assert all("ac_loss_kwh" in t for t in res.trades)
    s = street_summary(res)
    assert s["ac_trade_loss_kwh"] > 0
    net = res.scenario.network
    assert net.export_use_of_system_per_kwh == 0.0
    assert s["ac_network_charges"] == pytest.approx(
        s["ac_trade_loss_kwh"] * net.loss_price_per_kwh
        + s["traded_kwh"] * net.import_use_of_system_per_kwh,
        rel=1e-9,
    )  # the losses at the loss price and use of system on the buyers' kWh
    assert s["ac_trade_loss_kwh"] < 0.05 * s["traded_kwh"]  # short LV lines
    # what the ledger holds is the computed total rounded once per interval
    minor = res.scenario.ledger.minor_units
    for iv in res.network:
        assert iv.secure and not iv.refused, iv
        posted = iv.loss_charge_minor + iv.network_fee_minor
        assert abs(posted - iv.ac_charge * minor) <= 1.0 + 1e-6, iv  # each part rounded once
    assert s["refused_trades"] == 0 and not res.refused_trades


def test_the_results_directory_and_report(street: tuple[StreetResult, Path]) -> None:
    res, out = street
    data = read_street_results(out)
    assert len(data["trades.csv"]) == len(res.trades)
    assert not data["trades.csv"]["refused"].any()
    assert len(data["intervals.csv"]) == N_INTERVALS
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ledger"]["all_verified"] and summary["ledger"]["heads_equal"]
    assert summary["ledger"]["dso"] == DSO_ID and DSO_ID in summary["ledger"]["nodes"]
    assert tomllib.loads((out / "scenario.toml").read_text())["street"]["n_intervals"] == 6
    page = (out / "report.html").read_text()
    assert "Ledger verification" in page and "ledger verify" in page
    assert "network charges (ledger)" in page and "<code>network.charges</code>" in page
    assert "beside" not in page  # the charges are on the ledger, not beside it
    for member in (*res.home_ids, DSO_ID):
        assert f"<td class='l'>{member}</td>" in page
    assert page.count("data:image/png;base64,") == 4
    assert "http://" not in page and "https://" not in page  # loads nothing
    assert not list((out / "ledger").glob("*.key"))  # the nodes' keys are not left behind
    stores = sorted(p.stem for p in (out / "ledger").glob("*.db"))
    assert stores == sorted((*res.home_ids, DSO_ID))


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


@pytest.fixture(scope="module")
def rerated(tmp_path_factory: pytest.TempPathFactory) -> tuple[StreetResult, Path]:
    """Three quarter-hours on re-rated lines, with use-of-system rates (an export credit)."""
    text = _short_text(FIRST_INTERVAL, 3).replace(
        "import_use_of_system_per_kwh = 0.03\nexport_use_of_system_per_kwh = 0.0\n",
        "import_use_of_system_per_kwh = 0.02\nexport_use_of_system_per_kwh = -0.005\n"
        f"line_max_i_ka = {RERATED_LINE_MAX_I_KA}\n",
    )
    sc = parse_street(text, source="re-rated brooklyn")
    assert sc.network.line_max_i_ka == RERATED_LINE_MAX_I_KA
    out = tmp_path_factory.mktemp("rerated")
    res = run_street(sc, out / "ledger")
    write_street_results(res, out)
    write_street_report(out)
    return res, out


def test_trades_the_dso_refuses_are_reversed_on_the_ledger(
    rerated: tuple[StreetResult, Path],
) -> None:
    res, out = rerated
    state = _ledger_of(out / "ledger" / f"{res.home_ids[0]}.db").summary()
    refused = {tid for iv in state["intervals"].values() for tid in iv["refused"]}
    assert res.refused_trades and res.trades  # some refused, some stand
    assert {t["trade_id"] for t in res.refused_trades} == refused
    assert refused.isdisjoint(t["trade_id"] for t in res.trades)
    every = [t["trade_id"] for iv in state["intervals"].values() for t in iv["trades"]]
    assert sorted(every) == sorted(t["trade_id"] for t in res.trades + res.refused_trades)
    effects = _settle_effects(res)
    for start, iv in state["intervals"].items():
        # reversed at settlement, each with the DSO's violation on the ledger
        assert effects[int(start)]["reversed_trades"] == sorted(iv["refused"])
        for violation in iv["refused"].values():
            assert violation.startswith("overload of line "), violation
        assert not {c["trade_id"] for c in iv["charges"]} & set(iv["refused"])
    # the refused trades are what the DSO's check refused, posted as it found them
    columns = ("trade_id", "buyer", "seller", "energy_kwh", "price_per_kwh", "violation")
    checked = sorted((r for iv in res.network for r in iv.refused), key=lambda r: r["trade_id"])
    on_ledger = sorted(res.refused_trades, key=lambda t: t["trade_id"])
    assert checked == [{k: t[k] for k in columns} for t in on_ledger]
    # the standing trades are charged as trade_charges gives, fees and credits included
    assert _check_charges_are_trade_charges(res, state) == 2 * len(res.trades)
    entries = [c for iv in state["intervals"].values() for c in iv["charges"]]
    assert any(c["payer"] == "buyer" and c["network_fee_minor"] > 0 for c in entries)
    assert any(c["payer"] == "seller" and c["network_fee_minor"] < 0 for c in entries)
    # every node agrees and verifies
    assert res.heads_equal and res.states_equal and res.all_verified
    assert set(res.verify) == {*res.home_ids, DSO_ID}


def test_homes_energy_and_bills_exclude_the_refused_trades(
    rerated: tuple[StreetResult, Path],
) -> None:
    res, _ = rerated
    sc = res.scenario
    minor, per_kwh = sc.ledger.minor_units, round(1 / sc.ledger.lot_kwh)
    effects = _settle_effects(res)
    for home in res.homes:
        m = home.home_id
        standing = [t for t in res.trades if m in (t["buyer"], t["seller"])]
        gone = [t for t in res.refused_trades if m in (t["buyer"], t["seller"])]
        assert home.bought_kwh == pytest.approx(
            sum(t["energy_kwh"] for t in standing if t["buyer"] == m), abs=1e-9
        )
        assert home.sold_kwh == pytest.approx(
            sum(t["energy_kwh"] for t in standing if t["seller"] == m), abs=1e-9
        )
        assert home.refused_kwh == pytest.approx(sum(t["energy_kwh"] for t in gone), abs=1e-9)
        # the energy payments and the platform fees are the standing trades' alone
        energy = sum(
            (1 if t["buyer"] == m else -1)
            * round(round(t["energy_kwh"] * per_kwh) * t["price_per_kwh"] * minor / per_kwh)
            for t in standing
        )
        assert home.energy_paid == pytest.approx(energy / minor, abs=1e-12)
        fee = sum(
            round(round(t["energy_kwh"] * per_kwh) * sc.fees.platform_fee_per_kwh * minor / per_kwh)
            for t in standing
        )
        assert home.platform_fees == pytest.approx(fee / minor, abs=1e-12)
        # and its contracted position: what it did not trade, or was refused, is the grid's
        for start, e in effects.items():
            mine = e["energy"][m]
            contracted = sum(
                t["energy_kwh"] * (1 if t["buyer"] == m else -1)
                for t in standing
                if t["interval_start_s"] == start
            )
            assert mine["contracted_kwh"] == pytest.approx(contracted, abs=1e-9)
            assert mine["contracted_kwh"] + mine["deviation_kwh"] == pytest.approx(
                mine["metered_kwh"], abs=1e-9
            )
    s = street_summary(res)
    assert s["trades"] == len(res.trades) and s["refused_trades"] == len(res.refused_trades)
    assert s["traded_kwh"] == pytest.approx(sum(t["energy_kwh"] for t in res.trades), abs=1e-9)
    assert sum(h.refused_kwh for h in res.homes) == pytest.approx(2 * s["refused_kwh"], abs=1e-9)
    # the homes that only had refused trades pay exactly their baseline
    for home in res.homes:
        if home.bought_kwh == home.sold_kwh == 0.0:
            assert home.bill == home.baseline_bill, home


def test_the_report_shows_the_refusals_as_ledger_facts(
    rerated: tuple[StreetResult, Path],
) -> None:
    res, out = rerated
    data = read_street_results(out)
    trades = data["trades.csv"]
    assert len(trades) == len(res.trades) + len(res.refused_trades)
    assert int(trades["refused"].sum()) == len(res.refused_trades)
    page = (out / "report.html").read_text()
    assert f"refused {len(res.refused_trades)} trades" in page
    assert "<code>trades.refused</code>" in page and "the ledger reversed them" in page
    for t in res.refused_trades:
        assert f"<td class='l'>{t['trade_id']}</td>" in page
    assert page.count("<td class='l'>reversed</td>") == len(res.refused_trades)
