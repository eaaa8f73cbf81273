"""Speed of the llama98 port: instructions per token under callgrind (the deterministic figure the targets are set
in) and native tokens per second. Run with `pytest -m bench -s` to see the figures.

Instructions per token are the difference of two runs that differ only in length, so loading, CRC and setup
cancel: (Ir at -n 40 - Ir at -n 20) / 20 on stories260K (positions 20-40), (Ir at -n 8 - Ir at -n 4) / 4 on the
15M shape (positions 4-8). The build measured is the guest one: gcc -m32 -march=pentium2 -O2 -static.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.port_helpers import fixture, native_bin, parse_report, run_port, tiny686_bin  # noqa: F401

pytestmark = pytest.mark.bench

TARGET_260K = 1_700_000
TARGET_15M = 80_000_000
CALLGRIND_TIMEOUT_S = 600


def _model_15m() -> Path:
    from harness.models.modelgen import cached_checkpoint
    return cached_checkpoint("15M-shape")


def _instructions(binary: Path, args: list[str], steps: int, tmp_path: Path) -> int:
    """Total Ir of one run under callgrind; the run must produce all `steps` tokens (no early BOS)."""
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind not installed (apt-get install valgrind)")
    report = tmp_path / f"run{steps}.rep"
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", str(binary), *args,
         "-n", str(steps), "-r", str(report)],
        capture_output=True, text=True, timeout=CALLGRIND_TIMEOUT_S, check=False,
    )
    assert result.returncode == 0, result.stderr[-1000:]
    assert len(parse_report(report.read_text()).tokens) == steps, "run ended early: the difference would be wrong"
    match = re.search(r"Collected : (\d+)", result.stderr)
    assert match, result.stderr[-1000:]
    return int(match.group(1))


def _per_token(binary: Path, args: list[str], short: int, long: int, tmp_path: Path) -> float:
    return (_instructions(binary, args, long, tmp_path) - _instructions(binary, args, short, tmp_path)) / (long - short)


def test_instructions_per_token_260k(tiny686_bin: Path, tmp_path: Path) -> None:  # noqa: F811
    args = [str(fixture("stories260K.bin")), "-z", str(fixture("tok512.bin")), "-t", "0"]
    per_token = _per_token(tiny686_bin, args, 20, 40, tmp_path)
    print(f"\nstories260K, -m32 -march=pentium2 -O2: {per_token / 1e6:.3f} M instructions/token "
          f"(positions 20-40; target <= {TARGET_260K / 1e6:.1f} M)")
    assert per_token <= TARGET_260K


def test_instructions_per_token_15m_shape(tiny686_bin: Path, tmp_path: Path) -> None:  # noqa: F811
    args = [str(_model_15m()), "-z", str(fixture("tokenizer.bin")), "-t", "0"]
    per_token = _per_token(tiny686_bin, args, 4, 8, tmp_path)
    print(f"\n15M shape, -m32 -march=pentium2 -O2: {per_token / 1e6:.2f} M instructions/token "
          f"(positions 4-8; target <= {TARGET_15M / 1e6:.0f} M)")
    assert per_token <= TARGET_15M


def _tok_per_s(report_text: str) -> float:
    """tok/s the way REPORT.md defines it: first step excluded as warm-up."""
    report = parse_report(report_text)
    ticks = [int(t["ticks"]) for t in report.tokens[1:]]
    assert report.done is not None and ticks and sum(ticks) > 0
    return len(ticks) * int(report.done["hz"]) / sum(ticks)


@pytest.mark.parametrize("model", ["stories260K", "15M-shape"])
def test_native_tokens_per_second(model: str, native_bin: Path) -> None:  # noqa: F811
    if model == "stories260K":
        args = [str(fixture("stories260K.bin")), "-z", str(fixture("tok512.bin")), "-n", "512"]
    else:
        args = [str(_model_15m()), "-z", str(fixture("tokenizer.bin")), "-n", "128"]
    result = run_port(native_bin, [*args, "-t", "0", "-r", "-"], timeout=600)
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode(errors="replace")
    tok_s = _tok_per_s(text[text.index("llama98 report 1\n"):])
    print(f"\n{model}, native gcc -O2: {tok_s:.1f} tok/s")
    assert tok_s > 0
