"""Uniform-price double auction over bid curves: the single-exchange mode of value discovery.

Each party submits a bid curve; the platform finds the price at which the net demand of all
curves is zero and every party reads its power off its own curve at that price (Hu et al.,
"Transactive Energy: an Effective Mechanism for Balancing Electric Energy System", Proc. CSEE 2019,
§3.1; the 5-minute markets of the Olympic Peninsula demonstration, Hammerstrom et al.,
PNNL-17167, 2007, and of AEP Ohio's gridSMART, Widergren et al., PNNL-23192, 2014; PowerMatcher,
Kok, Warmer, Kamphuis, 2005).

The aggregate net demand ``D(p) = Σ_i f_i(p)`` is non-increasing. The clearing price is where
``0 ∈ [D(p+), D(p-)]``. It is found without sorting the breakpoints: one bucketed pass over a
price grid brackets the crossing (checked exactly), then a bisection over the breakpoints' own
prices inside the bracket retires every piece of a curve that no longer straddles the bracket
into a running affine sum. The work shrinks geometrically, so a clearing costs O(M) expected for
M breakpoints (the sort-and-walk auction of GridLAB-D and TESP costs O(M log M)).

Rules (stated here because users rely on them):

- Prices live in ``[price_floor, price_cap]``. A buyer is never charged above the cap: power a
  curve still asks for just above the cap is demand *at* the cap (unresponsive load is a block at
  the cap), and supply still offered just below the floor is supply at the floor.
- Marginal blocks share pro rata, and as much as can be traded is traded (GridLAB-D's auction):
  at the clearing price the buyers' blocks (the parts of vertical segments above zero power) are
  served first, all by one fraction ``buyer_fill``; if they cannot absorb the supply, the sellers'
  blocks are taken, all by one fraction ``seller_fill``. A buyer's and a seller's 10 kW blocks at
  one price trade 10 kW. Sending the price and the two fills down a tree of concentrators
  (:func:`allocate`) gives every device its flat allocation.
- When the curves meet over an interval of prices, the price is chosen inside it by
  ``range_rule`` (midpoint by default, GridLAB-D's choice between the marginal buyer and seller).
- Allocations balance: the sum of purchases equals the sum of sales to rounding of the last bit
  (the rounding residual is booked to the largest participant).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import numpy as np
import numpy.typing as npt

from transactive.curves import BidCurves, FloatArray, _power_limit
from transactive.errors import Problem, Problems, ValidationError

__all__ = [
    "ClearingResult",
    "ClearingType",
    "Supply",
    "allocate",
    "allocate_by_id",
    "clear",
    "fill_of_allocation",
    "market_curves",
]

#: Net power below this share of the market's volume counts as zero (float noise of the sums).
_POWER_TOLERANCE = 1e-12
#: A set of clearing prices narrower than this share of [floor, cap] is one price.
_PRICE_TOLERANCE = 1e-9

RangeRule = Literal["midpoint", "low", "high"]


class ClearingType(StrEnum):
    """How the market cleared (GridLAB-D ``auction`` clearing types, extended to curves)."""

    EXACT = "exact"
    """The curves cross at one price with no block rationed (a sloped crossing, blocks that fit
    exactly, or buyers' and sellers' blocks tied at the same price and shared pro rata)."""
    MARGINAL_BUYER = "marginal_buyer"
    """The price is set by buyers' blocks at that price, which are partly served."""
    MARGINAL_SELLER = "marginal_seller"
    """The price is set by sellers' blocks at that price, which are partly taken."""
    PRICE_RANGE = "price_range"
    """Demand equals supply over an interval of prices; ``price_rule`` says which was chosen."""
    NO_CROSSING = "no_crossing"
    """Nothing is traded: one side is empty, or every ask is above every bid."""
    FAILURE = "failure"
    """Demand bid at the cap exceeds all supply (price goes to the cap, buyers rationed), or
    supply offered at the floor exceeds all demand (price goes to the floor, sellers curtailed)."""


@dataclass(frozen=True)
class Supply:
    """A fixed-price supplier: a feeder buying at the wholesale (locational) price up to a rating.

    ``capacity_kw`` may be ``math.inf`` (an infinite bus). With ``export_capacity_kw`` > 0 the
    feeder also takes power back (reverse flow) at ``export_price_per_kwh`` (default: the same
    price), up to that rating.
    """

    price_per_kwh: float
    capacity_kw: float
    export_capacity_kw: float = 0.0
    export_price_per_kwh: float | None = None

    def __post_init__(self) -> None:
        """Refuse what would clear at a NaN price or trade a negative quantity."""
        problems = Problems(subject="supply")
        price = _as_float(self.price_per_kwh, "price_per_kwh", problems)
        export_price = (
            price
            if self.export_price_per_kwh is None
            else _as_float(self.export_price_per_kwh, "export_price_per_kwh", problems)
        )
        for name, value in (("price_per_kwh", price), ("export_price_per_kwh", export_price)):
            if value is not None and not math.isfinite(value):
                problems.add(name, f"must be a finite number, got {value}")
        for name in ("capacity_kw", "export_capacity_kw"):
            value = _as_float(getattr(self, name), name, problems)
            if value is not None and (math.isnan(value) or value < 0):
                problems.add(name, f"must be a non-negative number (inf allowed), got {value}")
        if (
            price is not None
            and export_price is not None
            and math.isfinite(price)
            and math.isfinite(export_price)
            and export_price > price
        ):
            problems.add(
                "export_price_per_kwh",
                f"must not exceed the import price ({export_price} > {price}): the market would "
                "buy from the feeder and sell back to it at a profit",
            )
        problems.raise_if_any()


