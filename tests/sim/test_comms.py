"""Imperfect communication: what the faults lose and what they cost (Hu et al. 2019, §3.5)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from transactive.report.html import read_results
from transactive.sim import SimulationResult, parse_scenario, simulate, summary, write_results
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
    assert block["messages"]["bids"] == {"sent": 12 * 141, "lost": 0}
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
