"""``--line-max-i-ka`` declares the bound it enforces: a rating is a positive current."""

import pytest
from typer.testing import CliRunner

from transactive.cli import app

runner = CliRunner()


def plain(text: str) -> str:
    """Help text with rich's box borders and line wrapping taken out."""
    return " ".join(text.replace("│", " ").split())


@pytest.mark.parametrize("command", ["powerflow", "opf", "feeder-day"])
def test_the_help_declares_a_positive_rating(command):
    result = runner.invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    text = plain(result.output)
    start = text.index("--line-max-i-ka")
    entry = text[start : text.index(" --", start + 1)]  # up to the next option
    assert "a positive number, x>0" in entry
    assert "x>=0" not in entry


@pytest.mark.parametrize("value", ["0", "-0.4", "nan", "inf"])
@pytest.mark.parametrize("command", ["powerflow", "opf", "feeder-day"])
def test_a_rating_that_is_not_positive_is_refused_before_the_feeder_loads(
    monkeypatch, command, value
):
    def never(*args, **kwargs):
        raise AssertionError("the feeder was loaded")

    monkeypatch.setattr("transactive.network.feeders.load_feeder", never)
    result = runner.invoke(app, [command, "case33bw", f"--line-max-i-ka={value}"])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    assert "max_i_ka: must be a positive finite number of kA (--line-max-i-ka)" in result.output
    assert f"got {float(value):g}" in result.output
