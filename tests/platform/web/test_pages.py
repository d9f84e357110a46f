"""The operator's page through its routes (TestClient): sign-in, roles, fragments, escaping.

Who sees what (Hu et al. 2019 §3.1.1, §3.2): the operator every section and member; the DSO
the market, the curves (the market's aggregate only from at least
``Settings.aggregate_min_members`` members, per-bus aggregates under the API's rule), the
feeder map and the audit state; any other member the market and only its own account.
"""

from __future__ import annotations

import re

import sqlalchemy as sa

from tests.platform.test_api_common import API, ApiPlatform
from tests.platform.web.conftest import sign_in
from transactive.platform import db as platform_db
from transactive.platform.models import AuditRecord
from transactive.platform.web import views
from transactive.platform.web.routes import COOKIE

SECTIONS = ("market", "curves", "map", "accounts", "audit")


def _sections(html: str) -> set[str]:
    return set(re.findall(r'data-fragment="([a-z]+)"', html))


def _clear_first_interval(web: ApiPlatform, bidders: tuple[str, ...]) -> int:
    """Bids of ``bidders`` in the first interval, then gate closure and clearing."""
    for k, name in enumerate(bidders):
        r = web.bid(name, [(0.05, 6.0), (0.3, 1.0 + k)], key=f"web-{name}")
        assert r.status_code == 201, r.text
    interval = web.demo.interval_ids[0]
    web.advance(interval, force=True)
    web.advance(interval)
    return interval


# ------------------------------------------------------------------------------- sign in