def _as_float(value: object, name: str, problems: Problems) -> float | None:
    """``value`` as a float, or None with a problem recorded (bools are not numbers)."""
    if isinstance(value, bool):
        problems.add(name, f"must be a number, got {value!r}")
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        problems.add(name, f"must be a number, got {value!r}")
        return None


@dataclass(frozen=True, eq=False)
class ClearingResult:
    """The outcome of one clearing.

    Attributes
    ----------
    clearing_price:
        Uniform price (currency/kWh).
    clearing_quantity_kw:
        Power traded: the sum of allocated purchases (equal to the sum of allocated sales,
        the supply included).
    clearing_type:
        See :class:`ClearingType`.
    allocation_kw:
        Each bid curve's power at the clearing price (positive bought, negative sold).
    marginal_fill:
        Per curve, where on its vertical segment at the clearing price it sits (0: the right end,
        least demand; 1: the left end), so ``bids.power_at(clearing_price, marginal_fill)``
        equals ``allocation_kw``. This is what a device needs to respond.
    buyer_fill, seller_fill:
        The share of the buyers' blocks served and of the sellers' blocks taken at the price;
        ``allocate(bids, result)`` reproduces the allocation of any curve from them.
    supply_kw:
        Power delivered by the ``supply`` (positive: imported into the market), 0 without one.
    price_range:
        The interval of prices that clear the market, when it is an interval; else None.
    price_rule:
        How the price was chosen, in words.
    shortage_kw, surplus_kw:
        Demand bid at the cap left unserved, supply offered at the floor left untaken.
    ids:
        The bids' ids (``BidCurves.ids``), so ``allocation_kw[i]`` belongs to ``ids[i]``; None
        for anonymous bids.

    """

    clearing_price: float
    clearing_quantity_kw: float
    clearing_type: ClearingType
    allocation_kw: FloatArray
    marginal_fill: FloatArray
    buyer_fill: float
    seller_fill: float
    supply_kw: float
    price_range: tuple[float, float] | None
    price_rule: str
    shortage_kw: float
    surplus_kw: float
    price_cap: float
    price_floor: float
    ids: npt.NDArray[np.str_] | None = None

    def allocation_by_id(self) -> dict[str, float]:
        """Each bidder's allocation (kW) keyed by its id; the bids must carry ids."""
        if self.ids is None:
            raise ValidationError(
                [Problem("ids", "the bids carried no ids: use BidCurves.with_ids")],
                subject="clearing result",
            )
        return dict(zip(self.ids.tolist(), self.allocation_kw.tolist(), strict=True))


