"""The simulator's market on the live service: device agents speak HTTP to ``transactive serve``.

Issue 13: "the simulator's devices can run against the live service as well as in-process; the
two give the same clearing for the same seed." :class:`LiveService` is a
:data:`transactive.sim.engine.MarketAccessFactory`: ``simulate(scenario,
market_access=LiveService(url, operator_id=..., operator_secret=...))`` runs the baseline in
this process (it has no market) and every run with a market through a :class:`LiveMarket`,
the weakly-centralized platform of Hu et al., "Transactive Energy: an Effective Mechanism for
Balancing Electric Energy System", Proc. CSEE 2019, §3.1.1, reached over its REST API
(``/api/v1``, OAuth2 client credentials, RFC 6749 §4.4).

At the run's start, as the platform operator, the market admits a **retailer** (the supplier:
the counterparty of the substation's supply and of imbalances) and defines a real-time market
with the scenario's interval and price limits, no feeder (the live mode runs without the DSO's
check) and no standing supply, then opens the horizon's intervals. At the first clearing it
admits **one prosumer member per home** and gives every row of the auction its own contract at
its bus (so every curve's award comes back by contract): a home's devices billed at the
market price are its home's contracts; the devices the run bills at the flat tariff (the
non-participants the auction sees as unresponsive blocks) are the retailer's, which buys its
tariff customers' load in the market and bills them outside the platform. One member per home
rather than one aggregator: each home is an agent with its own credentials that sees only its
own bids, awards and account, as the platform's privacy rule intends (§3.2), and its account
holds its bill. The substation's supply is the retailer's last contract.

Per interval (:meth:`LiveMarket.clear`): each device's curve is POSTed by its owner as a bid
with the idempotency key ``<device id>@<interval id>``; the retailer bids the interval's
:class:`~transactive.market.Supply` as its curve, exactly the curve
:func:`transactive.market.clear` appends for it (:func:`transactive.market.market_curves`);
the operator advances the interval (gate closed early, ``force``, as the simulator runs faster
than the service's clock; cleared; checked, which without a feeder
confirms the clearing); the agents read the published price and their awards. The loop gets
back each row's allocation (its award) and its marginal fill from its own curve's bounds at
the price, ``fill = (award - lo) / (hi - lo)``, 0 where ``hi == lo`` (the rule of
:func:`transactive.market.clear`). The service sorts an interval's curves by contract id and
the contracts are made in the rows' order with the supply last, so it clears the very batch the
in-process market clears.

After the physics (:meth:`LiveMarket.metered`) each contract's metered energy is POSTed as a
meter reading by its owner (the supply's: minus the rows' total, what it delivered), the
operator sets the market's imbalance price to the interval's clearing price and settles it.
So deviations from the award are billed at the clearing price and each home's account holds
what the simulator bills it: its metered energy at the node's price (Table 1's energy and
imbalance items; fees are zero).

**Not supported** (refused by :func:`check_live` with every reason, before anything runs): the
DSO's check (the service's runs on its own feeder model, without the simulator's background
load, limits and power-flow engine), PowerMatcher (a concentrator tree, not the service's flat
auction), fixed and time-of-use mechanisms (nothing to clear), customer groups, generators and
communication faults (simulated message loss and delay on top of real messages), and a price
floor below zero (the service's imbalance price cannot be negative).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from transactive.errors import Problem, ValidationError
from transactive.sim.engine import MarketAnswer, MarketRequest, has_faults
from transactive.sim.scenario import Scenario

__all__ = [
    "API_PREFIX",
    "DEVICE_LIMIT_KW",
    "LiveClearing",
    "LiveMarket",
    "LiveService",
    "LiveServiceError",
    "check_live",
]

FloatArray = npt.NDArray[np.float64]

API_PREFIX = "/api/v1"
"""Where the service's API lives (:data:`transactive.platform.api.deps.API_PREFIX`)."""

DEVICE_LIMIT_KW = 100.0
"""A device contract's maximum power (kW): a large household connection (3 x 160 A at 230 V
is 110 kVA), above every device the simulator samples. The service refuses a bid beyond its
contract's limit (422), so a device that bid more stops the run with that reason; the limit
never changes a clearing."""

