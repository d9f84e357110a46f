"""``transactive mechanisms compare``: every mechanism of the project on one scenario's case.

A face only: it reads a scenario (a built-in name or a TOML file), builds its comparison case
(:func:`transactive.coordination.evaluation.case_from_scenario`), runs
:func:`~transactive.coordination.evaluation.compare_mechanisms` and prints two rich tables (one
row per mechanism: efficiency, gap, rounds, messages and numbers per agent, the incentive
probe's best gain; then the loss table: rounds to tolerance and final gap per message loss
probability) or, with ``--json``, one strict JSON object (no ``NaN`` or ``Infinity``: ``null``).
Bad input (an unknown scenario, a loss probability outside ``[0, 1)`` or not a number, a bad
count) exits with status 2 and the problem, before anything runs. The numerical stack is
imported inside the command, so ``transactive --help`` stays light.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from transactive.coordination.evaluation import MechanismComparison, MechanismRow

__all__ = ["register"]

mechanisms_app = typer.Typer(
    name="mechanisms",
    help="Compare the project's market mechanisms (Hu et al. 2019, §3.1.3 and §3.5).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``mechanisms`` group (``compare``) to the console app."""
    mechanisms_app.command("compare")(compare_command)
    app.add_typer(mechanisms_app)


def _losses(text: str) -> tuple[float, ...]:
    """``"0,0.1,0.3"`` as probabilities in ``[0, 1)``; a bad entry is a usage error (exit 2)."""
    parts = [p.strip() for p in text.split(",")]
    values: list[float] = []
    bad: list[str] = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            bad.append(f"{part!r} is not a number")
            continue
        if not (math.isfinite(value) and 0.0 <= value < 1.0):
            bad.append(f"{part!r} is not a probability in [0, 1)")
            continue
        values.append(value)
    if not parts or parts == [""]:
        bad = ["give at least one probability, e.g. 0,0.1,0.3"]
    if bad:
        raise typer.BadParameter("; ".join(bad), param_hint="'--losses'")
    return tuple(values)


def _num(value: float | None) -> float | None:
    """A finite float, or None (JSON null) for NaN / inf / missing."""
    return None if value is None or not math.isfinite(value) else float(value)


def _fmt(value: float | None, spec: str = ".3g") -> str:
    number = _num(value)
    if number is None:
        return "-" if value is None else ("inf" if value > 0 else "-inf")
    return format(number, spec)


#: A gain within this share of the truthful utility (or of 1) is rounding, shown as none.
_GAIN_RTOL = 1e-9


def _gains(row: MechanismRow) -> bool:
    """Whether the probe found a misreport that beats the truth by more than rounding."""
    probe = row.probe
    if probe.gain is None:
        return False
    scale = max(abs(probe.truthful_utility or 0.0), 1.0)
    return probe.gain > _GAIN_RTOL * scale


def _gain_text(row: MechanismRow) -> str:
    """The probe's best gain and its share of the truthful utility; "none" when nothing beats it."""
    probe = row.probe
    if probe.agent is None:
        return "n/a"
    if not _gains(row) or probe.gain is None:
        return "none"
    share = probe.relative_gain
    if share is None or not math.isfinite(share):
        return f"+{_fmt(probe.gain)} (from 0)"
    return f"+{_fmt(probe.gain)} ({_fmt(100 * share, '.2g')} %)"


def _probe_text(row: MechanismRow) -> str:
    probe = row.probe
    if probe.agent is None:
        return probe.utility
    if not _gains(row):
        return (
            f"{probe.agent}: no misreport of {probe.family_size} beats the truth "
            f"(utility: {probe.utility})"
        )
    return (
        f"{probe.agent}: best of {probe.family_size} misreports '{probe.best_misreport}' "
        f"gains {_fmt(probe.gain)} over {_fmt(probe.truthful_utility)} (utility: {probe.utility})"
    )


def _rounds_text(rounds: int | None, max_rounds: int) -> str:
    return str(rounds) if rounds is not None else f"not within {max_rounds}"


def _report(comparison: MechanismComparison) -> dict[str, Any]:
    rows = []
    for r in comparison.rows:
        p = r.probe
        rows.append(
            {
                "name": r.name,
                "kind": r.kind,
                "measure": r.measure,
                "unit": r.unit,
                "achieved": _num(r.achieved),
                "optimum": _num(r.optimum),
                "efficiency": _num(r.efficiency),
                "efficiency_rule": r.efficiency_rule,
                "relative_gap": _num(r.relative_gap),
                "rounds": r.rounds,
                "converged": r.converged,
                "tolerance": _num(r.tolerance),
                "messages_per_agent": _num(r.messages_per_agent),
                "numbers_per_agent": _num(r.numbers_per_agent),
                "agents": r.agents,
                "incentive_probe": {
                    "agent": p.agent,
                    "best_misreport": p.best_misreport,
                    "gain": _num(p.gain),
                    "relative_gain": _num(p.relative_gain),
                    "truthful_utility": _num(p.truthful_utility),
                    "family_size": p.family_size,
                    "utility": p.utility,
                },
                "losses": [
                    {
                        "loss_probability": f.loss_probability,
                        "rounds_to_tolerance": f.rounds_to_tolerance,
                        "rounds_run": f.rounds_run,
                        "max_rounds": f.max_rounds,
                        "converged": f.converged,
                        "final_gap": _num(f.final_gap),
                        "messages_per_agent": _num(f.messages_per_agent),
                    }
                    for f in r.losses
                ],
                "message_levels": [
                    {"level": level, "messages": m, "numbers": k}
                    for level, m, k in r.message_levels
                ],
                "notes": list(r.notes),
            }
        )
    return {
        "case": comparison.case,
        "seed": comparison.seed,
        "losses": list(comparison.losses),
        "rows": rows,
        "notes": list(comparison.notes),
    }


