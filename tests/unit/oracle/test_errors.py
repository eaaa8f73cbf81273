"""The oracle's read errors are one line naming the file and what it was, for each way a read fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.oracle.errors import OracleError, TokenizerError, describe_read_error
from harness.oracle.tokenizer import load_tokenizer


def _os_error(path: Path) -> OSError:
    try:
        path.read_bytes()
    except OSError as error:
        return error
    raise AssertionError(f"{path} was readable")


def test_missing_file_directory_and_other_errors(tmp_path: Path) -> None:
    missing = tmp_path / "absent.bin"
    assert describe_read_error(missing, "checkpoint", _os_error(missing)) == f"{missing}: checkpoint file not found"
    directory = describe_read_error(tmp_path, "tokenizer", _os_error(tmp_path))
    assert directory == f"{tmp_path}: tokenizer path is a directory"
    blocker = tmp_path / "file"
    blocker.write_bytes(b"x")
    through = blocker / "tok.bin"
    message = describe_read_error(through, "tokenizer", _os_error(through))
    assert message == f"{through}: cannot read tokenizer: {os.strerror(20)}"
    assert "\n" not in message


def test_a_tokenizer_that_is_a_directory_raises_a_tokenizer_error(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError) as error:
        load_tokenizer(tmp_path, 512)
    assert isinstance(error.value, OracleError)
    assert str(error.value) == f"{tmp_path}: tokenizer path is a directory"
