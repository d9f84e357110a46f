import numpy as np
import pytest

from transactive.errors import ValidationError
from transactive.network.feeders import load_feeder
from transactive.network.losses import allocate_losses
from transactive.settlement import NetworkFeeBill, NetworkTariff, network_fees

TARIFF = NetworkTariff(
    loss_price_per_kwh=0.10,
    import_per_kwh=0.04,
    export_per_kwh=0.01,
    fixed_charge=0.50,  # per meter per day
)


def test_hand_computed_bills():
    fees = network_fees(
        [4.0, -2.0],
        [100.0, -40.0],
        interval_s=900,
        tariff=TARIFF,
        n_meters=[2, 1],
        users=["A", "B"],
        payee="DSO wires",
    )
    a, b = fees.bill(0), fees.bill(1)
    assert isinstance(a, NetworkFeeBill)
    # A: 4 kW of losses for 1/4 h at 0.10, 25 kWh imported at 0.04, 2 meters x 0.50/day x 1/96
    assert a.loss_kwh == pytest.approx(1.0)
    assert a.loss_charge == pytest.approx(0.10)
    assert a.import_kwh == pytest.approx(25.0)
    assert a.export_kwh == 0.0
    assert a.use_of_system_charge == pytest.approx(1.00)
    assert a.fixed_charge == pytest.approx(2 * 0.50 / 96)
    assert a.total == pytest.approx(0.10 + 1.00 + 1.0 / 96)
    # B relieves losses (credit) and exports 10 kWh at 0.01
    assert b.loss_charge == pytest.approx(-0.05)
    assert b.use_of_system_charge == pytest.approx(0.10)
    assert b.total == pytest.approx(-0.05 + 0.10 + 0.50 / 96)
    assert (a.payee, a.user, a.currency) == ("DSO wires", "A", "USD")


def test_parts_sum_to_totals_and_postings_net_to_totals():
    rng = np.random.default_rng(7)
    loss = rng.normal(2.0, 3.0, 50)
    p = rng.normal(10.0, 40.0, 50)
    fees = network_fees(loss, p, interval_s=300, tariff=TARIFF, start_s=3600 * 13)
    np.testing.assert_allclose(
        fees.loss_charge + fees.use_of_system_charge + fees.fixed_charge, fees.total
    )
    frame = fees.to_frame()
    assert len(frame) == 50
    np.testing.assert_allclose(frame["total"], fees.total)
    postings = fees.postings()
    assert (postings["amount"] > 0).all()
    assert set(postings["part"]) <= {"losses", "use_of_system", "fixed"}
    paid = postings[postings["payer"] != "network owner"].groupby("payer")["amount"].sum()
    credited = postings[postings["payee"] != "network owner"].groupby("payee")["amount"].sum()
    net = paid.reindex(fees.user, fill_value=0.0) - credited.reindex(fees.user, fill_value=0.0)
    np.testing.assert_allclose(net.to_numpy(), fees.total)
    assert sum(1 for _ in fees) == 50


def test_time_of_use_rates_are_time_weighted_over_the_interval():
    tou = NetworkTariff(
        loss_price_per_kwh=0.0,
        import_per_kwh=[0.02, 0.06, 0.02],
        export_per_kwh=[0.0, -0.01, 0.0],
        band_start_h=[0.0, 7.0, 23.0],
    )
    assert tou.band_rates(6.75 * 3600, 1800) == pytest.approx((0.04, -0.005))
    assert tou.band_rates(12 * 3600, 900) == pytest.approx((0.06, -0.01))
    # across midnight, and a start given on a later day
    assert tou.band_rates(23.5 * 3600, 3600)[0] == pytest.approx(0.02)
    assert tou.band_rates(5 * 86400 + 23.5 * 3600, 3600)[0] == pytest.approx(0.02)
    day = (7 * 0.02 + 16 * 0.06 + 1 * 0.02) / 24
    assert tou.band_rates(0.0, 2 * 86400)[0] == pytest.approx(day)
    fees = network_fees([0.0], [8.0], interval_s=1800, tariff=tou, start_s=6.75 * 3600)
    assert fees.use_of_system_charge[0] == pytest.approx(4.0 * 0.04)


def test_monthly_fixed_charge_is_prorated():
    monthly = NetworkTariff(loss_price_per_kwh=0.1, fixed_charge=30.0, fixed_period_s=30 * 86400)
    fees = network_fees([0.0], [0.0], interval_s=86400, tariff=monthly, n_meters=3)
    assert fees.fixed_charge[0] == pytest.approx(3.0)


def test_bills_from_a_loss_allocation_of_the_33_bus_feeder():
    feeder = load_feeder("case33bw")
    p = feeder.net_p_kw.copy()
    p[17] = -600.0
    allocation = allocate_losses(feeder, p, method="branch_current")
    fees = network_fees(allocation, interval_s=3600, tariff=TARIFF, users=list(feeder.node_name))
    assert fees.loss_kwh.sum() == pytest.approx(allocation.total_loss_kw)
    assert fees.loss_charge.sum() == pytest.approx(0.10 * allocation.total_loss_kw)
    assert fees.import_kwh.sum() == pytest.approx(np.maximum(p, 0).sum())
    assert fees.export_kwh[17] == pytest.approx(600.0)


def test_bad_tariff_and_bad_input_name_every_problem():
    with pytest.raises(ValidationError) as err:
        NetworkTariff(
            loss_price_per_kwh=np.nan,
            import_per_kwh=[0.1, 0.2],
            band_start_h=[1.0, 5.0, 4.0],
            fixed_period_s=0.0,
        )
    fields = [p.field for p in err.value.problems]
    assert fields.count("band_start_h") == 2
    assert {"import_per_kwh", "loss_price_per_kwh", "fixed_period_s"} <= set(fields)
    with pytest.raises(ValidationError) as err:
        network_fees([1.0, np.nan], [1.0, 2.0], interval_s=-5, tariff=TARIFF, n_meters=[1, -1])
    assert {p.field for p in err.value.problems} == {"loss", "interval_s", "n_meters"}
    with pytest.raises(ValidationError, match="p_kw"):
        network_fees([1.0], interval_s=60, tariff=TARIFF)
    with pytest.raises(ValidationError, match="users"):
        network_fees([1.0], [1.0], interval_s=60, tariff=TARIFF, users=["a", "b"])