OPEN_AHEAD = timedelta(hours=1)
"""The first interval opened on the service starts at least this long after the run starts."""


class LiveServiceError(RuntimeError):
    """The service refused a request (or could not be reached): what was asked and its answer."""

    def __init__(self, method: str, path: str, status: int | None, detail: object) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.detail = detail
        where = f"{method} {path}"
        said = "could not be reached" if status is None else f"answered {status}"
        super().__init__(f"the live service {said} to {where}: {detail}")


def check_live(scenario: Scenario) -> None:
    """Refuse a scenario the live mode cannot run as the in-process market does.

    Raises
    ------
    ValidationError
        Listing every reason (see the module docstring's "Not supported").

    """
    mech = scenario.mechanism
    problems = []
    if mech.kind != "double_auction":
        problems.append(
            Problem(
                "mechanism.kind",
                f"the live mode clears the service's double auction; {mech.kind!r} is not "
                "supported (PowerMatcher's tree is not the service's flat auction, and a fixed or "
                "time-of-use tariff has nothing to clear)",
            )
        )
    if mech.dso_check:
        problems.append(
            Problem(
                "mechanism.dso_check",
                "the live mode does not run the DSO's check (the service's check uses its own "
                "feeder model, not the simulator's background load, limits and power flow); "
                "set dso_check = false",
            )
        )
    if scenario.groups:
        problems.append(Problem("groups", "customer groups are not supported in the live mode"))
    if scenario.supply.generators:
        problems.append(
            Problem("supply.generators", "generators are not supported in the live mode")
        )
    if has_faults(scenario):
        problems.append(
            Problem(
                "comms",
                "communication faults are simulated in-process; against the live service the "
                "messages are real (remove loss_probability, delay_intervals and bid_delay_s)",
            )
        )
    if mech.price_floor_per_kwh < 0:
        problems.append(
            Problem(
                "mechanism.price_floor_per_kwh",
                f"the live mode bills deviations at the clearing price through the service's "
                f"imbalance price, which cannot be negative; the floor is "
                f"{mech.price_floor_per_kwh}",
            )
        )
    if problems:
        raise ValidationError(problems, subject=f"live mode of scenario {scenario.name!r}")


def _api_url(url: str) -> str:
    base = url.rstrip("/")
    return base if base.endswith(API_PREFIX) else base + API_PREFIX


