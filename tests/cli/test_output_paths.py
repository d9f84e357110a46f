"""Output paths are checked by doing what the command will do, so they hold for root as well.

``os.access`` says yes to root everywhere; ``/proc`` refuses new files to everyone, and a path
under a regular file cannot be a folder for anyone, so these cases hold whoever runs the suite.
"""

import os
from pathlib import Path

import pytest

from transactive.cli._paths import check_output_file, check_output_folder
from transactive.errors import ValidationError

needs_proc = pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")


def refusal(check, *args, **kwargs) -> str:
    with pytest.raises(ValidationError) as info:
        check(*args, **kwargs)
    return str(info.value)


def probes_left(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".transactive")]


def test_a_missing_output_folder_is_created_and_left_empty(tmp_path):
    out = tmp_path / "a" / "b"
    check_output_folder(out, "--out")
    assert out.is_dir()
    assert list(out.iterdir()) == []  # the probe file is gone
    check_output_folder(out, "--out")  # an existing folder is fine


def test_a_folder_under_a_file_names_the_file(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x", encoding="utf-8")
    message = refusal(check_output_folder, blocker / "sub" / "deeper", "--out")
    assert f"'{blocker}' is a file, not a folder" in message
    assert "--out" in message and str(blocker / "sub" / "deeper") in message
    assert refusal(check_output_folder, blocker, "--out").endswith("is a file, not a folder")


@needs_proc
def test_a_folder_that_cannot_be_created_is_named_with_the_reason():
    message = refusal(check_output_folder, Path("/proc/qq"), "--out")
    assert "folder '/proc/qq' cannot be created: No such file or directory" in message
    assert not Path("/proc/qq").exists()


@needs_proc
def test_an_existing_folder_nobody_can_write_in_is_refused():
    message = refusal(check_output_folder, Path("/proc/self"), "--out")
    assert "no file can be written in folder '/proc/self'" in message


def test_a_new_file_is_probed_beside_and_nothing_is_left(tmp_path):
    target = tmp_path / "map.png"
    check_output_file(target, "--map", suffix=".png")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_is_checked_without_being_changed(tmp_path):
    target = tmp_path / "map.png"
    target.write_bytes(b"old figure")
    os.utime(target, (1_000_000, 1_000_000))
    check_output_file(target, "--map", suffix=".png")
    assert target.read_bytes() == b"old figure"
    assert target.stat().st_mtime == 1_000_000
    assert probes_left(tmp_path) == []


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("map.svg", "must end in .png"),
        ("nowhere/map.png", "does not exist"),
        ("afile/map.png", "is a file, not a folder"),
        ("afolder.png", "is a folder, not a file"),
    ],
)
def test_bad_file_targets_are_named(tmp_path, name, reason):
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    (tmp_path / "afolder.png").mkdir()
    message = refusal(check_output_file, tmp_path / name, "--map", suffix=".png")
    assert reason in message and str(tmp_path / name) in message


def test_a_file_under_a_file_names_the_file_not_a_missing_folder(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x", encoding="utf-8")
    message = refusal(check_output_file, blocker / "x.png", "--map", suffix=".png")
    assert f"'{blocker}' is a file, not a folder" in message
    assert "does not exist" not in message


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_pipe_is_not_taken_for_a_file(tmp_path):
    pipe = tmp_path / "map.png"
    os.mkfifo(pipe)  # opening it to probe would block until a reader comes
    assert "not a regular file" in refusal(check_output_file, pipe, "--map", suffix=".png")


@needs_proc
def test_a_file_nobody_can_create_is_refused():
    message = refusal(check_output_file, Path("/proc/x.png"), "--map", suffix=".png")
    assert "no file can be written in folder '/proc'" in message
