"""``transactive serve`` as a real server process, and ``transactive audit verify``.

The serve test starts ``transactive serve --demo`` as a subprocess on a free port with a SQLite
file in tmp_path, reads the demo members' credentials from its output, and over real HTTP
(httpx) gets tokens, submits bids, advances an interval to settled (meter readings in between)
and reads its prices and accounts; then it sends SIGTERM and the server exits cleanly. The
audit tests tamper with the log by SQL and expect exit status 1 naming the record.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from transactive.cli import app

runner = CliRunner()
CREDENTIALS = re.compile(
    r"^\s+(?P<name>\S+)\s+id=(?P<id>\d+)\s+role=(?P<role>\S+)\s+"
    r"client_id=(?P<client_id>\S+)\s+client_secret=(?P<secret>\S+)\s*$",
    re.MULTILINE,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _transactive() -> str:
    return str(Path(sys.executable).with_name("transactive"))


def _wait_for(url: str, proc: subprocess.Popen[str], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"server exited with {proc.returncode}:\n{out}\n{err}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server did not answer at {url} within {seconds} s")


def _serve(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], str, Path]:
    port = _free_port()
    db = tmp_path / "platform.db"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("TRANSACTIVE_DATABASE_URL", None)
    proc = subprocess.Popen(
        [_transactive(), "serve", "--port", str(port), "--database-url", f"sqlite:///{db}", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    return proc, f"http://127.0.0.1:{port}", db


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells it
    assert proc.returncode in (0, -signal.SIGTERM), (proc.returncode, out, err)
    assert "Application shutdown complete" in err, err
    return out, err


def _read_credentials(proc: subprocess.Popen[str]) -> tuple[dict[str, dict[str, str]], str]:
    """The demo members' credentials from the server's output (up to the API line)."""
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("API: "):
            break
    text = "".join(lines)
    members = {m["name"]: m for m in (x.groupdict() for x in CREDENTIALS.finditer(text))}
    return members, text


def _login(http: httpx.Client, member: dict[str, str]) -> dict[str, str]:
    r = http.post(
        "/token",
        data={
            "grant_type": "client_credentials",
            "client_id": member["client_id"],
            "client_secret": member["secret"],
        },
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_serve_demo_over_real_http_from_bid_to_settled_prices(tmp_path):
    proc, base, db = _serve(tmp_path, "--demo")
    try:
        members, text = _read_credentials(proc)
        assert set(members) == {
            "operator",
            "dso",
            "wires",
            "retailer",
            "home-1",
            "home-2",
            "home-3",
            "home-4",
            "fleet",
        }
        assert f"{base}/api/v1" in text
        _wait_for(f"{base}/openapi.json", proc)
        with httpx.Client(base_url=f"{base}/api/v1", timeout=30.0) as http:
            heads = {n: _login(http, members[n]) for n in ("operator", "home-2", "home-3", "fleet")}
            contracts = {
                n: http.get("/contracts", headers=heads[n]).json()[0]["id"]
                for n in ("home-2", "home-3", "fleet")
            }
            market = http.get("/markets", headers=heads["home-2"]).json()[0]
            assert market["feeder"] == "case33bw" and market["interval_s"] == 300
            interval = http.get(
                f"/markets/{market['id']}/intervals?state=open", headers=heads["home-2"]
            ).json()[0]["id"]
            for name, points in (
                ("home-2", [(0.20, 6.0), (0.50, 0.0)]),
                ("home-3", [(0.05, 0.0), (0.30, -4.0)]),
                ("fleet", [(0.10, 120.0), (0.40, 20.0)]),
            ):
                r = http.post(
                    "/bids",
                    json={
                        "interval_id": interval,
                        "contract_id": contracts[name],
                        "points": [{"price_per_kwh": p, "power_kw": q} for p, q in points],
                    },
                    headers={**heads[name], "Idempotency-Key": f"{name}-1"},
                )
                assert r.status_code == 201, r.text
            op = heads["operator"]
            states = [
                http.post(f"/intervals/{interval}/advance?force=true", headers=op).json()["state"]
                for _ in range(3)
            ]
            assert states == ["gate_closed", "cleared", "checked"]
            for name in ("home-2", "home-3", "fleet"):
                for award in http.get(f"/intervals/{interval}/awards", headers=heads[name]).json():
                    r = http.post(
                        "/meter-readings",
                        json={
                            "interval_id": interval,
                            "contract_id": award["contract_id"],
                            "energy_kwh": award["energy_kwh"] * 1.1,
                        },
                        headers=heads[name],
                    )
                    assert r.status_code == 201, r.text
            settled = http.post(f"/intervals/{interval}/advance", headers=op)
            assert settled.json()["state"] == "settled", settled.text
            prices = http.get(f"/intervals/{interval}/prices", headers=heads["home-3"]).json()
            assert prices["state"] == "settled"
            assert 0.0 < prices["clearing_price_per_kwh"] <= 1.0
            assert set(prices["locational_price_per_kwh"]) == {"17", "29"}
            accounts = http.get("/accounts", headers=op).json()
            assert sum(a["balance_minor"] for a in accounts) == 0
            assert http.get("/audit/verify", headers=op).json()["ok"] is True
    finally:
        if proc.poll() is None:
            _stop(proc)
    assert (tmp_path / "platform.db.secret").exists()

    # restarted on the same database: the data and the signing key (so the tokens) survive
    proc, base, _ = _serve(tmp_path)
    try:
        _wait_for(f"{base}/openapi.json", proc)
        me = httpx.get(f"{base}/api/v1/members/me", headers=op, timeout=30.0)
        assert me.status_code == 200 and me.json()["name"] == "operator"
    finally:
        out, _err = _stop(proc)
    assert "First platform operator" not in out  # the database had members
    verified = runner.invoke(app, ["audit", "verify", "--database-url", f"sqlite:///{db}"])
    assert verified.exit_code == 0, verified.output
    assert "intact" in verified.output


def test_serve_demo_refuses_a_database_that_has_members(tmp_path):
    proc, base, _db = _serve(tmp_path)
    try:
        _wait_for(f"{base}/openapi.json", proc)
    finally:
        out, _err = _stop(proc)
    assert "First platform operator" in out and "client_secret=" in out
    again, _base, _ = _serve(tmp_path, "--demo")
    out, err = again.communicate(timeout=60)
    assert again.returncode == 1
    assert "empty database" in err


def _seeded(tmp_path: Path) -> str:
    from transactive.platform import db as platform_db  # noqa: PLC0415
    from transactive.platform.demo import admit  # noqa: PLC0415
    from transactive.platform.schemas import Role  # noqa: PLC0415

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    platform_db.upgrade(url)
    engine = platform_db.make_engine(url)
    with platform_db.make_session_factory(engine).begin() as session:
        for k in range(5):
            admit(session, name=f"member {k}", role=Role.PROSUMER)
    engine.dispose()
    return url


def test_audit_verify_names_an_edited_record_and_exits_1(tmp_path):
    url = _seeded(tmp_path)
    ok = runner.invoke(app, ["audit", "verify", "--database-url", url, "--json"])
    assert ok.exit_code == 0, ok.output
    clean = json.loads(ok.stdout)
    assert clean["ok"] is True and clean["n_records"] == 5 and clean["problems"] == []
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        conn.execute(
            "UPDATE audit_record SET payload = json_set(payload, '$.name', 'mallory') WHERE seq = 3"
        )
    broken = runner.invoke(app, ["audit", "verify", "--database-url", url, "--json"])
    assert broken.exit_code == 1
    report = json.loads(broken.stdout)
    assert report["ok"] is False and any("3" in p for p in report["problems"])
    text = runner.invoke(app, ["audit", "verify", "--database-url", url])
    assert text.exit_code == 1 and "BROKEN" in text.output


def test_audit_verify_names_a_removed_record(tmp_path):
    url = _seeded(tmp_path)
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        conn.execute("DELETE FROM audit_record WHERE seq = 2")
    broken = runner.invoke(app, ["audit", "verify", "--database-url", url, "--json"])
    assert broken.exit_code == 1
    assert json.loads(broken.stdout)["problems"]


def test_audit_verify_refuses_a_database_that_was_never_served(tmp_path):
    result = runner.invoke(
        app, ["audit", "verify", "--database-url", f"sqlite:///{tmp_path / 'empty.db'}"]
    )
    assert result.exit_code == 1
    assert "no platform tables" in result.output


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite:///:memory:"])
def test_serve_refuses_a_bad_database_url_with_a_message(url):
    result = runner.invoke(app, ["serve", "--database-url", url])
    assert result.exit_code == 1
    assert "error" in result.output
