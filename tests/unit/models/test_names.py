"""Model selection for `run`: real fixtures when present, a generated stand-in when offline, and one-line
refusals for damaged files and mismatched tokenizers before any guest boots."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import cli
from harness.models.downloads import FixtureEntry, resolve
from harness.models.modelgen import cached_checkpoint, cached_tokenizer
from harness.models.names import ModelChoiceError, choose_model, tokenizer_entries
from tests.support.port_helpers import fixture
from tests.support.unreadable import locked_file, outcome_as_nobody, public_dir


def test_named_model_comes_from_the_fixture_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMA98_FIXTURE_DIR", str(fixture("stories260K.bin").parent))
    choice = choose_model("stories260K", allow_download=False)
    assert choice.checkpoint.name == "stories260K.bin" and choice.tokenizer.name == "tok512.bin"
    assert choice.label.startswith("stories260K (")


def test_offline_without_fixtures_uses_a_generated_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMA98_FIXTURE_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("LLAMA98_CACHE", str(tmp_path / "cache"))
    choice = choose_model("stories260K", allow_download=False)
    assert "generated stand-in with the shape of stories260K" in choice.label
    header = choice.checkpoint.read_bytes()[:28]
    assert [int.from_bytes(header[i:i + 4], "little", signed=True) for i in range(0, 28, 4)] == \
        [64, 172, 5, 8, 4, 512, 512]
    assert tokenizer_entries(choice.tokenizer) == 512


def test_a_tokenizer_of_another_model_is_refused() -> None:
    with pytest.raises(ModelChoiceError, match="wrong tokenizer: .* holds 32000 tokens .* vocabulary of 512"):
        choose_model(str(fixture("stories260K.bin")), str(fixture("tokenizer.bin")), allow_download=False)


def test_truncated_tokenizer_and_model_are_refused(tmp_path: Path) -> None:
    short_tok = tmp_path / "tok.bin"
    short_tok.write_bytes(fixture("tok512.bin").read_bytes()[:3000])
    with pytest.raises(ModelChoiceError, match="truncated or damaged after"):
        choose_model(str(fixture("stories260K.bin")), str(short_tok), allow_download=False)
    short_model = tmp_path / "model.bin"
    short_model.write_bytes(fixture("stories260K.bin").read_bytes()[:5000])
    with pytest.raises(ModelChoiceError, match="shorter than"):
        choose_model(str(short_model), str(fixture("tok512.bin")), allow_download=False)


def test_unknown_model_name_lists_the_known_ones() -> None:
    with pytest.raises(ModelChoiceError, match="neither a file nor a known name .*stories260K"):
        choose_model("no-such-model", allow_download=False)


def test_run_cli_refuses_bad_input_in_one_line_before_booting(tmp_path: Path) -> None:
    cases = [
        (["--vm", str(tmp_path / "missing.img")], "does not exist"),
        (["--model", str(fixture("stories260K.bin")), "--tokenizer", str(fixture("tokenizer.bin"))],
         "wrong tokenizer"),
    ]
    for args, message in cases:
        result = subprocess.run([sys.executable, "-m", "harness.cli", "run", *args], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith("llama98-harness: error: ") and message in lines[-1]
        assert "Traceback" not in result.stderr


@pytest.fixture()
def small_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A generated model and its tokenizer (no fixture needed), in a private cache."""
    monkeypatch.setenv("LLAMA98_CACHE", str(tmp_path / "cache"))
    return cached_checkpoint("single-head-400"), cached_tokenizer(400)


def test_a_directory_given_as_model_or_tokenizer_is_one_line(tmp_path: Path, small_pair: tuple[Path, Path]) -> None:
    model, _ = small_pair
    with pytest.raises(ModelChoiceError) as info:
        choose_model(str(tmp_path), allow_download=False)
    assert str(info.value) == f"model {tmp_path} is a directory, not a file"
    with pytest.raises(ModelChoiceError) as info:
        choose_model(str(model), str(tmp_path), allow_download=False)
    assert str(info.value) == f"tokenizer {tmp_path} is a directory, not a file"
    # a named model with a directory as its tokenizer: refused before any parsing, the same way
    with pytest.raises(ModelChoiceError, match=rf"^tokenizer {tmp_path} is a directory, not a file$"):
        choose_model("single-head-400", str(tmp_path), allow_download=False)


