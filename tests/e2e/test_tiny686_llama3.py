"""A Llama-3-style model exported from a Hugging Face directory runs in the guest and verifies token by token:
the `llama98-harness export` then `run --model M --tokenizer T` path a user takes, with a non-ASCII prompt whose
ids must equal Hugging Face tokenizers' encoding."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.formats.report import read_report
from tests.support.bpe_vocab import build
from tests.support.hf_llama import make_hf_dir

pytestmark = pytest.mark.vm

CLI = [sys.executable, "-m", "harness.cli"]
PROMPT = "Grüße aus Köln, 世界"


def test_exported_llama3_model_runs_in_the_guest_with_an_ok_token_verdict(tmp_path: Path) -> None:
    vocab = build(tmp_path / "vocab", vocab_size=500)
    make_hf_dir(tmp_path / "hf", vocab, dtype="BF16", seed=5)
    model, tokenizer = tmp_path / "model.bin", tmp_path / "tokenizer.bin"
    exported = subprocess.run([*CLI, "export", str(tmp_path / "hf"), "-o", str(model), "-z", str(tokenizer)],
                              capture_output=True, text=True, timeout=300)
    assert exported.returncode == 0, exported.stderr[-2000:]
    result = subprocess.run([*CLI, "run", "--vm", "tiny686", "--artifacts", str(tmp_path / "art"), "--model",
                             str(model), "--tokenizer", str(tokenizer), "-i", PROMPT, "-n", "48", "-t", "0.9",
                             "-s", "11", "--json", str(tmp_path / "run.json")],
                            capture_output=True, timeout=900)
    stdout = result.stdout.decode("utf-8", errors="replace")  # the model's text may end inside a character
    assert result.returncode == 0, stdout[-2000:] + result.stderr.decode(errors="replace")[-2000:]
    assert "verdict (token-level): ok:" in stdout, stdout[-2000:]
    report = read_report(tmp_path / "art" / "report.txt")
    expected = [vocab.specials["<|begin_of_text|>"], *vocab.hf.encode(PROMPT, add_special_tokens=False).ids]
    assert report.prompt_ids == expected
    assert report.model.fields.get("version") == "3" and report.tokenizer.fields.get("format") == "bpe"
