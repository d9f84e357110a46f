"""``transactive run --out``: a results folder that cannot be made is refused before the run.

The simulator is replaced by one that fails the test, so each case shows the command stopped
before simulating (a run of the default scenario takes seconds, then could not be saved).
"""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from transactive.cli import app

runner = CliRunner()
needs_proc = pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")


@pytest.fixture(autouse=True)
def no_simulation(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("simulate was called before --out was checked")

    monkeypatch.setattr("transactive.sim.simulate", never)


def refused(out: str) -> str:
    result = runner.invoke(app, ["run", "default", "--out", out])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    return result.output


@needs_proc
def test_an_out_folder_that_cannot_be_created_is_refused_before_the_run() -> None:
    output = refused("/proc/qq")
    assert "--out '/proc/qq'" in output
    assert "folder '/proc/qq' cannot be created: No such file or directory" in output


@needs_proc
def test_an_out_folder_nobody_can_write_in_is_refused_before_the_run() -> None:
    assert "no file can be written in folder '/proc/self'" in refused("/proc/self")


def test_an_out_folder_under_a_file_names_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x", encoding="utf-8")
    assert f"'{blocker}' is a file, not a folder" in refused(str(blocker / "results"))
    assert "is a file, not a folder" in refused(str(blocker))
    assert blocker.read_text(encoding="utf-8") == "x"


def test_a_bad_scenario_is_named_before_the_out_folder_is_made(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "no-such-scenario", "--out", str(tmp_path / "res")])
    assert result.exit_code == 1, result.output
    assert not (tmp_path / "res").exists()


def test_a_good_out_folder_is_made_and_the_run_starts(tmp_path: Path) -> None:
    """The control: past a good --out the command does reach the (replaced) simulator."""
    out = tmp_path / "new" / "results"
    result = runner.invoke(app, ["run", "default", "--out", str(out), "--quiet"])
    assert isinstance(result.exception, AssertionError), result.output
    assert "simulate was called" in str(result.exception)
    assert out.is_dir() and list(out.iterdir()) == []