class _Agent:
    """One member speaking to the service with its client credentials (a bearer token)."""

    def __init__(
        self, http: httpx.Client, name: str, member_id: int | None, client_id: str, secret: str
    ) -> None:
        self.http = http
        self.name = name
        self.member_id = member_id
        self.client_id = client_id
        self.client_secret = secret
        self._token: str | None = None

    def _login(self) -> None:
        r = _send(
            self.http,
            "POST",
            "/token",
            data={
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self.client_secret,
            },
        )
        if r.status_code != 200:
            raise LiveServiceError("POST", f"/token (as {self.name})", r.status_code, _detail(r))
        self._token = str(r.json()["access_token"])

    def call(
        self,
        method: str,
        path: str,
        *,
        json: object = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """The JSON answer of a 2xx; a refusal raises :class:`LiveServiceError`.

        An expired token (401) is renewed once with the member's credentials.
        """
        for attempt in (0, 1):
            if self._token is None:
                self._login()
            r = _send(
                self.http,
                method,
                path,
                json=json,
                params=params,
                headers={**(headers or {}), "Authorization": f"Bearer {self._token}"},
            )
            if r.status_code == 401 and attempt == 0:
                self._token = None
                continue
            if not 200 <= r.status_code < 300:
                raise LiveServiceError(
                    method, f"{path} (as {self.name})", r.status_code, _detail(r)
                )
            return r.json()
        raise AssertionError("unreachable")  # pragma: no cover


def _send(http: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    try:
        return http.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        raise LiveServiceError(method, f"{http.base_url}{path.lstrip('/')}", None, exc) from exc


def _detail(r: httpx.Response) -> object:
    try:
        body = r.json()
    except ValueError:
        return r.text
    return body.get("detail", body) if isinstance(body, dict) else body


class LiveService:
    """A running ``transactive serve`` reached as its platform operator; a market factory.

    Call it as :data:`transactive.sim.engine.MarketAccessFactory` (``simulate(...,
    market_access=service)``): each run with a market gets its own :class:`LiveMarket`, kept in
    :attr:`markets` by run name. Close it (or use it as a context manager) to close the HTTP
    connection. Building it signs in as the operator, so a wrong address or credentials (or a
    member that is not the platform operator) are refused before anything runs.

    Parameters
    ----------
    url:
        The service's address (``http://127.0.0.1:8000``; ``/api/v1`` is added if missing).
    operator_id, operator_secret:
        The platform operator's client credentials.
    device_limit_kw:
        Every device contract's maximum power (:data:`DEVICE_LIMIT_KW`).
    timeout_s:
        Per request.

    Raises
    ------
    ValidationError
        A malformed address, empty credentials or a non-positive device limit.
    LiveServiceError
        The service cannot be reached or refuses the credentials.

    """

    def __init__(
        self,
        url: str,
        *,
        operator_id: str,
        operator_secret: str,
        device_limit_kw: float = DEVICE_LIMIT_KW,
        timeout_s: float = 60.0,
    ) -> None:
        problems = []
        if not url.startswith(("http://", "https://")):
            problems.append(Problem("url", f"must be an http:// or https:// address, got {url!r}"))
        if not operator_id:
            problems.append(Problem("operator_id", "the platform operator's client id is needed"))
        if not operator_secret:
            problems.append(
                Problem("operator_secret", "the platform operator's client secret is needed")
            )
        if not (math.isfinite(device_limit_kw) and device_limit_kw > 0):
            problems.append(
                Problem("device_limit_kw", f"must be a positive number, got {device_limit_kw}")
            )
        if problems:
            raise ValidationError(problems, subject="live service")
        self.url = _api_url(url)
        self.device_limit_kw = float(device_limit_kw)
        self.http = httpx.Client(base_url=self.url, timeout=timeout_s)
        self.operator = _Agent(
            self.http, "the platform operator", None, operator_id, operator_secret
        )
        self.markets: dict[str, LiveMarket] = {}
        try:  # the address and the credentials, before anything runs
            me = self.operator.call("GET", "/members/me")
        except LiveServiceError:
            self.http.close()
            raise
        if me.get("role") != "platform_operator":
            self.http.close()
            role = f"member {me.get('id')} is a {me.get('role')}, not the platform operator"
            raise LiveServiceError("GET", "/members/me", 200, role)

    def __call__(self, run_name: str, scenario: Scenario, feeder: Any) -> LiveMarket:
        """The live market of one run (refused by :func:`check_live` first)."""
        check_live(scenario)
        market = LiveMarket(self, run_name, scenario, feeder)
        self.markets[run_name] = market
        return market

    def agent(self, name: str, member: Mapping[str, Any]) -> _Agent:
        """An agent for a member just admitted (its ``MemberCreated`` answer)."""
        return _Agent(
            self.http, name, int(member["id"]), member["client_id"], member["client_secret"]
        )

    def close(self) -> None:
        """Close the HTTP connection."""
        self.http.close()

    def __enter__(self) -> LiveService:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True, eq=False)
class LiveClearing:
    """What the service published of one interval's clearing, as the loop reads a clearing.

    ``allocation_kw`` and ``marginal_fill`` are per row of the request (the devices' awards and
    their fills on their own curves); ``supply_kw`` is the substation's award (its supply into
    the market, + imported); ``interval_id`` the service's interval.
    """

    clearing_price: float
    clearing_quantity_kw: float
    allocation_kw: FloatArray
    marginal_fill: FloatArray
    supply_kw: float
    interval_id: int


class LiveMarket:
    """One run's market on the service (see the module docstring for every step)."""

    def __init__(self, service: LiveService, run_name: str, scenario: Scenario, feeder: Any):
        self.service = service
        self.scenario = scenario
        self.feeder = feeder
        self.run_name = run_name
        op = service.operator
        mech = scenario.mechanism
        label = f"{scenario.name} {run_name}"
        retailer = op.call(
            "POST", "/members", json={"name": f"{label} retailer", "role": "retailer"}
        )
        self.retailer = service.agent("the retailer", retailer)
        market = op.call(
            "POST",
            "/markets",
            json={
                "name": f"{label} real-time",
                "kind": "real_time",
                "feeder": None,
                "interval_s": scenario.market_interval_s,
                "gate_closure_lead_s": 0,
                "price_cap_per_kwh": mech.price_cap_per_kwh,
                "price_floor_per_kwh": mech.price_floor_per_kwh,
                "imbalance_price_per_kwh": max(mech.flat_price_per_kwh, 0.0),
                "supplier_member_id": self.retailer.member_id,
            },
        )
        self.market_id = int(market["id"])
        step = scenario.market_interval_s
        now = datetime.now(UTC)
        first = math.ceil((now + OPEN_AHEAD).timestamp() / step) * step
        self.first_start = datetime.fromtimestamp(first, UTC)
        opened = op.call(
            "POST",
            f"/markets/{self.market_id}/intervals",
            json={"start": self.first_start.isoformat(), "count": scenario.n_intervals},
        )
        self.interval_ids = [int(i["id"]) for i in opened]
        self.homes: dict[int, _Agent] = {}
        self.device_ids: list[str] = []
        self.owners: list[_Agent] = []
        self.contract_ids: list[int] = []
        self.supply_contract_id: int | None = None
        self.answers: list[MarketAnswer] = []
        """Every interval's answer, in order (what the loop got back)."""
        self._last: LiveClearing | None = None

    # ----------------------------------------------------------------- contracts

    def _contracts(self, request: MarketRequest) -> None:
        """Members and contracts for the rows of the first request (see the module)."""
        op = self.service.operator
        ids = request.bids.ids
        if ids is None:  # pragma: no cover - the loop's curves carry the devices' ids
            raise ValueError("the auction's curves carry no device ids")
        node_bus = np.asarray(self.feeder.node_bus)
        label = f"{self.scenario.name} {self.run_name}"
        for row, device in enumerate(ids.tolist()):
            home = int(request.homes[row])
            if request.billed_at_market[row]:
                if home not in self.homes:
                    member = op.call(
                        "POST",
                        "/members",
                        json={"name": f"{label} home {home}", "role": "prosumer"},
                    )
                    self.homes[home] = self.service.agent(f"home {home}", member)
                owner = self.homes[home]
            else:
                owner = self.retailer
            contract = op.call(
                "POST",
                "/contracts",
                json={
                    "member_id": owner.member_id,
                    "market_id": self.market_id,
                    "bus": str(node_bus[int(request.nodes[row])]),
                    "meter_id": device,
                    "max_power_kw": self.service.device_limit_kw,
                    "represents": [device],
                },
            )
            self.device_ids.append(device)
            self.owners.append(owner)
            self.contract_ids.append(int(contract["id"]))
        # the supply sells at most its room (<= the export rating the run gives it) and takes
        # back at most its export rating; unlimited ones are the bids' total plus one (clear's rule)
        extent = float(request.supply.export_capacity_kw)
        if not math.isfinite(extent):
            extent = len(ids) * self.service.device_limit_kw + 1.0
        contract = op.call(
            "POST",
            "/contracts",
            json={
                "member_id": self.retailer.member_id,
                "market_id": self.market_id,
                "bus": str(node_bus[0]),
                "meter_id": "substation",
                "max_power_kw": max(extent, float(request.supply.capacity_kw)),
                "represents": [],
            },
        )
        self.supply_contract_id = int(contract["id"])
        if sorted(self.contract_ids) != self.contract_ids or self.supply_contract_id <= max(
            self.contract_ids, default=0
        ):  # the service clears its curves by contract id: the rows' order must be kept
            raise LiveServiceError(
                "POST", "/contracts", 201, "the service did not number the contracts in order"
            )

    # ----------------------------------------------------------------- clearing

    def clear(self, request: MarketRequest) -> MarketAnswer:
        """Bid every row and the supply, advance to checked, read the prices and awards."""
        from transactive.market import fill_of_allocation, market_curves  # noqa: PLC0415

        if request.t >= len(self.interval_ids):
            raise ValueError(f"interval {request.t} is beyond the {len(self.interval_ids)} opened")
        if not self.contract_ids:
            self._contracts(request)
        ids = request.bids.ids
        if ids is None or ids.tolist() != self.device_ids:
            raise ValueError(
                f"interval {request.t}: the auction's rows are not those of the first interval"
            )
        interval_id = self.interval_ids[request.t]
        cap, floor = request.price_cap, request.price_floor
        # the bids and, last, the supply's curve exactly as clear() appends it
        with_supply = market_curves(
            request.bids, price_cap=cap, price_floor=floor, supply=request.supply
        )
        rows, prices, powers = with_supply.to_points()
        starts = np.searchsorted(rows, np.arange(len(request.bids) + 2))
        owners = [*self.owners, self.retailer]
        contracts = [*self.contract_ids, self.supply_contract_id]
        keys = [*self.device_ids, "supply"]
        for i, (owner, contract, key) in enumerate(zip(owners, contracts, keys, strict=True)):
            lo, hi = starts[i], starts[i + 1]
            points = [
                {"price_per_kwh": p, "power_kw": q}
                for p, q in zip(prices[lo:hi].tolist(), powers[lo:hi].tolist(), strict=True)
            ]
            owner.call(
                "POST",
                "/bids",
                json={"interval_id": interval_id, "contract_id": contract, "points": points},
                headers={"Idempotency-Key": f"{key}@{interval_id}"},
            )
        op = self.service.operator
        op.call("POST", f"/intervals/{interval_id}/advance", params={"force": "true"})  # gate
        op.call("POST", f"/intervals/{interval_id}/advance")  # cleared
        checked = op.call("POST", f"/intervals/{interval_id}/advance")  # checked
        prices_pub = self.retailer.call("GET", f"/intervals/{interval_id}/prices")
        price = float(prices_pub["clearing_price_per_kwh"])
        award: dict[int, float] = {}
        for agent in [*self.homes.values(), self.retailer]:
            for a in agent.call("GET", f"/intervals/{interval_id}/awards"):
                award[int(a["contract_id"])] = float(a["power_kw"])
        missing = [c for c in contracts if c not in award]
        if missing:
            raise LiveServiceError(
                "GET", f"/intervals/{interval_id}/awards", 200, f"no award for contracts {missing}"
            )
        allocation = np.array([award[c] for c in self.contract_ids], dtype=np.float64)
        # each device's fill on its own curve at the price, clear()'s rule
        fill = fill_of_allocation(request.bids, price, allocation, price_cap=cap, price_floor=floor)
        assert self.supply_contract_id is not None
        result = LiveClearing(
            clearing_price=price,
            clearing_quantity_kw=float(checked["clearing_quantity_kw"]),
            allocation_kw=allocation,
            marginal_fill=fill,
            supply_kw=-award[self.supply_contract_id] + 0.0,
            interval_id=interval_id,
        )
        node_price = np.full(self.feeder.n_nodes, price)
        bus_node = {str(b): n for n, b in enumerate(np.asarray(self.feeder.node_bus).tolist())}
        for bus, p in dict(prices_pub["locational_price_per_kwh"]).items():
            if bus in bus_node:
                node_price[bus_node[bus]] = float(p)
        self._last = result
        answer = MarketAnswer(result, node_price)
        self.answers.append(answer)
        return answer

    # ----------------------------------------------------------------- metering

    def metered(self, t: int, energy_kwh: FloatArray) -> None:
        """Every contract's meter reading, the imbalance price, and the interval settled."""
        last = self._last
        if last is None or last.interval_id != self.interval_ids[t]:
            raise ValueError(f"interval {t} was not cleared on the service before its metering")
        energy = np.asarray(energy_kwh, dtype=np.float64)
        if energy.shape != (len(self.contract_ids),):
            raise ValueError(
                f"metered energy of {energy.shape} rows; the auction has {len(self.contract_ids)}"
            )
        supplied = -math.fsum(energy.tolist()) + 0.0
        readings = [
            *zip(self.owners, self.contract_ids, energy.tolist(), strict=True),
            (self.retailer, self.supply_contract_id, supplied),
        ]
        for owner, contract, kwh in readings:
            owner.call(
                "POST",
                "/meter-readings",
                json={"interval_id": last.interval_id, "contract_id": contract, "energy_kwh": kwh},
            )
        op = self.service.operator
        op.call(
            "PATCH",
            f"/markets/{self.market_id}",
            json={"imbalance_price_per_kwh": last.clearing_price},
        )
        op.call("POST", f"/intervals/{last.interval_id}/advance")  # settled
