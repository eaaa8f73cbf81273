"""Speed of the port's byte-level BPE tokenizer on a Llama 3-sized (128256-id) vocabulary, in callgrind
instructions of the guest build (gcc -m32 -march=pentium2 -O2 -static): loading the file (hash of every token)
and encoding, per byte of fuzz text (the difference of two runs, so loading cancels).
Run with `pytest -m bench -s tests/bench/test_bench_bpe.py` to see the figures.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.models.bpe_writer import from_tiktoken, llama3_control_ids, write_bpe
from tests.support.bpe_corpus import Corpus
from tests.support.bpe_helpers import build_bpetool
from tests.support.bpe_vocab import llama3_sized_ranks

pytestmark = pytest.mark.bench

TARGET_LOAD = 120_000_000       # instructions to load a 128256-token file
TARGET_PER_BYTE = 3_000         # instructions per byte of text


def _instructions(binary: Path, tokenizer: Path, text: bytes) -> int:
    result = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", str(binary),
                             str(tokenizer)], input=text, capture_output=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-1000:]
    match = re.search(rb"Collected : (\d+)", result.stderr)
    assert match, result.stderr[-1000:]
    return int(match.group(1))


def test_bpe_instructions(tmp_path: Path) -> None:
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind not installed (apt-get install valgrind)")
    rank_file = tmp_path / "tokenizer.model"
    rank_file.write_bytes(b"".join(base64.b64encode(t) + b" %d\n" % r for t, r in llama3_sized_ranks().items()))
    source = from_tiktoken(rank_file)
    write_bpe(tmp_path / "tokenizer.bin", source, *llama3_control_ids(source))
    binary = build_bpetool("tiny686", tmp_path / "build")
    text = b" ".join(Corpus(7).strings(400))
    load = _instructions(binary, tmp_path / "tokenizer.bin", b"")
    full = _instructions(binary, tmp_path / "tokenizer.bin", text)
    per_byte = (full - load) / len(text)
    print(f"\nBPE, 128256 ids, -m32 -march=pentium2 -O2: load {load / 1e6:.1f} M instructions "
          f"(target <= {TARGET_LOAD / 1e6:.0f} M), encode {per_byte:.0f} instructions/byte over {len(text)} bytes "
          f"(target <= {TARGET_PER_BYTE})")
    assert load <= TARGET_LOAD
    assert per_byte <= TARGET_PER_BYTE