def clear(
    bids: BidCurves,
    *,
    price_cap: float,
    price_floor: float = 0.0,
    supply: Supply | None = None,
    range_rule: RangeRule = "midpoint",
) -> ClearingResult:
    """Clear a uniform-price double auction over a batch of bid curves.

    Parameters
    ----------
    bids:
        The bids, one curve per participant (buyers, sellers, prosumers).
    price_cap, price_floor:
        The market's price limits; every breakpoint must lie within them.
    supply:
        Optional fixed-price supply (a feeder's connection to the wholesale market).
    range_rule:
        Price chosen when the curves meet over an interval: its ``midpoint``, ``low`` end (the
        buyers' side) or ``high`` end.

    Raises
    ------
    ValidationError
        Listing every problem: limits, curves outside the limits, bad supply.

    Notes
    -----
    The passes over the curves run as fused kernels (:mod:`transactive.market._clearing_kernels`,
    numba, both cores from 65,536 curves); ``_clear_numpy`` is the same clearing in numpy, the
    reference the kernels are tested against (equal bit for bit but for a price inside a sloped
    stretch, which may differ in its last bits).

    """
    found, floor, cap, supply_curve = _market_problems(
        bids, price_cap, price_floor, supply, range_rule, check_curves=False
    )
    bid_prices = np.asarray(bids.price_per_kwh) if isinstance(bids, BidCurves) else None
    bid_powers = np.asarray(bids.power_kw) if isinstance(bids, BidCurves) else None
    if (
        found
        or bid_prices is None
        or bid_powers is None
        or bid_prices.dtype != np.float64
        or bid_powers.dtype != np.float64
        or bid_prices.ndim != 2
        or bid_prices.shape != bid_powers.shape
        or bid_prices.shape[1] < 2
    ):  # the numpy path names every problem (or clears what the kernels do not take)
        return _clear_numpy(
            bids, price_cap=price_cap, price_floor=price_floor, supply=supply, range_rule=range_rule
        )
    assert floor is not None and cap is not None
    from transactive.market import _clearing_kernels as kernels  # noqa: PLC0415 - numba on use

    extra_prices, extra_powers = (
        (np.empty((0, 2)), np.empty((0, 2)))
        if supply_curve is None
        else (supply_curve.price_per_kwh, supply_curve.power_kw)
    )
    rows = kernels.Rows.of(
        np.ascontiguousarray(bid_prices),
        np.ascontiguousarray(bid_powers),
        np.ascontiguousarray(extra_prices, dtype=np.float64),
        np.ascontiguousarray(extra_powers, dtype=np.float64),
    )
    first = kernels.stage1(rows, floor, cap)
    if (
        first.min_first_price < floor
        or first.max_last_price > cap
        or not math.isfinite(first.volume_kw)
    ):
        _checked_market(bids, price_cap, price_floor, supply, range_rule)  # raises, naming all
    scale = first.scale_kw
    tol = _POWER_TOLERANCE * scale if scale > 0 else 0.0
    has_buyers = first.max_first_power > tol
    has_sellers = first.min_last_power < -tol

    try:
        low, high = kernels.price_range(rows, first, floor, cap, tol)
    except kernels.SearchFailed:  # a bracket's edge within float noise of the tolerance
        curves = _with_supply(bids, supply_curve)
        low, high = _price_range(curves.price_per_kwh, curves.power_kw, floor, cap, tol)
    is_range = high - low > _PRICE_TOLERANCE * (cap - floor)
    price, rule = _chosen_price(low, high, is_range, has_buyers, has_sellers, range_rule)

    limits, lo_sum, buy_flex, sell_flex = kernels.limits_at(rows, price, floor, cap)
    need = -lo_sum  # demand to add, starting from every block at its right end
    buyer_fill, seller_fill = _fills(need, buy_flex, sell_flex, tol)
    allocation, fill, quantity, shortage, surplus = kernels.settle(
        rows, limits, buyer_fill, seller_fill
    )
    n_bids = rows.n_bids
    supply_kw = -float(allocation[n_bids]) + 0.0 if supply_curve is not None else 0.0
    bid_allocation = allocation[:n_bids] if supply_curve is not None else allocation
    bid_allocation.setflags(write=False)
    fill.setflags(write=False)
    return _result(
        bids,
        low=low,
        high=high,
        is_range=is_range,
        price=price,
        rule=rule,
        tol=tol,
        quantity=quantity,
        shortage=shortage if price == cap else 0.0,
        surplus=surplus if price == floor else 0.0,
        buyer_fill=buyer_fill,
        seller_fill=seller_fill,
        buy_flex=buy_flex,
        sell_flex=sell_flex,
        supply_kw=supply_kw,
        bid_allocation=bid_allocation,
        fill=fill,
        floor=floor,
        cap=cap,
    )


def _clear_numpy(
    bids: BidCurves,
    *,
    price_cap: float,
    price_floor: float = 0.0,
    supply: Supply | None = None,
    range_rule: RangeRule = "midpoint",
) -> ClearingResult:
    """:func:`clear` in numpy: the reference the kernels are tested against (same arguments)."""
    curves, floor, cap = _checked_market(bids, price_cap, price_floor, supply, range_rule)
    prices, powers = curves.price_per_kwh, curves.power_kw

    scale = float(np.maximum(np.abs(powers[:, 0]), np.abs(powers[:, -1])).sum())
    tol = _POWER_TOLERANCE * scale if scale > 0 else 0.0
    has_buyers = bool((powers[:, 0] > tol).any())
    has_sellers = bool((powers[:, -1] < -tol).any())

    low, high = _price_range(prices, powers, floor, cap, tol)
    is_range = high - low > _PRICE_TOLERANCE * (cap - floor)
    price, rule = _chosen_price(low, high, is_range, has_buyers, has_sellers, range_rule)

    lo, hi = _bounds_clamped(prices, powers, price, floor, cap)
    need = -float(lo.sum())  # demand to add, starting from every block at its right end
    buy_part, sell_part = _sides(lo, hi)
    buy_flex, sell_flex = float(buy_part.sum()), float(sell_part.sum())
    buyer_fill, seller_fill = _fills(need, buy_flex, sell_flex, tol)
    allocation = lo + buyer_fill * buy_part + (1.0 - seller_fill) * sell_part
    _book_residual(allocation)

    quantity = float(np.maximum(allocation, 0.0).sum())
    shortage = (
        float((np.maximum(hi, 0.0) - np.maximum(allocation, 0.0)).sum()) if price == cap else 0.0
    )
    surplus = (
        float((np.minimum(allocation, 0.0) - np.minimum(lo, 0.0)).sum()) if price == floor else 0.0
    )

    # No negative zeros in a result (``need = -0.0`` makes ``buyer_fill`` -0.0, printed "-0 %"):
    # adding +0.0 turns -0.0 into 0.0 and leaves every other number as it is (IEEE 754 §6.3).
    n_bids = len(bids)
    supply_kw = -float(allocation[n_bids]) + 0.0 if supply is not None else 0.0
    bid_allocation = allocation[:n_bids] + 0.0
    bid_allocation.setflags(write=False)
    width = (hi - lo)[:n_bids]
    with np.errstate(divide="ignore", invalid="ignore"):
        fill = np.where(width > 0, np.clip((bid_allocation - lo[:n_bids]) / width, 0.0, 1.0), 0.0)
    fill = fill + 0.0
    fill.setflags(write=False)
    return _result(
        bids,
        low=low,
        high=high,
        is_range=is_range,
        price=price,
        rule=rule,
        tol=tol,
        quantity=quantity,
        shortage=shortage,
        surplus=surplus,
        buyer_fill=buyer_fill,
        seller_fill=seller_fill,
        buy_flex=buy_flex,
        sell_flex=sell_flex,
        supply_kw=supply_kw,
        bid_allocation=bid_allocation,
        fill=fill,
        floor=floor,
        cap=cap,
    )


