"""The port and the oracle agree: native, -m32 x87 (tiny686) and the numpy oracle print the same bytes for the
same arguments, and teacher-forced verify accepts every port run and rejects a doctored one at the right position.
(The Win32 build is compared with the native build under Wine in test_port_wine.py, which closes the chain.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.formats.report import parse_report, split_stdout
from harness.judge.verify import verify
from harness.models.modelgen import LARGE_SHAPES, SHAPES, cached_checkpoint, cached_tokenizer
from harness.oracle.generate import generate_text
from tests.support.port_helpers import fixture, native_bin, run_port, tiny686_bin  # noqa: F401

STORY_RUNS = {
    "greedy": ["-t", "0", "-n", "200"],
    "topp-seed42": ["-t", "1.0", "-p", "0.9", "-s", "42", "-n", "200"],
    "multinomial-prompt": ["-t", "0.8", "-p", "1.0", "-s", "7", "-n", "150", "-i", "The dog ran"],
    "topp-prompt-nonascii": ["-t", "1.1", "-p", "0.5", "-s", "3", "-n", "120", "-i", "Émile saw a café ☕"],
    "full-length": ["-t", "0", "-n", "0"],
}
SHAPE_RUN = ["-t", "0.9", "-p", "0.9", "-s", "11", "-n", "48", "-i", "Once upon"]
GENERATED = [name for name in SHAPES if name not in LARGE_SHAPES]


def _flag(args: list[str], flag: str, default: str) -> str:
    return args[args.index(flag) + 1] if flag in args else default


def oracle_bytes(model: Path, tokenizer: Path, args: list[str]) -> bytes:
    """What the oracle prints for the same command line."""
    return generate_text(model, tokenizer, temperature=float(_flag(args, "-t", "1.0")),
                         topp=float(_flag(args, "-p", "0.9")), seed=int(_flag(args, "-s", "0")),
                         steps=int(_flag(args, "-n", "256")), prompt=_flag(args, "-i", "").encode())


def _check_three_way(model: Path, tokenizer: Path, args: list[str], native: Path, m32: Path) -> bytes:
    command = [str(model), "-z", str(tokenizer), *args]
    native_run = run_port(native, command)
    m32_run = run_port(m32, command)
    assert native_run.returncode == 0, native_run.stderr
    assert m32_run.returncode == 0, m32_run.stderr
    expected = oracle_bytes(model, tokenizer, args)
    assert native_run.stdout == expected
    assert m32_run.stdout == expected
    return expected


@pytest.mark.parametrize("run", sorted(STORY_RUNS))
def test_stories260k_port_builds_and_oracle_agree(run: str, native_bin: Path, tiny686_bin: Path) -> None:  # noqa: F811
    text = _check_three_way(fixture("stories260K.bin"), fixture("tok512.bin"), STORY_RUNS[run], native_bin,
                            tiny686_bin)
    if run == "greedy":
        # The shared fixtures README counts 464 bytes; llama2.c prints those 464 bytes and then its final "\n".
        assert len(text) == 465 and text.endswith(b"\n")
        assert text.startswith(b"Once upon a time, there was a little girl named Lily. She loved to play outside in"
                               b" the park.")


@pytest.mark.parametrize("name", GENERATED)
def test_generated_shapes_port_builds_and_oracle_agree(name: str, native_bin: Path, tiny686_bin: Path) -> None:  # noqa: F811
    shape = SHAPES[name]
    tokenizer = fixture("tokenizer.bin") if shape.vocab_size == 32000 else cached_tokenizer(shape.vocab_size)
    text = _check_three_way(cached_checkpoint(name), tokenizer, SHAPE_RUN, native_bin, tiny686_bin)
    assert len(text) > 1


@pytest.mark.parametrize("run", sorted(STORY_RUNS))
def test_verify_accepts_every_port_run(run: str, tiny686_bin: Path) -> None:  # noqa: F811
    model, tokenizer = fixture("stories260K.bin"), fixture("tok512.bin")
    result = run_port(tiny686_bin, [str(model), "-z", str(tokenizer), *STORY_RUNS[run], "-r", "-"])
    assert result.returncode == 0, result.stderr
    text, report = split_stdout(result.stdout)
    assert text == oracle_bytes(model, tokenizer, STORY_RUNS[run])
    verdict = verify(model, tokenizer, report)
    assert verdict.ok, str(verdict)
    assert report.tok_per_s() is not None and report.tok_per_s() > 0


def test_verify_rejects_one_changed_token_at_its_position(native_bin: Path, tmp_path: Path) -> None:  # noqa: F811
    model, tokenizer = fixture("stories260K.bin"), fixture("tok512.bin")
    report_path = tmp_path / "run.report"
    result = run_port(native_bin, [str(model), "-z", str(tokenizer), "-t", "0", "-n", "80", "-r", str(report_path)])
    assert result.returncode == 0, result.stderr
    lines = report_path.read_text().splitlines(keepends=True)
    token_lines = [i for i, line in enumerate(lines) if line.startswith("token ")]
    target = token_lines[37]
    fields = dict(pair.split("=", 1) for pair in lines[target].split()[1:])
    original = int(fields["id"])
    replacement = 3 + (original + 101) % 500  # a different ordinary token
    lines[target] = lines[target].replace(f" id={original} ", f" id={replacement} ")
    verdict = verify(model, tokenizer, parse_report("".join(lines)))
    assert not verdict.ok
    assert verdict.position == int(fields["pos"])
    assert verdict.actual_id == replacement and verdict.expected_id == original
