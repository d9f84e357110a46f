"""Start-up time of the console command: `transactive --help` against `python -c pass`.

Both run as fresh processes from this interpreter's environment, alternately, several times; the
medians are printed with the difference (what the package itself costs at start-up), and the
processes' CPU time (user + system), which other load on the machine does not inflate as it does
the wall time. Target (issue 11 §3): `transactive --help` answers in under 0.5 s.

    python benchmarks/bench_startup.py [--runs 11]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_S = 0.5


def wall_time(command: list[str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one run of ``command``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11, help="runs of each command (median)")
    args = parser.parse_args()
    script = Path(sys.executable).with_name("transactive")
    console = [str(script)] if script.exists() else [shutil.which("transactive") or "transactive"]
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import transactive'": [sys.executable, "-c", "import transactive"],
        "transactive --help": [*console, "--help"],
        "transactive clear --help": [*console, "clear", "--help"],
    }
    for command in commands.values():  # warm the file cache and the byte-code
        wall_time(command)
    times: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, command in commands.items():
            wall, used = wall_time(command)
            times[name].append(wall)
            cpu[name].append(used)
    baseline = statistics.median(times["python -c pass"])
    print(
        f"{'command':<32} {'median s':>9} {'min s':>7} {'minus baseline s':>17}"
        f" {'median CPU s':>13}"
    )
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"{name:<32} {median:>9.3f} {min(values):>7.3f} {median - baseline:>17.3f}"
            f" {statistics.median(cpu[name]):>13.3f}"
        )
    helped = statistics.median(times["transactive --help"])
    verdict = "meets" if helped < TARGET_S else "MISSES"
    print(
        f"transactive --help: {helped:.3f} s median over {args.runs} runs, {verdict} the "
        f"{TARGET_S} s target"
    )


if __name__ == "__main__":
    main()