def _price_range(
    prices: FloatArray, powers: FloatArray, floor: float, cap: float, tol: float
) -> tuple[float, float]:
    """The lowest and the highest clearing price: the numpy path's search over the curves.

    Every price in ``[low, high]`` clears the market: ``D(p+) <= 0 <= D(p-)`` there (to
    tolerance). The curves include the supply's.
    """
    pieces = _Pieces.of(prices, powers)
    guess = _guess(pieces, floor, cap)
    low = _lowest_price_at_most(pieces, floor, cap, tol, guess)
    if low < cap and pieces.value(low, right=True) < -tol:
        high = low
    else:
        # Mirror: sup{p : D(p-) >= -tol} = -inf{p' : D'(p'+) <= tol} with D'(p') = -D(-p').
        mirrored = pieces.mirrored()
        high = -_lowest_price_at_most(mirrored, -cap, -low, tol, _mirrored_guess(guess))
    return low, high


def _chosen_price(
    low: float,
    high: float,
    is_range: bool,
    has_buyers: bool,
    has_sellers: bool,
    range_rule: RangeRule,
) -> tuple[float, str]:
    """The clearing price in ``[low, high]`` and how it was chosen, in words."""
    if is_range and not has_sellers:
        return low, "highest buyer's price (no sellers)"
    if is_range and not has_buyers:
        return high, "lowest seller's price (no buyers)"
    if is_range:
        price = {"midpoint": 0.5 * (low + high), "low": low, "high": high}[range_rule]
        return price, f"{range_rule} of the range of clearing prices"
    return 0.5 * (low + high), "crossing of demand and supply"


def _fills(need: float, buy_flex: float, sell_flex: float, tol: float) -> tuple[float, float]:
    """Buyers' blocks first, then sellers', each side by one fraction (GridLAB-D's auction)."""
    buyer_fill = min(max(need / buy_flex, 0.0), 1.0) if buy_flex > tol else 1.0
    rest = need - buyer_fill * buy_flex
    seller_fill = 1.0 - min(max(rest / sell_flex, 0.0), 1.0) if sell_flex > tol else 1.0
    return buyer_fill, seller_fill


def _result(
    bids: BidCurves,
    *,
    low: float,
    high: float,
    is_range: bool,
    price: float,
    rule: str,
    tol: float,
    quantity: float,
    shortage: float,
    surplus: float,
    buyer_fill: float,
    seller_fill: float,
    buy_flex: float,
    sell_flex: float,
    supply_kw: float,
    bid_allocation: FloatArray,
    fill: FloatArray,
    floor: float,
    cap: float,
) -> ClearingResult:
    """The clearing's type (GridLAB-D's names) and its result, without negative zeros."""
    buyers_partial = tol < buyer_fill * buy_flex < buy_flex - tol
    sellers_partial = tol < seller_fill * sell_flex < sell_flex - tol

    if quantity <= tol:
        kind = ClearingType.NO_CROSSING
    elif shortage > tol or surplus > tol:
        kind = ClearingType.FAILURE
        rule = (
            "price cap: demand exceeds supply"
            if shortage > tol
            else "price floor: supply exceeds demand"
        )
    elif is_range:
        kind = ClearingType.PRICE_RANGE
    elif buyers_partial:
        kind = ClearingType.MARGINAL_BUYER
    elif sellers_partial:
        kind = ClearingType.MARGINAL_SELLER
    else:
        kind = ClearingType.EXACT

    return ClearingResult(
        clearing_price=float(price) + 0.0,
        clearing_quantity_kw=quantity + 0.0,
        clearing_type=kind,
        allocation_kw=bid_allocation,
        marginal_fill=fill,
        buyer_fill=float(buyer_fill) + 0.0,
        seller_fill=float(seller_fill) + 0.0,
        supply_kw=supply_kw,
        price_range=(float(low) + 0.0, float(high) + 0.0) if is_range else None,
        price_rule=rule,
        shortage_kw=max(shortage, 0.0) + 0.0,
        surplus_kw=max(surplus, 0.0) + 0.0,
        price_cap=cap + 0.0,
        price_floor=floor + 0.0,
        ids=bids.ids,
    )


