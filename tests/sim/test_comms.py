"""Imperfect communication: what the faults lose and what they cost (Hu et al. 2019, §3.5)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from transactive.errors import ValidationError
from transactive.report.html import read_results
from transactive.sim import (
    RunResult,
    SimulationResult,
    parse_scenario,
    simulate,
    summary,
    write_results,
)
from transactive.sim.results import FAULT_COST_KPIS

SMALL = Path(__file__).parent / "small.toml"
LOSS = 0.1


def _text(comms: str | None) -> str:
    """The small scenario over one hour at a binding capacity, with a ``comms`` section (or none).

    The capacity binds (the baseline exceeds 180 kW), so the price moves and a stale bid or price
    changes what the devices draw; at a constant price a lost price would change nothing.
    """
    text = SMALL.read_text(encoding="utf-8").replace("horizon_h = 2", "horizon_h = 1")
    text = text.replace("capacity_kw = 250.0", "capacity_kw = 180.0")
    return text if comms is None else text + f"\n[comms]\n{comms}\n"


@pytest.fixture(scope="module")
def faulty() -> SimulationResult:
    return simulate(parse_scenario(_text(f"loss_probability = {LOSS}")))


@pytest.fixture(scope="module")
def clean() -> SimulationResult:
    return simulate(parse_scenario(_text(None)))


def test_the_no_faults_run_is_the_scenario_without_faults_bit_for_bit(
    faulty: SimulationResult, clean: SimulationResult
) -> None:
    ref, off = faulty.no_faults, clean.runs["transactive"]
    assert ref is not None and ref.name == "transactive_no_faults"
    assert clean.no_faults is None  # no faults: no third run
    assert ref.series.keys() == off.series.keys()
    for key, values in off.series.items():
        np.testing.assert_array_equal(ref.series[key], values, err_msg=key)
    for key, values in off.devices.items():
        np.testing.assert_array_equal(ref.devices[key], values, err_msg=key)
    assert ref.kpis == off.kpis
    assert ref.messages == off.messages
    # the faults changed the transactive run
    assert not np.array_equal(
        faulty.runs["transactive"].series["feeder_load_kw"], off.series["feeder_load_kw"]
    )


def test_the_comms_block_counts_losses_at_the_loss_probability(faulty: SimulationResult) -> None:
    block = summary(faulty)["comms"]
    tr = faulty.runs["transactive"]
    assert block["loss_probability"] == LOSS and block["delay_intervals"] == 0
    # 12 intervals, 48 HVAC + 32 water heaters + 16 EVs + 30 PV + 15 batteries bid in the auction
    assert block["messages"]["bids"]["sent"] == 12 * 141
    assert block["messages"]["prices"]["sent"] == 12 * 141
    for kind in ("bids", "prices"):
        sent, lost = block["messages"][kind]["sent"], block["messages"][kind]["lost"]
        # binomial(sent, LOSS): within 4 standard deviations of its mean
        sigma = math.sqrt(sent * LOSS * (1 - LOSS))
        assert abs(lost - LOSS * sent) < 4 * sigma, (kind, lost, sent)
    lost_total = block["messages"]["bids"]["lost"] + block["messages"]["prices"]["lost"]
    assert tr.kpis["messages_lost"] == lost_total
    assert faulty.no_faults is not None
    assert faulty.no_faults.messages["bids"]["lost"] == 0
    assert faulty.no_faults.kpis["messages_lost"] == 0


def test_the_cost_of_faults_is_the_kpi_difference(faulty: SimulationResult) -> None:
    block = summary(faulty)["comms"]
    tr, ref = faulty.runs["transactive"].kpis, faulty.no_faults
    assert ref is not None and block["no_faults_run"] == "transactive_no_faults"
    diff = block["cost_of_faults"]
    assert set(diff) == set(FAULT_COST_KPIS)
    for k in FAULT_COST_KPIS:
        a, b = tr[k], ref.kpis[k]
        if a is None or b is None:
            assert diff[k] is None
        else:
            assert diff[k] == pytest.approx(a - b, abs=1e-12)
    assert diff["cost"] != 0.0  # the lost messages moved the bills


def test_without_faults_the_block_says_nothing_was_lost(clean: SimulationResult) -> None:
    block = summary(clean)["comms"]
    assert block["messages"]["bids"] == {"sent": 12 * 141, "lost": 0, "late": 0}
    assert block["bids_late"] == 0
    assert block["no_faults_run"] is None and block["cost_of_faults"] is None


def test_the_results_directory_still_holds_two_runs(
    faulty: SimulationResult, tmp_path: Path
) -> None:
    write_results(faulty, tmp_path)
    data = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert set(data["runs"]) == {"baseline", "transactive"}
    assert (
        data["comms"]["cost_of_faults"]["cost"]
        == summary(faulty)["comms"]["cost_of_faults"]["cost"]
    )
    read_results(tmp_path)  # the report reads it as it is


# ------------------------------------------------------------------------------- bid delay
LEAD_S = 30.0
SENT = 12 * 141  # 12 intervals of the auction's 141 devices


def _assert_same_run(a: RunResult, b: RunResult) -> None:
    """Two runs bit for bit: every series and every device's results."""
    assert a.series.keys() == b.series.keys()
    for key, values in b.series.items():
        np.testing.assert_array_equal(a.series[key], values, err_msg=key)
    for key, values in b.devices.items():
        np.testing.assert_array_equal(a.devices[key], values, err_msg=key)