def test_sign_in_sets_an_httponly_strict_cookie_and_sign_out_clears_it(web):
    member = web.demo.member("operator")
    r = web.client.post(
        "/ui/login",
        data={"client_id": member.client_id, "client_secret": member.client_secret},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/ui/"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/ui", "Max-Age=3600"):
        assert attribute in cookie, cookie
    assert "Secure" not in cookie  # plain HTTP here; set over HTTPS
    # the cookie's token is the API's: it works as a bearer token too
    token = r.cookies[COOKIE]
    web.client.cookies.clear()
    me = web.client.get(f"{API}/members/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["name"] == "operator"
    page = web.client.get("/ui/", headers={"Cookie": f"{COOKIE}={token}"})
    assert page.status_code == 200 and "data-viewer>operator<" in page.text
    out = web.client.post(
        "/ui/logout", headers={"Cookie": f"{COOKIE}={token}"}, follow_redirects=False
    )
    assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    assert f'{COOKIE}=""' in out.headers["set-cookie"] and "Max-Age=0" in out.headers["set-cookie"]


def test_sign_in_refusals_say_why(web):
    member = web.demo.member("home-1")
    wrong = web.client.post(
        "/ui/login", data={"client_id": member.client_id, "client_secret": "not-it"}
    )
    assert wrong.status_code == 401 and "unknown client or wrong secret" in wrong.text
    assert COOKIE not in wrong.headers.get("set-cookie", "")
    unknown = web.client.post("/ui/login", data={"client_id": "m-nobody", "client_secret": "x"})
    assert unknown.status_code == 401 and "unknown client or wrong secret" in unknown.text
    missing = web.client.post("/ui/login", data={"client_id": member.client_id})
    assert missing.status_code == 401 and "enter the client secret" in missing.text
    elsewhere = web.client.post(
        "/ui/login",
        data={"client_id": member.client_id, "client_secret": member.client_secret},
        headers={"Origin": "https://attacker.example"},
    )
    assert elsewhere.status_code == 403 and "another site" in elsewhere.text
    # a suspended member cannot sign in, and its open page stops working at once
    cookie = sign_in(web, "home-1")
    r = web.client.patch(
        f"{API}/members/{member.member_id}",
        json={"status": "suspended"},
        headers=web.auth("operator"),
    )
    assert r.status_code == 200, r.text
    suspended = web.client.post(
        "/ui/login", data={"client_id": member.client_id, "client_secret": member.client_secret}
    )
    assert suspended.status_code == 403 and "suspended" in suspended.text
    page = web.client.get("/ui/", headers=cookie, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/ui/login"
    assert web.client.get("/ui/fragments/market", headers=cookie).status_code == 401


def test_without_a_session_the_page_sends_to_the_login_and_fragments_answer_401(web):
    assert web.client.get("/", follow_redirects=False).headers["location"] == "/ui/"
    page = web.client.get("/ui/", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/ui/login"
    login = web.client.get("/ui/login")
    assert login.status_code == 200 and 'name="client_secret"' in login.text
    for topic in SECTIONS:
        assert web.client.get(f"/ui/fragments/{topic}").status_code == 401
    bad = web.client.get(
        "/ui/", headers={"Cookie": f"{COOKIE}=not-a-token"}, follow_redirects=False
    )
    assert bad.status_code == 303
    assert web.client.get("/ui/events").status_code == 401


def test_every_page_forbids_other_origins_and_is_not_cached(web):
    page = web.client.get("/ui/", headers=sign_in(web, "operator"))
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert page.headers["Cache-Control"] == "no-store"
    # every asset the page names is served by the package
    assets = re.findall(r'(?:href|src)="(/ui/static/[^"]+)"', page.text)
    assert {a.rsplit("/", 1)[1] for a in assets} == {"page.css", "live.js"}
    for asset in assets:
        assert web.client.get(asset).status_code == 200
    assert not re.search(r'(?:href|src)="(?:https?:)?//', page.text)


# --------------------------------------------------------------------------------- roles


def test_each_role_sees_its_sections(web):
    _clear_first_interval(web, ("home-1", "home-2", "home-3"))
    operator = web.client.get("/ui/", headers=sign_in(web, "operator")).text
    dso = web.client.get("/ui/", headers=sign_in(web, "dso")).text
    home = web.client.get("/ui/", headers=sign_in(web, "home-1")).text
    assert _sections(operator) == set(SECTIONS)
    assert _sections(dso) == set(SECTIONS)
    assert _sections(home) == {"market", "accounts"}
    prosumer = sign_in(web, "home-1")
    for topic in ("curves", "map", "audit"):
        r = web.client.get(f"/ui/fragments/{topic}", headers=prosumer)
        assert r.status_code == 403 and "a prosumer does not see" in r.text
    assert web.client.get("/ui/fragments/nothing", headers=prosumer).status_code == 404


def test_a_member_never_sees_another_members_account_through_the_page(web):
    interval = _clear_first_interval(web, ("home-1", "home-2", "home-3"))
    others = [m for m in web.demo.members if m.name != "home-1"]
    for headers in (sign_in(web, "home-1"),):
        page = web.client.get("/ui/", headers=headers).text
        accounts = web.client.get("/ui/fragments/accounts", headers=headers).text
        market = web.client.get("/ui/fragments/market", headers=headers).text
        for html in (page, accounts, market):
            for other in others:
                assert f">{other.name}<" not in html
                assert other.client_id not in html
                assert f'data-member-id="{other.member_id}"' not in html
        # its own award only: one contract, its own
        own = web.contract("home-1")
        awarded = re.findall(r'data-award-contract="(\d+)"', accounts)
        assert awarded == [str(own)], accounts
        assert f"Awards in interval #{interval} (yours)" in accounts
        assert "data-member-name>home-1<" in accounts
        # naming another market or member in the query changes nothing
        assert (
            web.client.get(
                f"/ui/fragments/accounts?market={web.demo.market_id}", headers=headers
            ).text
            == accounts
        )
    # the DSO sees only itself too; the operator sees everyone
    dso = web.client.get("/ui/fragments/accounts", headers=sign_in(web, "dso")).text
    assert re.findall(r"data-member-name>([^<]+)<", dso) == ["dso"]
    operator = web.client.get("/ui/fragments/accounts", headers=sign_in(web, "operator")).text
    names = re.findall(r"data-member-name>([^<]+)<", operator)
    assert names == [m.name for m in web.demo.members]
    assert len(re.findall(r"data-award-contract=", operator)) == 3


def test_member_names_are_escaped(web):
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    home = web.demo.member("home-2")
    r = web.client.patch(
        f"{API}/members/{home.member_id}", json={"name": evil}, headers=web.auth("operator")
    )
    assert r.status_code == 200, r.text
    for headers in (sign_in(web, "operator"), sign_in(web, "home-2")):
        html = web.client.get("/ui/", headers=headers).text
        assert evil not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html


def test_the_dso_sees_the_markets_aggregate_only_from_enough_members(web):
    # one bidder: the market's aggregate would be that member's curve
    r = web.bid("home-1", [(0.05, 6.0), (0.3, 1.0)], key="alone")
    assert r.status_code == 201, r.text
    interval = web.demo.interval_ids[0]
    web.advance(interval, force=True)
    web.advance(interval)
    dso = web.client.get("/ui/fragments/curves", headers=sign_in(web, "dso")).text
    operator = web.client.get("/ui/fragments/curves", headers=sign_in(web, "operator")).text
    assert "data-hidden" in dso and "at least 2" in dso and 'data-chart="curves"' not in dso
    assert "data-bus=" not in dso  # bus 6 alone is not shown, nor pooled
    assert 'data-chart="curves"' in operator and 'data-bus="6"' in operator


def test_the_dso_sees_per_bus_aggregates_under_the_apis_rule(web):
    interval = _clear_first_interval(web, ("home-1", "home-2", "home-3"))
    dso_headers = sign_in(web, "dso")
    dso = web.client.get("/ui/fragments/curves", headers=dso_headers).text
    api = web.client.get(f"{API}/intervals/{interval}/aggregates", headers=web.auth("dso")).json()
    shown = re.findall(r'data-bus="([^"]+)"', dso)
    assert shown == [a["bus"] for a in api] == ["17"]  # home-2 and home-3; home-1's bus 6 hidden
    assert 'data-chart="curves"' in dso  # three members: the market's aggregate is shown
    assert 'data-series="demand"' in dso and 'data-series="supply"' in dso
    assert 'data-series="clearing"' in dso
    operator = web.client.get("/ui/fragments/curves", headers=sign_in(web, "operator")).text
    assert re.findall(r'data-bus="([^"]+)"', operator) == ["17", "6"]
    # bus 17's net demand at the price: both curves at 0.08 (6 - 5 * 0.03/0.25 k-th slopes)
    row = re.search(r'data-bus="17"><td>17</td><td class="num">2</td><td class="num">([^<]+)<', dso)
    assert row is not None
    expected = sum(6.0 - (6.0 - (1.0 + k)) * (0.08 - 0.05) / 0.25 for k in (1, 2))
    assert abs(float(row.group(1)) - expected) < 0.01


# ---------------------------------------------------------------------- the sections


def test_the_market_section_lists_the_day_and_charts_the_clearing_price(web):
    headers = sign_in(web, "home-4")
    before = web.client.get("/ui/fragments/market", headers=headers).text
    interval = web.demo.interval_ids[0]
    assert f'data-interval-id="{interval}" data-state="open"' in before
    assert 'data-series="price"' not in before and "no interval of this day has a price" in before
    assert f"interval #{interval}" in before  # the next gate
    _clear_first_interval(web, ("home-1", "home-2"))
    after = web.client.get("/ui/fragments/market", headers=headers).text
    assert f'data-interval-id="{interval}" data-state="cleared"' in after
    assert f'data-latest-cleared="{interval}"' in after
    assert 'data-series="price"' in after
    rows = re.findall(r'data-interval-id="(\d+)"', after)
    assert rows == [str(i) for i in web.demo.interval_ids]  # the demo's hour, one day


def test_the_map_shows_the_dsos_last_check(web):
    headers = sign_in(web, "dso")
    assert (
        "has not checked an interval" in web.client.get("/ui/fragments/map", headers=headers).text
    )
    interval = _clear_first_interval(web, ("home-1", "home-2", "home-3"))
    web.advance(interval)  # the DSO's check
    html = web.client.get("/ui/fragments/map", headers=headers).text
    assert f'data-map-interval="{interval}"' in html
    assert len(re.findall(r"data-node=", html)) == 33
    assert len(re.findall(r"data-branch=", html)) == 32
    assert "secure" in html and "no violation" in html


def test_the_audit_section_verifies_the_chain_and_names_an_edit(web):
    headers = sign_in(web, "operator")
    html = web.client.get("/ui/fragments/audit", headers=headers).text
    head = re.search(r'data-head-seq="(\d+)" data-verified="(\w+)"', html)
    assert head is not None and head.group(2) == "ok"
    verified = web.client.get(f"{API}/audit/verify", headers=web.auth("operator")).json()
    assert int(head.group(1)) == verified["n_records"] and verified["head_hash"] in html
    # a record edited before this process checked it is found
    engine = platform_db.make_engine(web.url)
    with engine.begin() as conn:
        conn.execute(
            sa.update(AuditRecord).where(AuditRecord.seq == 3).values(kind="member.forged")
        )
    engine.dispose()
    fresh = views.ChainWatch(chunk=4)
    factory = platform_db.make_session_factory(engine := platform_db.make_engine(web.url))
    with factory.begin() as session:
        first = views.audit_view(session, watch=fresh)
        assert not first.complete and first.chain.checked_through_seq == 4
        assert first.chain.problems == (
            "seq 3: edited: the stored hash does not match its contents",
        )
        while not views.audit_view(session, watch=fresh).complete:
            pass
        final = views.audit_view(session, watch=fresh)
    engine.dispose()
    assert final.chain.n_checked == final.head_seq and not final.ok


def test_a_bad_market_is_named(web):
    headers = sign_in(web, "operator")
    missing = web.client.get("/ui/?market=999", headers=headers)
    assert missing.status_code == 404 and "market 999" in missing.text
    wrong = web.client.get("/ui/?market=abc", headers=headers)
    assert wrong.status_code == 422 and "market" in wrong.text
