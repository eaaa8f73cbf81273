"""The harness's split writers against the port's reader (native build): files cut by write_parts, quantize and
modelgen under every naming case read in the port as the one file they are (its report's bytes, crc32 and parts
match the logical file) and its run passes the oracle's verify, resident and streamed (-M).

tests/port/test_streaming.py cuts parts by the rule itself to test the port; this test closes the loop with the
harness's own writers, so the two implementations of the rule cannot drift apart unnoticed. It needs the port
that reads split checkpoints (main, 7e555c1 "split checkpoints read as one logical file (wfile.c)").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness.formats.parts import logical_crc32, part_paths, write_parts
from harness.formats.report import split_stdout
from harness.judge.verify import verify
from harness.models.modelgen import SHAPES, cached_tokenizer, write_checkpoint
from harness.models.quantize import quantize_file
from tests.support.port_helpers import fixture, native_bin, run_port  # noqa: F401


def _stories(tmp: Path, name: str, part_bytes: int) -> tuple[Path, Path]:
    first = tmp / name
    write_parts(first, [fixture("stories260K.bin").read_bytes()], part_bytes=part_bytes)
    return first, fixture("tok512.bin")


def _q8(tmp: Path, name: str, part_bytes: int) -> tuple[Path, Path]:
    return quantize_file(fixture("stories260K.bin"), tmp / name, "q8_0", part_bytes=part_bytes), fixture("tok512.bin")


def _unshared(tmp: Path, name: str, part_bytes: int) -> tuple[Path, Path]:
    shape = SHAPES["unshared-512"]
    return write_checkpoint(tmp / name, shape, seed=3, part_bytes=part_bytes), cached_tokenizer(shape.vocab_size)


CASES: dict[str, tuple[Callable[[Path, str, int], tuple[Path, Path]], str, int]] = {
    "fp32-upper": (_stories, "MODEL.BIN", 100_000),
    "fp32-lower-pages": (_stories, "model.bin", 64 * 1024),
    "fp32-no-extension": (_stories, "model", 300_000),
    "q8_0": (_q8, "Q8.BIN", 50_000),
    "generated-unshared": (_unshared, "gen.Bin", 70_000),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("budget", [None, "0.5"])
def test_the_port_reads_what_the_harness_splits(case: str, budget: str | None, native_bin: Path,  # noqa: F811
                                                 tmp_path: Path) -> None:
    make, name, part_bytes = CASES[case]
    first, tokenizer = make(tmp_path, name, part_bytes)
    assert len(part_paths(first)) > 2
    args = [str(first), "-z", str(tokenizer), "-t", "0", "-n", "40", "-i", "Once upon", "-r", "-"]
    result = run_port(native_bin, args + (["-M", budget] if budget else []))
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-400:]
    _text, report = split_stdout(result.stdout)
    assert (report.model.bytes, report.model.crc32) == logical_crc32(first)
    assert report.model.parts == len(part_paths(first))
    assert report.memory is not None and report.memory.source == ("option" if budget else "os")
    if budget:
        assert report.memory.streamed > 0 and report.read_bytes == sum(t.read_bytes or 0 for t in report.tokens) > 0
    verdict = verify(first, tokenizer, report)
    assert verdict.ok, verdict.message
