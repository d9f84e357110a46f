"""Bid files as users write them: every awkward case is read correctly or named by line.

Each case runs through the library (``parse_bids`` / ``read_bids``) and through the command line
(typer's CliRunner), which must exit with status 1 and a message, never a traceback.
"""

import json
from importlib import resources

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from transactive import BidCurves, ValidationError
from transactive.cli import app
from transactive.cli.bidfile import SUPPLY_NAME, parse_bids, read_bids
from transactive.cli.market import SUPPLY_LABEL

runner = CliRunner()
HEADER = "bidder,price_per_kwh,power_kw\n"


def ids_of(bids: BidCurves) -> list[str]:
    assert bids.ids is not None
    return list(bids.ids.tolist())


def cli_error(tmp_path, name: str, content: str | bytes) -> str:
    """Run ``transactive clear`` on a file that must be refused; return what it printed."""
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    result = runner.invoke(app, ["clear", str(path)])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    return result.output


def problems_of(text: str, fmt: str = "csv") -> list[str]:
    with pytest.raises(ValidationError) as info:
        parse_bids(text, fmt=fmt)
    return [str(p) for p in info.value.problems]


# ---------------------------------------------------------------------- read correctly


def test_an_excel_csv_utf8_file_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (HEADER + "café,0.10,5\r\npv,0.05,-5\r\n").encode())
    bids = read_bids(path)
    assert bids.bidders == ("café", "pv")
    result = runner.invoke(app, ["clear", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert [a["bidder"] for a in json.loads(result.stdout)["allocations"]] == ["café", "pv"]


def test_a_json_file_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "bom.json"
    rows = [{"bidder": "a", "price_per_kwh": 0.1, "power_kw": 2}]
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(rows).encode())
    assert read_bids(path).bidders == ("a",)


def test_quoted_names_may_hold_commas_and_the_names_become_the_ids():
    bids = parse_bids(HEADER + '"Smith, J.",0.10,5\n"pv ""roof""",0.05,-5\n', fmt="csv")
    assert bids.bidders == ("Smith, J.", 'pv "roof"')
    assert ids_of(bids.curves) == list(bids.bidders)


def test_comments_above_the_header_blank_lines_and_extra_columns_are_skipped_lines_still_count():
    text = (
        "# a market\n"
        '# comment, with "a quote\n'
        "\n" + HEADER.replace("\n", ",note\n") + "\n"
        "a,0.10,5,first\n"
        "b,cheap,3,second\n"
    )
    assert problems_of(text) == ["price_per_kwh: not a finite number: 'cheap' (entry line 7)"]


HASH_FILE = HEADER + "h1,0.2,5\n#2,0.1,3\ng1,0.05,-4\n"


def test_a_row_starting_with_hash_below_the_header_is_refused_never_dropped(tmp_path):
    """``#2`` may be a bidder or a row switched off: either way it must not pass unnoticed."""
    (problem,) = problems_of(HASH_FILE)
    assert "starts with '#' below the header" in problem and "(entry line 3)" in problem
    output = cli_error(tmp_path, "hash.csv", HASH_FILE)
    assert "line 3" in output and '"#2",0.1,3' in output
    assert "clearing price" not in output  # no result without the bidder
    # a commented-out row is refused as well, rather than bid
    switched_off = HEADER + "h1,0.2,5\n# h3,0.3,2\ng1,0.05,-4\n"
    assert "line 3" in cli_error(tmp_path, "off.csv", switched_off)


def test_a_quoted_hash_name_is_a_bidder_through_the_command_line(tmp_path):
    path = tmp_path / "quoted.csv"
    path.write_text("# bids of three\n" + HASH_FILE.replace("#2,", '"#2",'), encoding="utf-8")
    result = runner.invoke(app, ["clear", str(path), "--json"])
    assert result.exit_code == 0, result.output
    allocations = json.loads(result.stdout)["allocations"]
    assert [a["bidder"] for a in allocations] == ["h1", "#2", "g1"]
    # h1 (0.2) takes all 4 kW of g1 (0.05); #2 at 0.1 is outbid but present
    assert [a["power_kw"] for a in allocations] == pytest.approx([4.0, 0.0, -4.0])


def test_a_hash_name_in_json_is_a_name(tmp_path):
    path = tmp_path / "hash.json"
    rows = [
        {"bidder": "h1", "price_per_kwh": 0.2, "power_kw": 5},
        {"bidder": "#2", "price_per_kwh": 0.1, "power_kw": 3},
    ]
    path.write_text(json.dumps(rows), encoding="utf-8")
    assert read_bids(path).bidders == ("h1", "#2")


def test_the_sample_market_keeps_its_comments_above_the_header():
    text = resources.files("transactive.cli").joinpath("sample_market.csv").read_text("utf-8")
    bids = parse_bids(text, fmt="csv")
    rows = [line for line in text.splitlines() if line and not line.startswith("#")][1:]
    assert set(bids.bidders) == {row.split(",")[0] for row in rows}
    assert len(bids.bidders) == 16


@pytest.mark.parametrize("name", ["[bold]house[/bold]", "[red]", "a[/]b", "[link=x]pv"])
def test_names_with_brackets_print_as_they_are(tmp_path, name):
    path = tmp_path / "markup.csv"
    path.write_text(HEADER + f'"{name}",0.10,5\nseller,0.05,-5\n')
    result = runner.invoke(app, ["clear", str(path)])
    assert result.exit_code == 0, result.output
    assert name in result.stdout


def test_paths_and_names_with_brackets_print_as_they_are_in_errors(tmp_path):
    folder = tmp_path / "[red]bids"
    folder.mkdir()
    text = HEADER + "[/]a,0.1,1\nb,0.2,1\n[/]a,0.3,0\n"  # "[/]" alone would break rich markup
    output = cli_error(folder, "[b]x.csv", text)
    assert "[red]bids" in output and "[b]x.csv" in output and "'[/]a' was already" in output


# ---------------------------------------------------------------------- named by line


def test_a_duplicated_row_is_named_by_line(tmp_path):
    text = HEADER + "a,0.10,5\nb,0.20,1\nb,0.20,1\n"
    # read as two breakpoints, the copy would make b's block bid a flat unresponsive 1 kW
    assert problems_of(text) == [
        "row: repeats line 3 (bidder 'b', same price and power): delete one of them (entry line 4)"
    ]
    assert "repeats line 3" in cli_error(tmp_path, "dup.csv", text)


def test_a_bidder_whose_rows_are_split_by_other_bidders_is_named(tmp_path):
    text = HEADER + "a,0.05,5\nb,0.20,1\na,0.10,3\n"
    (problem,) = problems_of(text)
    assert "'a' was already bidding at line 2" in problem and "(entry line 4)" in problem
    assert "must be consecutive" in cli_error(tmp_path, "split.csv", text)


def test_a_bidder_named_like_the_supply_is_refused(tmp_path):
    assert SUPPLY_NAME == SUPPLY_LABEL
    text = HEADER + "a,0.05,5\n<supply>,0.02,-10\n"
    (problem,) = problems_of(text)
    assert "'<supply>' is the market's supply" in problem and "(entry line 3)" in problem
    output = cli_error(tmp_path, "supply.csv", text)
    assert "<supply>" in output and "line 3" in output


def test_a_quoted_name_with_a_line_break_is_named_by_the_line_it_starts_on(tmp_path):
    text = HEADER + 'a,0.05,5\n"house\n7",0.10,2\nb,0.2,1\n'
    (problem,) = problems_of(text)
    assert "'house\\n7' holds a line break" in problem and "(entry line 3)" in problem
    # the rows after it keep their true line numbers
    text_after = HEADER + '"house\n7",0.10,2\nb,oops,1\n'
    assert any("(entry line 4)" in p for p in problems_of(text_after))
    assert "line break" in cli_error(tmp_path, "newline.csv", text)


def test_an_unclosed_quote_is_named_not_swallowing_the_rest_of_the_file(tmp_path):
    text = HEADER + 'a,0.05,5\n"b,0.10,2\nc,0.2,1\n'
    (problem,) = problems_of(text)
    assert problem.startswith("quoting:") and "(entry line 3)" in problem
    assert "quoting" in cli_error(tmp_path, "quote.csv", text)


def test_rows_with_too_many_or_too_few_fields_are_named(tmp_path):
    text = HEADER + "Smith, J.,0.10,5\nb,0.2\nc,0.3,1\n"
    found = problems_of(text)
    assert any("has 4 fields" in p and "(entry line 2)" in p for p in found)
    assert any("has 2 fields" in p and "(entry line 3)" in p for p in found)
    assert "must be quoted" in cli_error(tmp_path, "fields.csv", text)


def test_a_header_naming_a_column_twice_is_refused():
    (problem,) = problems_of("bidder,price_per_kwh,power_kw,power_kw\na,0.1,1,2\n")
    assert "power_kw twice" in problem


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    output = cli_error(tmp_path, "latin1.csv", (HEADER + "caf\xe9,0.1,1\n").encode("latin-1"))
    assert "not UTF-8" in output


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"bidder": None, "price_per_kwh": 0.1, "power_kw": 1}, "is null"),
        ({"bidder": 17, "price_per_kwh": 0.1, "power_kw": 1}, "must be a name (a string), got int"),
        ({"bidder": ["a"], "price_per_kwh": 0.1, "power_kw": 1}, "got list"),
        ({"bidder": "  ", "price_per_kwh": 0.1, "power_kw": 1}, "is empty"),
        ({"bidder": "a", "price_per_kwh": None, "power_kw": 1}, "not a finite number: None"),
        ({"bidder": "a", "price_per_kwh": 0.1, "power_kw": True}, "not a finite number: True"),
        ({"bidder": "a", "price_per_kwh": 0.1, "power_kw": {"kw": 1}}, "not a finite number"),
        ({"bidder": "a", "price_per_kwh": 0.1, "power_kw": 10**400}, "not a finite number"),
        ({"bidder": "a", "price_per_kwh": 0.1}, "missing power_kw"),
    ],
)
def test_bad_json_rows_are_named_by_row_and_line(tmp_path, row, reason):
    good = {"bidder": "ok", "price_per_kwh": 0.2, "power_kw": -1}
    text = json.dumps({"bids": [good, row]}, indent=1)
    (problem,) = problems_of(text, fmt="json")
    assert reason in problem and "(entry row 1 (line 8))" in problem
    assert reason in cli_error(tmp_path, "bad.json", text)