def _print(comparison: MechanismComparison, console: Console) -> None:
    table = Table(
        title=f"mechanisms on {escape(comparison.case)}",
        caption="eff.: efficiency against the centralized optimum; msgs, numbers: per agent, "
        "both ways; probe gain: the best misreport's gain in true utility",
    )
    table.add_column("mechanism", min_width=18)
    for name in ("eff.", "gap", "rounds", "msgs", "numbers", "probe gain"):
        table.add_column(name, justify="right", no_wrap=True)
    kind = None
    for r in comparison.rows:
        if r.kind != kind:
            kind = r.kind
            table.add_row(f"[bold]{escape(kind)}[/bold]")
        rounds = str(r.rounds) if r.converged else f"{r.rounds} (limit)"
        table.add_row(
            escape(r.name),
            _fmt(r.efficiency, ".6f"),
            _fmt(r.relative_gap, ".1e"),
            rounds,
            _fmt(r.messages_per_agent, ",.1f"),
            _fmt(r.numbers_per_agent, ",.0f"),
            escape(_gain_text(r)),
        )
    console.print(table)
    iterative = [r for r in comparison.rows if r.losses]
    if iterative:
        losses = Table(title="message loss: rounds to tolerance / final gap")
        losses.add_column("mechanism")
        for p in comparison.losses:
            losses.add_column(f"{100 * p:g} % loss", justify="right")
        for r in iterative:
            cells = [
                f"{_rounds_text(f.rounds_to_tolerance, f.max_rounds)} / {_fmt(f.final_gap, '.1e')}"
                for f in r.losses
            ]
            losses.add_row(escape(r.name), *cells)
        console.print(losses)
    for r in comparison.rows:
        console.print(f"probe, {escape(r.name)}: {escape(_probe_text(r))}")
    for r in comparison.rows:
        for note in r.notes:
            console.print(f"{escape(r.name)}: {escape(note)}")
    for note in comparison.notes:
        console.print(f"note: {escape(note)}")


def compare_command(
    scenario: Annotated[
        str,
        typer.Argument(help="A built-in scenario (see `transactive scenarios`) or a TOML file."),
    ] = "default",
    evs: Annotated[
        int | None,
        typer.Option("--evs", min=1, help="EVs in the case (default: the scenario's share)."),
    ] = None,
    homes: Annotated[
        int | None,
        typer.Option(
            "--homes", min=1, help="Homes in the case (default: the scenario's, at most 60)."
        ),
    ] = None,
    hvac: Annotated[
        int | None,
        typer.Option("--hvac", min=1, help="HVAC houses (default: the scenario's share)."),
    ] = None,
    period_s: Annotated[
        int, typer.Option("--period-s", min=60, help="Length of the horizon's periods (s).")
    ] = 900,
    periods: Annotated[
        int, typer.Option("--periods", min=2, help="Periods in the horizon (from local noon).")
    ] = 96,
    losses: Annotated[
        str,
        typer.Option(
            "--losses",
            help="Message loss probabilities of the loss table, comma-separated, each in [0, 1).",
        ),
    ] = "0,0.1,0.3",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the message losses.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one strict JSON object.")] = False,
) -> None:
    """Efficiency, informational cost, incentive probe and message loss of every mechanism."""
    probabilities = _losses(losses)
    from transactive.coordination.evaluation import (  # noqa: PLC0415
        case_from_scenario,
        compare_mechanisms,
    )
    from transactive.errors import ValidationError  # noqa: PLC0415
    from transactive.sim import load_scenario  # noqa: PLC0415

    try:
        sc, base_dir = load_scenario(scenario)
        case = case_from_scenario(
            sc,
            evs=evs,
            homes=homes,
            hvac=hvac,
            period_s=period_s,
            n_periods=periods,
            base_dir=base_dir,
        )
        comparison = compare_mechanisms(case, losses=probabilities, seed=seed)
    except ValidationError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=2) from None
    if as_json:
        typer.echo(json.dumps(_report(comparison), allow_nan=False, ensure_ascii=False))
        return
    _print(comparison, Console())