def allocate(bids: BidCurves, result: ClearingResult) -> FloatArray:
    """Each curve's power under a clearing: its own curve at the price, marginal blocks at θ.

    This is how the price travels back down a tree of concentrators: a device (or a lower
    concentrator) needs only the clearing price and the buyers' and sellers' fills to find its
    allocation. A tree whose concentrators aggregate buyers and sellers apart
    (``aggregate(..., by_side=True)``) clears with the same fills as the flat market, so every
    device gets exactly its flat allocation.

    One fused pass (:mod:`transactive.market._clearing_kernels`); ``_allocate_numpy`` is the
    reference, equal bit for bit.
    """
    prices, powers = np.asarray(bids.price_per_kwh), np.asarray(bids.power_kw)
    if prices.dtype != np.float64 or powers.dtype != np.float64 or prices.shape[1] < 2:
        return _allocate_numpy(bids, result)
    from transactive.market import _clearing_kernels as kernels  # noqa: PLC0415 - numba on use

    return kernels.allocate_curves(
        np.ascontiguousarray(prices),
        np.ascontiguousarray(powers),
        float(result.clearing_price),
        float(result.price_floor),
        float(result.price_cap),
        float(result.buyer_fill),
        float(result.seller_fill),
    )


def _allocate_numpy(bids: BidCurves, result: ClearingResult) -> FloatArray:
    """:func:`allocate` in numpy (the reference)."""
    lo, hi = _bounds_clamped(
        bids.price_per_kwh,
        bids.power_kw,
        result.clearing_price,
        result.price_floor,
        result.price_cap,
    )
    buy_part, sell_part = _sides(lo, hi)
    return lo + result.buyer_fill * buy_part + (1.0 - result.seller_fill) * sell_part


def market_curves(
    bids: BidCurves,
    *,
    price_cap: float,
    price_floor: float = 0.0,
    supply: Supply | None = None,
) -> BidCurves:
    """The curves :func:`clear` clears: the bids, then the supply's curve (anonymous, last).

    What a market that takes the substation's offer as one more bid (a service whose supplier
    bids) must receive to clear exactly as :func:`clear` does with ``supply``. Validated as
    :func:`clear` validates (one ValidationError naming every problem).
    """
    curves, _floor, _cap = _checked_market(bids, price_cap, price_floor, supply, "midpoint")
    return curves