def test_a_fifo_or_a_path_through_a_file_is_refused_without_blocking(tmp_path: Path,
                                                                     small_pair: tuple[Path, Path]) -> None:
    model, _ = small_pair
    fifo = tmp_path / "tok.fifo"
    os.mkfifo(fifo)
    with pytest.raises(ModelChoiceError, match=rf"^tokenizer {fifo} is not a regular file$"):
        choose_model(str(model), str(fifo), allow_download=False)
    plain = tmp_path / "plain"
    plain.write_text("x")
    with pytest.raises(ModelChoiceError, match=r"neither a file nor a known name"):
        choose_model(str(plain / "model.bin"), allow_download=False)
    with pytest.raises(ModelChoiceError, match=rf"^tokenizer not found: {plain / 'tok.bin'} \(a directory on its "
                                               rf"path is a file\)$"):
        choose_model(str(model), str(plain / "tok.bin"), allow_download=False)


def test_model_and_tokenizer_the_user_cannot_read(small_pair: tuple[Path, Path]) -> None:
    """Mode-000 copies read by a user who is not root (tests/support/unreadable.py): one line each, no OSError."""
    model_bytes, tokenizer_bytes = small_pair[0].read_bytes(), small_pair[1].read_bytes()
    with public_dir() as directory:
        model = locked_file(directory, "model.bin", model_bytes)
        tokenizer = locked_file(directory, "tok.bin", tokenizer_bytes)
        readable_model = directory / "readable.bin"
        readable_model.write_bytes(model_bytes)
        readable_model.chmod(0o644)
        locked_model = outcome_as_nobody(lambda: choose_model(str(model), str(tokenizer), allow_download=False))
        locked_tokenizer = outcome_as_nobody(
            lambda: choose_model(str(readable_model), str(tokenizer), allow_download=False))
    assert locked_model == f"ModelChoiceError: model {model} is not readable: Permission denied"
    assert locked_tokenizer == f"ModelChoiceError: tokenizer {tokenizer} is not readable: Permission denied"


def test_run_cli_refuses_a_directory_as_model_or_tokenizer(tmp_path: Path, small_pair: tuple[Path, Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--model", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"llama98-harness: error: model {tmp_path} is a directory, not a file\n"
    assert cli.main(["run", "--model", "single-head-400", "--tokenizer", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"llama98-harness: error: tokenizer {tmp_path} is a directory, not a file\n"


def test_a_fixture_the_user_cannot_read_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """$LLAMA98_FIXTURE_DIR behind a directory the user cannot search, or a mode-000 fixture in it: one FixtureError
    line (which choose_model turns into a generated stand-in, naming the reason), never a bare OSError."""
    data = b"weights!"
    entry = FixtureEntry("m.bin", len(data), hashlib.sha256(data).hexdigest(), "http://127.0.0.1:9/m.bin")
    with public_dir() as directory:
        private = directory / "private"
        private.mkdir(mode=0o700)
        (private / "m.bin").write_bytes(data)
        monkeypatch.setenv("LLAMA98_FIXTURE_DIR", str(private))
        behind = outcome_as_nobody(lambda: resolve("m.bin", allow_download=False, manifest={"m.bin": entry}))
        open_dir = directory / "open"
        open_dir.mkdir(mode=0o755)
        locked = locked_file(open_dir, "m.bin", data)
        monkeypatch.setenv("LLAMA98_FIXTURE_DIR", str(open_dir))
        mode_000 = outcome_as_nobody(lambda: resolve("m.bin", allow_download=False, manifest={"m.bin": entry}))
    assert behind == (f"FixtureError: fixture m.bin in $LLAMA98_FIXTURE_DIR ({private / 'm.bin'}) is not readable: "
                      f"Permission denied")
    assert mode_000 == f"FixtureError: fixture m.bin in $LLAMA98_FIXTURE_DIR ({locked}) is not readable: " \
        "Permission denied"