def test_json_nested_too_deeply_is_refused(tmp_path):
    text = "[" * 100_000 + "]" * 100_000
    (problem,) = problems_of(text, fmt="json")
    assert "nested too deeply" in problem
    assert "nested too deeply" in cli_error(tmp_path, "deep.json", text)


def test_json_giving_a_key_twice_is_refused():
    text = '[{"bidder": "a", "bidder": "b", "price_per_kwh": 0.1, "power_kw": 1}]'
    (problem,) = problems_of(text, fmt="json")
    assert "key 'bidder' twice" in problem


def test_a_long_bad_value_is_shortened_in_the_message():
    text = json.dumps([{"bidder": "a", "price_per_kwh": "x" * 500, "power_kw": 1}])
    (problem,) = problems_of(text, fmt="json")
    assert len(problem) < 150 and "..." in problem


# ---------------------------------------------------------------------- no vanished bidder


names = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=12
).filter(lambda s: s.strip() == s and s != SUPPLY_NAME)


@given(st.lists(names, min_size=1, max_size=8, unique=True), st.booleans())
def test_every_bidder_written_is_read_back_in_order(bidders, as_json):
    """Any names (quotes, commas, brackets, '#', non-Latin) survive a round trip; none vanish."""
    rows = [
        {"bidder": b, "price_per_kwh": 0.1 + 0.01 * i, "power_kw": 1.0 + i}
        for i, b in enumerate(bidders)
    ]
    if as_json:
        text, fmt = json.dumps(rows), "json"
    else:
        quoted = ['"' + b.replace('"', '""') + '"' for b in bidders]
        text = HEADER + "".join(
            f"{q},{r['price_per_kwh']},{r['power_kw']}\n" for q, r in zip(quoted, rows, strict=True)
        )
        fmt = "csv"
    bids = parse_bids(text, fmt=fmt)
    assert bids.bidders == tuple(bidders)
    assert ids_of(bids.curves) == bidders
    np.testing.assert_allclose(bids.curves.power_at(0.0), [r["power_kw"] for r in rows])