def _delayed(delay_s: float, distribution: str = "fixed") -> SimulationResult:
    return simulate(
        parse_scenario(
            _text(
                f"bid_delay_s = {delay_s}\nbid_lead_s = {LEAD_S}\n"
                f'bid_delay_distribution = "{distribution}"'
            )
        )
    )


def test_a_bid_delay_within_the_lead_changes_nothing(clean: SimulationResult) -> None:
    sim = _delayed(LEAD_S - 10.0)
    _assert_same_run(sim.runs["transactive"], clean.runs["transactive"])
    assert sim.runs["transactive"].kpis == clean.runs["transactive"].kpis
    block = summary(sim)["comms"]
    assert block["messages"]["bids"] == {"sent": SENT, "lost": 0, "late": 0}
    assert block["bids_late"] == 0 and block["bid_lead_s"] == LEAD_S
    # the delay is a fault, so the run without faults is made; it is the same run
    assert sim.no_faults is not None
    assert all(v == 0 for v in block["cost_of_faults"].values() if v is not None)


def test_a_bid_delay_beyond_the_lead_is_the_run_with_every_bid_lost(
    clean: SimulationResult,
) -> None:
    late = _delayed(LEAD_S + 1.0)
    # a total outage: every bid (and price) lost, which a lost bid makes moot
    lost = simulate(parse_scenario(_text("loss_probability = 1.0")))
    _assert_same_run(late.runs["transactive"], lost.runs["transactive"])
    block = summary(late)["comms"]
    assert block["messages"]["bids"] == {"sent": SENT, "lost": 0, "late": SENT}
    assert block["bids_late"] == SENT
    assert late.runs["transactive"].kpis["messages_lost"] == SENT  # late bids missed the market
    assert lost.runs["transactive"].messages["bids"] == {"sent": SENT, "lost": SENT, "late": 0}
    # and it is not the run whose bids arrive: the devices sat at their last metered power
    assert not np.array_equal(
        late.runs["transactive"].series["feeder_load_kw"],
        clean.runs["transactive"].series["feeder_load_kw"],
    )
    assert late.no_faults is not None
    _assert_same_run(late.no_faults, clean.runs["transactive"])


def test_exponential_bid_delays_are_late_at_the_exponential_tail() -> None:
    mean_s = LEAD_S
    sim = _delayed(mean_s, "exponential")
    again = _delayed(mean_s, "exponential")
    _assert_same_run(sim.runs["transactive"], again.runs["transactive"])  # seeded
    late = summary(sim)["comms"]["bids_late"]
    p = math.exp(-LEAD_S / mean_s)  # P(delay > lead) for an exponential of that mean
    sigma = math.sqrt(SENT * p * (1 - p))
    assert abs(late - p * SENT) < 4 * sigma, (late, p * SENT)
    assert sim.runs["transactive"].messages["bids"]["late"] == late


def test_late_and_lost_bids_are_counted_apart() -> None:
    sim = simulate(
        parse_scenario(
            _text(
                f"loss_probability = {LOSS}\nbid_delay_s = {LEAD_S}\nbid_lead_s = {LEAD_S}\n"
                'bid_delay_distribution = "exponential"'
            )
        )
    )
    bids = sim.runs["transactive"].messages["bids"]
    assert bids["lost"] > 0 and bids["late"] > 0
    # a lost bid cannot also be late: about e^-1 of the delivered ones are
    p = math.exp(-1.0)
    delivered = SENT - bids["lost"]
    assert abs(bids["late"] - p * delivered) < 4 * math.sqrt(delivered * p * (1 - p))
    prices = sim.runs["transactive"].messages["prices"]
    assert (
        sim.runs["transactive"].kpis["messages_lost"]
        == bids["lost"] + bids["late"] + (prices["lost"])
    )


@pytest.mark.parametrize(
    ("comms", "field", "reason"),
    [
        ("bid_delay_s = 5.0", "comms.bid_lead_s", "needs the lead"),
        (
            "bid_delay_s = -1.0\nbid_lead_s = 10.0",
            "comms.bid_delay_s",
            "greater than or equal to 0",
        ),
        ("bid_delay_s = 5.0\nbid_lead_s = 0.0", "comms.bid_lead_s", "greater than 0"),
        (
            'bid_delay_s = 5.0\nbid_lead_s = 10.0\nbid_delay_distribution = "normal"',
            "comms.bid_delay_distribution",
            "fixed",
        ),
        ("bid_delay_s = 5.0\nbid_lead_s = 400.0", "comms.bid_lead_s", "exceeds the market"),
        ("loss_probability = 1.01", "comms.loss_probability", "less than or equal to 1"),
    ],
)
def test_bad_comms_are_named_with_their_path(comms: str, field: str, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_scenario(_text(comms), source="small.toml")
    named = {p.field: p.reason for p in info.value.problems}
    assert field in named, named
    assert reason in named[field], named
