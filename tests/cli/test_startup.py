"""The console command starts light: no numerical stack is imported to register commands.

`transactive --help` must answer fast (the benchmark `benchmarks/bench_startup.py` times it);
what this test checks is the behaviour behind that: which modules an import pulls in, in a fresh
interpreter.
"""

import json
import subprocess
import sys

import pytest

HEAVY = ["pandapower", "cvxpy", "matplotlib", "pvlib", "scipy", "pandas", "simbench"]


def imported_after(statement: str) -> list[str]:
    code = (
        f"import json, sys\n{statement}\n"
        f"print(json.dumps(sorted(m for m in {[*HEAVY, 'numpy']!r} if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def test_import_transactive_loads_no_numerical_module():
    assert imported_after("import transactive, transactive.data") == []


def test_the_public_names_still_import_from_the_package():
    assert imported_after("from transactive import BidCurves, ValidationError") == ["numpy"]
    with pytest.raises(subprocess.CalledProcessError):
        imported_after("from transactive import no_such_name")


def test_the_market_commands_register_without_the_numerical_stack():
    assert imported_after("import transactive.cli.market") == []


def test_the_console_app_registers_without_the_numerical_stack():
    loaded = imported_after("import transactive.cli")
    assert loaded == [], f"`import transactive.cli` imports {loaded}: import them where used"
