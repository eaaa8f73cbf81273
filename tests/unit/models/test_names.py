"""Model selection for `run`: real fixtures when present, a generated stand-in when offline, and one-line
refusals for damaged files and mismatched tokenizers before any guest boots."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.models.names import ModelChoiceError, choose_model, tokenizer_entries
from tests.support.port_helpers import fixture


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
