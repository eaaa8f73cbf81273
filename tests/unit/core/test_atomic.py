"""core.atomic: a file appears whole or not at all, with the permissions a plain open() would give it."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.core.atomic import output_problem, temp_beside, write_atomically
from harness.formats.parts import PartsWriter, part_paths, write_parts

UMASKS = [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664), (0o027, 0o640)]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=UMASKS, ids=[f"umask{u:03o}" for u, _ in UMASKS])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Set the process umask for the test; yields the mode a new file must get (0666 & ~umask)."""
    wanted, mode = request.param
    old = os.umask(wanted)
    try:
        yield mode
    finally:
        os.umask(old)


def test_write_atomically_gives_the_umask_mode(tmp_path: Path, umask: int) -> None:
    path = write_atomically(tmp_path / "deep" / "out.bin", [b"ab", b"cd"])
    assert path.read_bytes() == b"abcd"
    assert _mode(path) == umask


def test_plain_open_agrees(tmp_path: Path, umask: int) -> None:
    """The rule the writers follow is the one of open(): checked here so the expectation is not made up."""
    (tmp_path / "plain").write_bytes(b"x")
    assert _mode(tmp_path / "plain") == umask


def test_the_parts_writers_give_the_umask_mode(tmp_path: Path, umask: int) -> None:
    streamed = write_parts(tmp_path / "stream.bin", [b"x" * 1000], part_bytes=300)
    with PartsWriter(tmp_path / "random.bin", 1000, part_bytes=400) as writer:
        writer.write_at(0, b"y" * 1000)
    placed = part_paths(tmp_path / "random.bin")
    assert len(streamed) == 4 and len(placed) == 3
    assert {_mode(path) for path in [*streamed, *placed]} == {umask}


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = write_atomically(tmp_path / "out.bin", [b"old"])

    def failing() -> Iterator[bytes]:
        yield b"new, half"
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        write_atomically(path, failing())
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_temp_beside_makes_new_names_beside_the_target(tmp_path: Path) -> None:
    first, first_path = temp_beside(tmp_path / "model.bin")
    second, second_path = temp_beside(tmp_path / "model.bin", prefix=".model.b01.")
    with first, second:
        first.write(b"1")
        second.write(b"2")
        first.seek(0)
        assert first.read() == b"1", "open for reading and writing, like NamedTemporaryFile"
    assert first_path != second_path and first_path.parent == second_path.parent == tmp_path
    assert first_path.name.startswith(".model.bin.") and first_path.name.endswith(".part")
    assert second_path.name.startswith(".model.b01.")


def test_output_problem_refuses_a_directory(tmp_path: Path) -> None:
    assert output_problem(tmp_path) == f"{tmp_path} is a directory, not a file"


def test_output_problem_names_the_file_where_a_directory_must_be(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert output_problem(afile / "sub" / "out.bin") == f"{afile} is a file, not a directory"
    assert output_problem(afile / "out.bin") == f"{afile} is a file, not a directory"


def test_output_problem_accepts_a_new_or_existing_file(tmp_path: Path) -> None:
    assert output_problem(tmp_path / "out.bin") is None
    (tmp_path / "old.bin").write_bytes(b"x")
    assert output_problem(tmp_path / "old.bin") is None, "an existing file is replaced, not in the way"


def test_output_problem_accepts_a_parent_that_does_not_exist_yet(tmp_path: Path) -> None:
    assert output_problem(tmp_path / "new" / "deeper" / "out.bin") is None


def test_output_problem_for_a_directory(tmp_path: Path) -> None:
    """directory=True: the path itself may be an existing directory or a new one, not a file (nor below one)."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert output_problem(tmp_path, directory=True) is None
    assert output_problem(tmp_path / "new" / "dir", directory=True) is None
    assert output_problem(afile, directory=True) == f"{afile} is a file, not a directory"
    assert output_problem(afile / "dir", directory=True) == f"{afile} is a file, not a directory"