def fill_of_allocation(
    bids: BidCurves,
    clearing_price: float,
    allocation_kw: npt.ArrayLike,
    *,
    price_cap: float,
    price_floor: float = 0.0,
) -> FloatArray:
    """Each curve's marginal fill for an allocation at a price: the inverse of ``power_at``.

    ``(allocation − lo) / (hi − lo)`` on the curve's block at the price, with :func:`clear`'s
    limits (demand all flexible at the cap, supply at the floor), clipped to [0, 1]; 0 where the
    curve has no block there. What a device told only its award and the price passes to
    ``respond``.
    """
    lo, hi = _bounds_clamped(
        bids.price_per_kwh, bids.power_kw, float(clearing_price), price_floor, price_cap
    )
    width = hi - lo
    allocation = np.asarray(allocation_kw, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        fill = np.where(width > 0, np.clip((allocation - lo) / width, 0.0, 1.0), 0.0)
    return np.asarray(fill + 0.0, dtype=np.float64)


def allocate_by_id(bids: BidCurves, result: ClearingResult) -> dict[str, float]:
    """:func:`allocate` keyed by the bids' ids: each device's power under a (tree's) clearing.

    The devices' curves keep their own ids however many concentrators sit between them and the
    market, so what a device is told and what is settled are keyed by the same id.
    """
    if bids.ids is None:
        raise ValidationError(
            [Problem("bids.ids", "the bids carry no ids: use BidCurves.with_ids")],
            subject="allocation",
        )
    return dict(zip(bids.ids.tolist(), allocate(bids, result).tolist(), strict=True))


def _sides(lo: FloatArray, hi: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Split each curve's vertical segment [lo, hi] into its buying and its selling part."""
    buy = np.maximum(hi, 0.0) - np.maximum(lo, 0.0)
    sell = np.minimum(hi, 0.0) - np.minimum(lo, 0.0)
    return buy, sell


# ---------------------------------------------------------------------- validation


def _checked_market(
    bids: BidCurves,
    price_cap: float,
    price_floor: float,
    supply: Supply | None,
    range_rule: str,
) -> tuple[BidCurves, float, float]:
    """Validate the market's inputs (all problems at once) and append the supply's curve.

    Returns the curves to clear (the bids, then the supply's curve, anonymous) and the limits as
    floats.
    """
    problems, floor, cap, supply_curve = _market_problems(
        bids, price_cap, price_floor, supply, range_rule, check_curves=True
    )
    problems.raise_if_any()
    assert cap is not None and floor is not None
    return _with_supply(bids, supply_curve), floor, cap


def _with_supply(bids: BidCurves, supply_curve: BidCurves | None) -> BidCurves:
    """The bids, then the supply's curve: one anonymous batch (the supply has no id)."""
    if supply_curve is None:
        return bids
    anonymous = BidCurves._trusted(bids.price_per_kwh, bids.power_kw)
    return BidCurves.concat([anonymous, supply_curve])


def _market_problems(
    bids: BidCurves,
    price_cap: float,
    price_floor: float,
    supply: Supply | None,
    range_rule: str,
    *,
    check_curves: bool,
) -> tuple[Problems, float | None, float | None, BidCurves | None]:
    """Every problem of the market's inputs, the limits and the supply's curve.

    With ``check_curves`` False the checks of every breakpoint (within the limits, powers that
    add up) are left out: the kernels make them in their first pass, and on a failure the full
    check runs to name every problem.
    """
    problems = Problems(subject="market")
    if not isinstance(bids, BidCurves):  # callers need not type-check
        problems.add(  # type: ignore[unreachable]
            "bids", f"must be BidCurves, got {type(bids).__name__}"
        )
        problems.raise_if_any()
    cap = _as_float(price_cap, "price_cap", problems)
    floor = _as_float(price_floor, "price_floor", problems)
    limits_ok = cap is not None and floor is not None
    if cap is not None and floor is not None:
        if not (math.isfinite(cap) and math.isfinite(floor)):
            problems.add("price_cap/price_floor", f"must be finite numbers, got {cap}, {floor}")
            limits_ok = False
        elif floor >= cap:
            problems.add("price_cap", f"must exceed price_floor ({cap} <= {floor})")
            limits_ok = False
    if range_rule not in ("midpoint", "low", "high"):
        problems.add("range_rule", f"must be 'midpoint', 'low' or 'high', got {range_rule!r}")
    if check_curves:
        labels = None if bids.ids is None else bids.ids.tolist()
        if limits_ok and cap is not None and floor is not None and len(bids):
            low, high = bids.price_bounds()
            problems.check(
                low < floor, "bids.price_per_kwh", f"below the price floor {floor}", labels
            )
            problems.check(high > cap, "bids.price_per_kwh", f"above the price cap {cap}", labels)
        with np.errstate(over="ignore"):
            volume = float(np.abs(bids.power_kw).max(axis=1).sum()) if len(bids) else 0.0
        if not math.isfinite(volume):  # finite curves whose sum overflows would clear at NaN
            problems.add("bids.power_kw", "the curves' powers are too large to add up (overflow)")
    supply_curve = None
    if supply is not None:
        supply_curve = _supply_curve(supply, bids, floor, cap, problems, limits_ok)
    return problems, floor, cap, supply_curve


def _supply_curve(
    supply: Supply,
    bids: BidCurves,
    price_floor: float | None,
    price_cap: float | None,
    problems: Problems,
    limits_ok: bool,
) -> BidCurves | None:
    """The supply as a curve, checked against the market's limits.

    It sells up to its rating from its price and buys back up to its export rating at its export
    price; the rest of its checks ran when it was built (``Supply.__post_init__``).
    """
    if not isinstance(supply, Supply):
        problems.add(  # type: ignore[unreachable]
            "supply", f"must be a Supply, got {type(supply).__name__}"
        )
        return None
    price = float(supply.price_per_kwh)
    export_price = (
        price if supply.export_price_per_kwh is None else float(supply.export_price_per_kwh)
    )
    before = len(problems.found)
    if limits_ok:
        assert price_floor is not None and price_cap is not None
        for name, value in (
            ("supply.price_per_kwh", price),
            ("supply.export_price_per_kwh", export_price),
        ):
            if not price_floor <= value <= price_cap:
                problems.add(name, f"{value} is outside [{price_floor}, {price_cap}]")
    if len(problems.found) > before or not limits_ok:
        return None
    # An unlimited rating becomes one larger than anything the bids could ever take or give.
    capacity = float(supply.capacity_kw)
    if math.isinf(capacity):
        capacity = float(np.maximum(bids.power_kw[:, 0], 0.0).sum()) + 1.0
    export = float(supply.export_capacity_kw)
    if math.isinf(export):
        export = float(np.maximum(-bids.power_kw[:, -1], 0.0).sum()) + 1.0
    curve_prices = np.array([[export_price, export_price, price, price]])
    curve_powers = np.array([[export, 0.0, 0.0, -capacity]])
    return BidCurves._trusted(curve_prices, curve_powers)


# ---------------------------------------------------------------------- kernels


def _bounds_clamped(
    prices: FloatArray, powers: FloatArray, price: float, floor: float, cap: float
) -> tuple[FloatArray, FloatArray]:
    """Each curve's (lo, hi) at a price; demand is all flexible at the cap, supply at the floor."""
    p = np.asarray(price, dtype=np.float64)
    lo = _power_limit(prices, powers, p, right=True)
    # Left and right limits differ only where a curve has a breakpoint at exactly this price.
    at_price = np.flatnonzero((prices == price).any(axis=1))
    hi = lo.copy()
    hi[at_price] = _power_limit(prices[at_price], powers[at_price], p, right=False)
    if price >= cap:
        lo = np.minimum(lo, 0.0)
    if price <= floor:
        hi = np.maximum(hi, 0.0)
    return lo, hi


@dataclass(frozen=True)
class _Pieces:
    """The aggregate net demand as a sum of pieces: ``D(p) = base + Σ_j dq_j t_j(p)``.

    Piece j moves the demand by ``dq_j`` from price ``p0_j`` to ``p1_j``: linearly (a ramp,
    ``p1 > p0``) or all at once (a vertical step, ``p1 == p0``; ``t`` is 1 from ``p0`` on for the
    right limit and from just above ``p0`` for the left). Zero pieces (padding, flats) are dropped.
    """

    base: float
    p0: FloatArray
    p1: FloatArray
    dq: FloatArray
    inv_width: FloatArray  # 1 / (p1 - p0); +inf for steps

    @classmethod
    def of(cls, prices: FloatArray, powers: FloatArray) -> _Pieces:
        dq = np.diff(powers, axis=1)
        keep = np.flatnonzero(dq)
        p0 = prices[:, :-1].ravel()[keep]
        p1 = prices[:, 1:].ravel()[keep]
        with np.errstate(divide="ignore", over="ignore"):  # sub-ulp ramps behave as steps
            inv_width = 1.0 / (p1 - p0)
        return cls(float(powers[:, 0].sum()), p0, p1, dq.ravel()[keep], inv_width)

    def mirrored(self) -> _Pieces:
        """The pieces of ``D'(p) = -D(-p)``: a search for a supremum becomes one for an infimum."""
        total = self.base + float(self.dq.sum())
        return _Pieces(-total, -self.p1, -self.p0, self.dq, self.inv_width)

    def take(self, index: npt.NDArray[np.intp], base: float = 0.0) -> _Pieces:
        return _Pieces(base, self.p0[index], self.p1[index], self.dq[index], self.inv_width[index])

    def fractions(self, price: float, *, right: bool) -> FloatArray:
        """How much of each piece has happened by ``price+`` (right) or ``price-``."""
        with np.errstate(invalid="ignore"):
            t = np.clip((price - self.p0) * self.inv_width, 0.0, 1.0)
        if right:
            return np.where(price >= self.p1, 1.0, np.where(price <= self.p0, 0.0, t))
        return np.where(price <= self.p0, 0.0, np.where(price >= self.p1, 1.0, t))

    def value(self, price: float, *, right: bool) -> float:
        """``D(price+)`` (right) or ``D(price-)``, base included."""
        return self.base + float(self.dq @ self.fractions(price, right=right))

    def inside(self, lo: float, hi: float) -> npt.NDArray[np.intp]:
        """Indices of the pieces with an end strictly inside ``(lo, hi)``."""
        p0, p1 = self.p0, self.p1
        return np.flatnonzero(((p0 > lo) & (p0 < hi)) | ((p1 > lo) & (p1 < hi)))

    def approximate_values(self, start: float, width: float, cells: int) -> FloatArray:
        """``D(e+)`` at the edges ``e_c = start + c * width`` (c = 0..cells), in O(n), no sort.

        Each piece's ends are put in uniform cells by arithmetic; a piece is complete at the
        edges above its ``p1`` cell and, if a ramp, partial (``dq (e - p0) / (p1 - p0)``) at the
        edges between its cells; both are summed with ``bincount`` and ``cumsum``. Ends on an
        edge and near-vertical ramps round badly, so callers only use this to guess a bracket
        and check it exactly.
        """
        scale = 1.0 / width
        start_cell = np.clip((self.p0 - start) * scale, -1.0, cells).astype(np.intp) + 1
        done_cell = np.clip((self.p1 - start) * scale, -1.0, cells).astype(np.intp) + 1
        ramp = np.isfinite(self.inv_width)
        slope = self.dq * np.where(ramp, self.inv_width, 0.0)
        bins = cells + 2
        slope_sum = np.cumsum(
            np.bincount(start_cell, slope, bins) - np.bincount(done_cell, slope, bins)
        )
        offset = np.cumsum(
            np.bincount(start_cell, slope * self.p0, bins)
            - np.bincount(done_cell, slope * self.p0, bins)
        )
        done = np.cumsum(np.bincount(done_cell, self.dq, bins))
        edges = start + width * np.arange(cells + 1)
        # Edge c sees the pieces whose cells (shifted by one) are at most c.
        values: FloatArray = (
            self.base + done[: cells + 1] + edges * slope_sum[: cells + 1] - offset[: cells + 1]
        )
        return values


#: Pieces sampled to place the bracketing grid and to pick each bisection pivot.
_SAMPLE = 1025
#: Cells of the bracketing grid.
_CELLS = 8192

Guess = tuple[FloatArray, FloatArray]  # edges and approximate D(e+) there


def _guess(pieces: _Pieces, floor: float, cap: float) -> Guess | None:
    """A uniform grid over the bulk of the breakpoints and ``D`` there (approximate)."""
    if pieces.dq.size <= 4 * _SAMPLE:
        return None
    stride = max(pieces.dq.size // _SAMPLE, 1)
    sample = np.concatenate([pieces.p0[::stride], pieces.p1[::stride]])
    sample = sample[(sample > floor) & (sample < cap)]
    if sample.size < 2:
        return None
    start, stop = (float(v) for v in np.quantile(sample, [0.001, 0.999]))
    if not stop > start:
        return None
    width = (stop - start) / _CELLS
    approx = pieces.approximate_values(start, width, _CELLS)
    edges: FloatArray = start + width * np.arange(_CELLS + 1, dtype=np.float64)
    return edges, approx


def _mirrored_guess(guess: Guess | None) -> Guess | None:
    if guess is None:
        return None
    edges, approx = guess
    return -edges[::-1], -approx[::-1]


def _lowest_price_at_most(
    pieces: _Pieces, floor: float, cap: float, threshold: float, guess: Guess | None = None
) -> float:
    """``inf{p in [floor, cap] : D(p+) <= threshold}``; at the cap the predicate holds by rule.

    1. Bracket: ``D`` on a uniform grid of 8192 cells between the 0.1 and 99.9 percentiles of
       the breakpoint prices, in one bucketed pass (:meth:`_Pieces.approximate_values`); the
       bracket's ends are checked exactly and widened where the guess was off.
    2. Bisect over the breakpoints inside the bracket (median pivot). Invariant: ``D(lo+) >
       threshold`` and the answer is in ``(lo, hi]``. Pieces with no end strictly inside
       ``(lo, hi)`` are affine there and retire into two running sums (values at ``lo+`` and
       ``hi-``), so each round touches about half the pieces of the round before.
    Expected cost O(n) in the number of pieces.
    """
    d_floor = pieces.value(floor, right=True)
    if d_floor <= threshold:
        return floor
    lo, hi, d_lo, d_hi = floor, cap, d_floor, pieces.value(cap, right=False)
    if guess is not None:
        lo, hi, d_lo, d_hi = _bracket(pieces, guess, floor, cap, threshold, d_floor, d_hi)
    active = pieces.take(pieces.inside(lo, hi))
    sum_lo = d_lo - active.value(lo, right=True)  # the retired pieces' part of D(lo+)
    sum_hi = d_hi - active.value(hi, right=False)
    while active.dq.size:
        sample = active.take(np.arange(0, active.dq.size, max(active.dq.size // _SAMPLE, 1)))
        candidates = np.concatenate([sample.p0, sample.p1])
        candidates = candidates[(candidates > lo) & (candidates < hi)]
        mid = candidates.size // 2
        c = float(np.partition(candidates, mid)[mid])
        retired_at_c = sum_lo + (sum_hi - sum_lo) * (c - lo) / (hi - lo)
        if retired_at_c + active.value(c, right=True) <= threshold:
            hi, sum_hi = c, retired_at_c
        else:
            lo, sum_lo = c, retired_at_c
        kept = active.inside(lo, hi)
        if kept.size < active.dq.size:
            leaving = np.ones(active.dq.size, dtype=bool)
            leaving[kept] = False
            gone = active.take(np.flatnonzero(leaving))
            sum_lo += gone.value(lo, right=True)
            sum_hi += gone.value(hi, right=False)
            active = active.take(kept)
    # D is affine on (lo, hi): D(lo+) = sum_lo > threshold, D(hi-) = sum_hi.
    if sum_hi > threshold:
        return hi
    t = (sum_lo - threshold) / (sum_lo - sum_hi)
    return min(max(lo + t * (hi - lo), lo), hi)


def _bracket(
    pieces: _Pieces,
    guess: Guess,
    floor: float,
    cap: float,
    threshold: float,
    d_floor: float,
    d_cap: float,
) -> tuple[float, float, float, float]:
    """A narrow ``(lo, hi)`` with ``D(lo+) > threshold`` and the answer in ``(lo, hi]``.

    The guess only places the bracket; both ends are checked with exact evaluations, and a
    wrong guess falls back to the whole range.
    """
    edges, approx = guess
    inside = (edges > floor) & (edges < cap)
    edges, approx = edges[inside], approx[inside]
    j = int(np.searchsorted(-approx, -threshold, side="left"))  # first edge guessed <= threshold
    # Check both ends exactly; where the guess was off, step outwards (1, 2, 4, ... edges).
    step, below = 1, j - 1
    while below >= 0:
        d_lo = pieces.value(float(edges[below]), right=True)
        if d_lo > threshold:
            break
        below, step = below - step, 2 * step
    lo, d_lo = (float(edges[below]), d_lo) if below >= 0 else (floor, d_floor)
    step, above = 1, max(j, below + 1)
    while above < edges.size:
        if pieces.value(float(edges[above]), right=True) <= threshold:
            return lo, float(edges[above]), d_lo, pieces.value(float(edges[above]), right=False)
        above, step = above + step, 2 * step
    return lo, cap, d_lo, d_cap


def _book_residual(allocation: npt.NDArray[np.float64]) -> None:
    """Make purchases equal sales to the last bit: book the float residual on the largest entry."""
    residual = math.fsum(allocation.tolist())
    if residual != 0.0:
        j = int(np.argmax(np.abs(allocation)))
        allocation[j] -= residual
