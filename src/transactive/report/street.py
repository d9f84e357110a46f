"""The P2P street's report: one self-contained HTML page from a street's results directory.

:func:`write_street_report` reads what :func:`transactive.sim.p2p_street.write_street_results`
wrote (``summary.json``, ``trades.csv``, ``intervals.csv``, ``homes.csv``, ``network.json``,
``verify.json``, ``scenario.toml``; a missing or unreadable file is named) and writes
``report.html``: the headline figures, the local price against the utility tariff over the day,
PV used on the street against PV exported upstream, each home's bill against its baseline (the
same street on the tariff with net metering), the network's fees and losses of the trades as
the DSO posted them on the ledger (``network.charges``) and the trades its check refused, which
the ledger reversed (``trades.refused``), the ledger's verification (heads equal, every node's
``ledger verify``, the DSO's node included) and the trades table. Figures are drawn on the Agg
canvas and embedded as base64 PNG; the page loads nothing from anywhere (Hu et al. 2019, §2.1,
§3.1.2: the Brooklyn Microgrid's P2P trading on a ledger every participant holds).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from transactive.errors import Problems

__all__ = ["read_street_results", "write_street_report"]

_DPI = 110
_FILES = (
    "summary.json",
    "trades.csv",
    "intervals.csv",
    "homes.csv",
    "network.json",
    "verify.json",
    "scenario.toml",
)
_CSS = """
body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1f3b57;color:#fff;padding:1em 2em}main{padding:1em 2em;max-width:1200px}
h2{border-bottom:1px solid #ccc;padding-bottom:.2em}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.2em .6em;text-align:right}th{background:#eee}
td.l,th.l{text-align:left}.ok{color:#1a7f37;font-weight:bold}.bad{color:#b42318;font-weight:bold}
.grid{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}img{width:100%}
.scroll{max-height:28em;overflow:auto}.note{color:#555}
"""


def read_street_results(results_dir: str | Path) -> dict[str, Any]:
    """Read a street's results directory.

    Raises
    ------
    ValidationError
        A file is missing or unreadable (every one named).

    """
    folder = Path(results_dir)
    problems = Problems(subject=f"street results {str(folder)!r}")
    out: dict[str, Any] = {}
    for name in _FILES:
        path = folder / name
        if not path.is_file():
            problems.add(name, "is missing")
            continue
        try:
            if name.endswith(".json"):
                out[name] = json.loads(path.read_text(encoding="utf-8"))
            elif name.endswith(".csv"):
                out[name] = pd.read_csv(path)
            else:
                out[name] = path.read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:
            problems.add(name, f"cannot be read: {exc}")
    problems.raise_if_any()
    return out


def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(png: str, caption: str, key: str) -> str:
    return (
        f'<figure data-figure="{key}"><img alt="{html.escape(caption)}" style="max-width:660px" '
        f'src="data:image/png;base64,{png}"><figcaption>{html.escape(caption)}</figcaption>'
        "</figure>"
    )


def _price_figure(iv: pd.DataFrame, sc: dict[str, Any], currency: str) -> str:
    fig = Figure(figsize=(6, 3.4))
    ax = fig.add_subplot()
    hour = iv["hour"].to_numpy()
    tariff = sc["tariff"]
    ax.step(
        hour,
        np.full(hour.size, tariff["import_price_per_kwh"]),
        where="post",
        label="utility import price",
        color="#b42318",
    )
    ax.step(
        hour,
        np.full(hour.size, tariff["feed_in_price_per_kwh"]),
        where="post",
        label="feed-in (net metering) price",
        color="#6b7280",
    )
    price = iv["mean_price_per_kwh"].to_numpy(dtype=float)
    ax.plot(hour, price, "o-", ms=3, label="local P2P price (volume-weighted)", color="#1a7f37")
    ax.set_xlabel("hour of the day")
    ax.set_ylabel(f"{currency}/kWh")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="center left")
    fig.tight_layout()
    return _png(fig)


def _pv_figure(iv: pd.DataFrame) -> str:
    fig = Figure(figsize=(6, 3.4))
    ax = fig.add_subplot()
    hour = iv["hour"].to_numpy()
    to_kw = 4.0  # quarter-hour kWh to kW
    self_kw = iv["pv_self_kwh"].to_numpy() * to_kw
    traded_kw = iv["traded_kwh"].to_numpy() * to_kw
    export_kw = iv["grid_export_kwh"].to_numpy() * to_kw
    width = 0.25
    ax.bar(hour, self_kw, width, align="edge", label="PV used in its home", color="#f59e0b")
    ax.bar(
        hour,
        traded_kw,
        width,
        bottom=self_kw,
        align="edge",
        label="PV sold to neighbours (P2P)",
        color="#1a7f37",
    )
    ax.bar(
        hour,
        export_kw,
        width,
        bottom=self_kw + traded_kw,
        align="edge",
        label="PV exported upstream",
        color="#9ca3af",
    )
    ax.step(
        hour,
        iv["load_kwh"].to_numpy() * to_kw,
        where="post",
        color="#1f3b57",
        label="the street's load",
    )
    ax.set_xlabel("hour of the day")
    ax.set_ylabel("kW")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return _png(fig)


def _bills_figure(homes: pd.DataFrame, currency: str) -> str:
    fig = Figure(figsize=(6, 3.4))
    ax = fig.add_subplot()
    x = np.arange(len(homes))
    ax.bar(
        x - 0.2,
        homes["baseline_bill"],
        0.4,
        label="baseline (tariff, net metering)",
        color="#9ca3af",
    )
    ax.bar(x + 0.2, homes["bill"], 0.4, label="P2P on the ledger", color="#1a7f37")
    ax.axhline(0, color="#222", lw=0.6)
    labels = [f"{h}\n{kwp:g} kWp" for h, kwp in zip(homes["home_id"], homes["pv_kwp"], strict=True)]
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel(f"bill of the day ({currency}; < 0: earns)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _network_figure(iv: pd.DataFrame, currency: str) -> str:
    fig = Figure(figsize=(6, 3.4))
    ax = fig.add_subplot()
    hour = iv["hour"].to_numpy()
    ax.bar(
        hour,
        iv["ac_loss_kwh"].to_numpy() * 1000.0,
        0.25,
        align="edge",
        label="losses allocated to the trades (Wh)",
        color="#7c3aed",
    )
    ax.set_xlabel("hour of the day")
    ax.set_ylabel("Wh per quarter-hour")
    ax2 = ax.twinx()
    ax2.step(
        hour,
        iv["feeder_loss_kw"].to_numpy() * 1000.0,
        where="post",
        color="#b42318",
        label="feeder losses, all flows (W; incl. the transformer's no-load loss)",
    )
    ax2.set_ylabel("W")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="upper left")
    del currency
    fig.tight_layout()
    return _png(fig)


def _fmt(value: Any, decimals: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:,.{decimals}f}"
    return html.escape(str(value))


def _table(frame: pd.DataFrame, columns: dict[str, tuple[str, int]]) -> str:
    head = "".join(
        f"<th class='{'l' if d < 0 else ''}'>{html.escape(label)}</th>"
        for label, d in columns.values()
    )
    rows = []
    for _, row in frame.iterrows():
        cells = "".join(
            f"<td class='l'>{html.escape(str(row[c]))}</td>"
            if d < 0
            else f"<td>{_fmt(row[c], d)}</td>"
            for c, (_label, d) in columns.items()
        )
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _ledger_section(verify: dict[str, Any]) -> str:
    def mark(ok: bool, yes: str = "ok", no: str = "FAILED") -> str:
        return f"<span class='{'ok' if ok else 'bad'}'>{yes if ok else no}</span>"

    rows = []
    for member, head in sorted(verify["heads"].items()):
        report = verify["verify"][member]
        problems = "; ".join(report["problems"]) or "-"
        rows.append(
            f"<tr><td class='l'>{html.escape(member)}</td><td>{head['seq']}</td>"
            f"<td class='l'><code>{html.escape(str(head['head'])[:16])}…</code></td>"
            f"<td>{report['blocks']}</td><td>{mark(report['ok'])}</td>"
            f"<td class='l'>{html.escape(problems)}</td></tr>"
        )
    return (
        f"<p>Ledger <code>{html.escape(verify['ledger_id'])}</code>: heads equal on every node: "
        f"{mark(verify['heads_equal'], 'yes', 'NO')}; contract states equal: "
        f"{mark(verify['states_equal'], 'yes', 'NO')}. Each node's store checked end to end "
        "by <code>transactive ledger verify</code> (hash chain, contract replayed, reading "
        "tables):</p><table><tr><th class='l'>node</th><th>seq</th><th class='l'>head</th>"
        "<th>blocks</th><th>ledger verify</th><th class='l'>problems</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _page(res: dict[str, Any]) -> str:
    s = res["summary.json"]
    iv: pd.DataFrame = res["intervals.csv"]
    homes: pd.DataFrame = res["homes.csv"]
    trades: pd.DataFrame = res["trades.csv"]
    network = res["network.json"]
    import tomllib  # noqa: PLC0415

    sc = tomllib.loads(res["scenario.toml"])
    cur = str(s["currency"])
    esc = html.escape
    network_total = float(s["network_charges"]) + float(s["loss_charges"])
    cards = [
        ("trades", f"{s['trades']:,}", f"{_fmt(s['traded_kwh'], 1)} kWh"),
        (
            "PV used on the street",
            f"{_fmt(s['pv_used_on_street_pct'], 1)} %",
            f"baseline {_fmt(s['baseline_pv_used_on_street_pct'], 1)} % (its own home only)",
        ),
        (
            "the street's bill",
            f"{_fmt(s['street_bill'])} {esc(cur)}",
            f"baseline {_fmt(s['baseline_street_bill'])} {esc(cur)}",
        ),
        (
            "network charges (ledger)",
            f"{_fmt(network_total, 4)} {esc(cur)}",
            f"posted by the DSO: fees {_fmt(s['network_charges'], 4)}, losses "
            f"{_fmt(s['loss_charges'], 4)}",
        ),
        (
            "losses of the trades",
            f"{_fmt(s['ac_trade_loss_kwh'] * 1000.0, 1)} Wh",
            f"trades refused by the DSO (reversed on the ledger): {s['refused_trades']}",
        ),
        (
            "ledger",
            "verified" if s["ledger"]["all_verified"] else "NOT verified",
            f"heads equal: {_fmt(s['ledger']['heads_equal'])}; {s['ledger']['blocks']} blocks",
        ),
    ]
    card_html = "".join(
        f"<div style='display:inline-block;border:1px solid #ccc;padding:.5em 1em;margin:.3em;"
        f"background:#fff'><div class='note'>{esc(a)}</div><div style='font-size:1.4em'>{b}"
        f"</div><div class='note'>{c}</div></div>"
        for a, b, c in cards
    )
    refused = [r for item in network for r in item["refused"]]
    insecure = [item for item in network if not item["secure"]]
    refused_in = sum(1 for item in network if item["refused"])
    dso_id = esc(str(s["ledger"]["dso"]))
    dso = (
        f"<p>The DSO's check (its node <code>{dso_id}</code>: "
        "<code>market.p2p.network.check_trades</code>, the AC power flow of the feeder) passed "
        f"every interval's trades: {len(insecure)} insecure intervals, no refused trade.</p>"
        if not refused and not insecure
        else f"<p class='bad'>The DSO's check refused {len(refused)} trades "
        f"({_fmt(s['refused_kwh'], 3)} kWh) in {refused_in} intervals; "
        f"{len(insecure)} intervals stayed insecure after its refusals. Its node "
        f"<code>{dso_id}</code> posted them on the ledger (<code>trades.refused</code>) before "
        "settlement, and the ledger reversed them: no energy payment and no fees, their traders "
        "settled that energy against the grid, and no figure above counts them.</p>"
        + _table(
            pd.DataFrame(
                refused,
                columns=["trade_id", "seller", "buyer", "energy_kwh", "price_per_kwh", "violation"],
            ),
            {
                "trade_id": ("trade", -1),
                "seller": ("seller", -1),
                "buyer": ("buyer", -1),
                "energy_kwh": ("kWh", 3),
                "price_per_kwh": (f"{cur}/kWh", 4),
                "violation": ("violation (the DSO's reason on the ledger)", -1),
            },
        )
    )
    homes_cols = {
        "home_id": ("home", -1),
        "bus": ("bus", 0),
        "pv_kwp": ("PV kWp", 1),
        "load_kwh": ("load kWh", 2),
        "pv_kwh": ("PV kWh", 2),
        "pv_self_kwh": ("PV used at home kWh", 2),
        "sold_kwh": ("sold kWh", 3),
        "bought_kwh": ("bought kWh", 3),
        "grid_import_kwh": ("grid import kWh", 3),
        "grid_export_kwh": ("grid export kWh", 3),
        "energy_paid": (f"P2P energy paid {cur}", 4),
        "platform_fees": (f"platform fees {cur}", 4),
        "refused_kwh": ("refused kWh", 3),
        "network_charges": (f"network fees {cur} (ledger)", 4),
        "loss_charges": (f"loss charges {cur} (ledger)", 4),
        "network_fees_flat": (f"flat network fee {cur}", 4),
        "ac_network_charge": (f"AC charge {cur} computed", 5),
        "bill": (f"bill {cur}", 4),
        "baseline_bill": (f"baseline {cur}", 4),
    }
    trades = trades.assign(
        status=np.where(trades["refused"].astype(bool), "reversed", "settled"),
        ledger_buyer=trades["ledger_buyer_network_fee"] + trades["ledger_buyer_loss_charge"],
        ledger_seller=trades["ledger_seller_network_fee"] + trades["ledger_seller_loss_charge"],
    )
    trade_cols = {
        "trade_id": ("trade", -1),
        "seller": ("seller", -1),
        "buyer": ("buyer", -1),
        "energy_kwh": ("kWh", 3),
        "price_per_kwh": (f"{cur}/kWh", 4),
        "status": ("on the ledger", -1),
        "ac_loss_kwh": ("loss kWh", 6),
        "ledger_buyer": (f"buyer's network charge {cur} (ledger)", 4),
        "ledger_seller": (f"seller's network charge {cur} (ledger)", 4),
    }
    notes = "".join(f"<li>{esc(n)}</li>" for n in s["notes"])
    sections = [
        f"<section><h2>At a glance</h2>{card_html}<ul class='note'>{notes}</ul></section>",
        "<section><h2>Prices and PV</h2><div class='grid'>"
        + _figure(_price_figure(iv, sc, cur), "Local P2P price against the utility tariff", "price")
        + _figure(_pv_figure(iv), "PV used on the street against PV exported upstream", "pv")
        + "</div></section>",
        "<section><h2>Bills against the baseline</h2><div class='grid'>"
        + _figure(_bills_figure(homes, cur), "Each home's bill: P2P against baseline", "bills")
        + "</div>"
        + _table(homes, homes_cols)
        + "</section>",
        "<section><h2>Network fees and losses</h2><div class='grid'>"
        + _figure(_network_figure(iv, cur), "Losses of the trades and of the feeder", "network")
        + "</div><p>The DSO's node computes every standing trade's network charges "
        "(<code>market.p2p.network.trade_charges</code>: the AC flow of the feeder, the losses "
        "allocated to the trade's buyer's and seller's legs at the loss price, use of system) "
        "and posts them on the ledger (<code>network.charges</code>, whole minor units, "
        "negative a credit), which settles them in place of the flat fee. On the ledger: "
        f"network fees {_fmt(s['network_charges'], 4)} {esc(cur)}, loss charges "
        f"{_fmt(s['loss_charges'], 4)} {esc(cur)} ({s['network_charge_entries']:,} entries, "
        f"each within one minor unit of the network layer's "
        f"{_fmt(s['ac_network_charges'], 6)} {esc(cur)} in all), flat network fee "
        f"{_fmt(s['network_fees_flat'], 4)} {esc(cur)}; platform fees "
        f"{_fmt(s['platform_fees'], 4)} {esc(cur)}. Losses allocated to the trades: "
        f"{_fmt(s['ac_trade_loss_kwh'] * 1000.0, 3)} Wh.</p>" + dso + "</section>",
        "<section><h2>Ledger verification</h2>"
        + _ledger_section(res["verify.json"])
        + "</section>",
        f"<section><h2>Trades ({len(trades):,})</h2><div class='scroll'>"
        + _table(trades, trade_cols)
        + "</div></section>",
        "<section><h2>Scenario</h2><details><summary>The scenario exactly as run "
        f"(scenario.toml)</summary><pre>{esc(res['scenario.toml'])}</pre></details></section>",
    ]
    meta = (
        f"SimBench grid {esc(str(s['grid']))} · {s['homes']} homes, each its own ledger node · "
        f"day {s['day_of_year']} of 2016 · {s['intervals']} quarter-hours"
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "img-src data:; style-src 'unsafe-inline'\">"
        f"<title>transactive: {esc(str(s['scenario']))}</title><style>{_CSS}</style></head>"
        f"<body><header><h1>Scenario “{esc(str(s['scenario']))}”: a P2P street on the ledger "
        f"against the utility tariff</h1><div>{meta}</div></header><main>{''.join(sections)}"
        "</main></body></html>\n"
    )


def write_street_report(results_dir: str | Path) -> Path:
    """Write ``report.html`` into a street's results directory and return its path.

    Raises
    ------
    ValidationError
        A results file is missing or unreadable (every one named).

    """
    res = read_street_results(results_dir)
    path = Path(results_dir) / "report.html"
    path.write_text(_page(res), encoding="utf-8")
    return path
