"""The port's memory budget (-M) and split checkpoints, on the host builds: every format streams through the same
code, a streamed run prints the same text as a resident one, reads exactly the streamed bytes per token and stays
within its budget, and a checkpoint split into parts reads as the one file it was.

The parts are cut here by the naming rule itself (FORMATS.md, "Split checkpoints"), not by the harness's writer,
so the port is checked against the rule and not against another implementation of it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness.models.modelgen import SHAPES, cached_checkpoint, cached_tokenizer
from harness.models.quantize import quantize_file, write_ternary_model
from tests.support.hf_llama import make_hf_dir
from tests.support.port_helpers import (  # noqa: F401
    PortReport,
    asan_bin,
    fixture,
    native_bin,
    parse_report,
    run_port,
    tiny686_bin,
)

MIB = 1 << 20
ARGS = ["-t", "0", "-n", "40", "-i", "Once upon a time"]


def _stories(tmp: Path) -> tuple[Path, Path]:
    return fixture("stories260K.bin"), fixture("tok512.bin")


def _unshared(tmp: Path) -> tuple[Path, Path]:
    return cached_checkpoint("unshared-512"), cached_tokenizer(SHAPES["unshared-512"].vocab_size)


def _q8(tmp: Path) -> tuple[Path, Path]:
    quantize_file(fixture("stories260K.bin"), tmp / "q8.bin", "q8_0")
    return tmp / "q8.bin", fixture("tok512.bin")


def _q8_unshared(tmp: Path) -> tuple[Path, Path]:
    quantize_file(cached_checkpoint("gqa-unshared-32000"), tmp / "q8u.bin", "q8_0")
    return tmp / "q8u.bin", cached_tokenizer(32000)


def _ternary(tmp: Path) -> tuple[Path, Path]:
    write_ternary_model(tmp / "t.bin", SHAPES["260K-shape"], seed=5, ffn="relu2", sub_norms=True,
                        int8_classifier=True)
    return tmp / "t.bin", fixture("tok512.bin")


def _ternary_fp32_classifier(tmp: Path) -> tuple[Path, Path]:
    write_ternary_model(tmp / "tf.bin", SHAPES["unshared-512"], seed=6)
    return tmp / "tf.bin", cached_tokenizer(512)


def _llama3(tmp: Path) -> tuple[Path, Path]:
    from harness.models.export_hf import export

    make_hf_dir(tmp / "hf", None, dtype="F32", shards=1, seed=7, tie_word_embeddings=False)
    export(tmp / "hf", tmp / "l3.bin", tmp / "l3tok.bin")
    return tmp / "l3.bin", tmp / "l3tok.bin"


FORMATS: dict[str, Callable[[Path], tuple[Path, Path]]] = {
    "v0-shared": _stories, "v0-unshared": _unshared, "q8_0": _q8, "q8_0-unshared-32000": _q8_unshared,
    "ternary-int8-classifier": _ternary, "ternary-fp32-classifier": _ternary_fp32_classifier,
    "llama3-v3-untied": _llama3,
}


def _run(binary: Path, model: Path, tokenizer: Path, report: Path, *extra: str) -> tuple[bytes, PortReport]:
    result = run_port(binary, [str(model), "-z", str(tokenizer), *ARGS, *extra, "-r", str(report)])
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout, parse_report(report.read_text())


def _half_of(resident: PortReport) -> str:
    """A budget that holds about half of the weights: the run state fits, the rest must stream."""
    memory = resident.records["memory"]
    assert resident.done is not None
    weights = int(memory["resident"])
    return f"{(int(resident.done['peak']) - weights / 2) / MIB:.4f}"


def split_by_rule(model: Path, directory: Path, first_name: str, parts: int) -> list[Path]:
    """Cut `model` into `parts` files named by the rule: the first keeps `first_name`, then .B01, .B02 (b01 when the
    extension has a lowercase letter; appended to a name without an extension)."""
    data = model.read_bytes()
    stem, dot, ext = first_name.rpartition(".")
    if not dot:
        stem, ext = first_name, ""
    letter = "b" if any(ch.islower() for ch in ext) else "B"
    names = [first_name] + [f"{stem}.{letter}{i:02d}" for i in range(1, parts)]
    size = -(-len(data) // parts)
    paths = []
    for index, name in enumerate(names):
        path = directory / name
        path.write_bytes(data[index * size:(index + 1) * size])
        paths.append(path)
    return paths


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_streamed_run_prints_the_resident_text_and_reads_what_it_streams(fmt: str, native_bin: Path,  # noqa: F811
                                                                         tmp_path: Path) -> None:
    model, tokenizer = FORMATS[fmt](tmp_path)
    text, resident = _run(native_bin, model, tokenizer, tmp_path / "r.txt", "-M", "4096")
    assert resident.records["memory"]["streamed"] == "0" and resident.records["memory"]["buffer"] == "0"
    assert all(token["read"] == "0" for token in resident.tokens)
    budget = _half_of(resident)
    streamed_text, streamed = _run(native_bin, model, tokenizer, tmp_path / "s.txt", "-M", budget)
    assert streamed_text == text
    assert streamed.records["model"]["crc32"] == resident.records["model"]["crc32"]
    memory, done = streamed.records["memory"], streamed.done
    assert done is not None and memory["source"] == "option"
    assert int(memory["streamed"]) > 0 and int(memory["buffer"]) > 0
    assert int(memory["resident"]) < int(resident.records["memory"]["resident"])
    assert int(done["peak"]) <= float(budget) * MIB, (done["peak"], budget)
    reads = [int(token["read"]) for token in streamed.tokens]
    assert reads == [int(memory["streamed"])] * len(reads)  # each token reads every streamed byte once
    assert int(done["read"]) == sum(reads)


@pytest.mark.parametrize("fmt", ["v0-unshared", "q8_0-unshared-32000", "ternary-int8-classifier"])
def test_tiny_budget_streams_everything_and_still_agrees(fmt: str, native_bin: Path,  # noqa: F811
                                                         tiny686_bin: Path, tmp_path: Path) -> None:  # noqa: F811
    """The smallest budget that holds the run state: every matrix streams in small chunks (the x87 build too)."""
    model, tokenizer = FORMATS[fmt](tmp_path)
    for binary in (native_bin, tiny686_bin):
        text, resident = _run(binary, model, tokenizer, tmp_path / "r.txt")
        assert resident.records["memory"]["source"] == "os"  # /proc/meminfo: a small model stays resident
        assert resident.done is not None
        state = int(resident.done["peak"]) - int(resident.records["memory"]["resident"])
        tiny = f"{(state + 96 * 1024) / MIB:.4f}"
        streamed_text, streamed = _run(binary, model, tokenizer, tmp_path / "s.txt", "-M", tiny)
        assert streamed_text == text
        assert int(streamed.records["memory"]["resident"]) < int(resident.records["memory"]["resident"]) / 3


@pytest.mark.parametrize("first_name", ["MODEL.BIN", "model.bin", "stories", "Story.Bin"])
def test_split_checkpoint_reads_as_one_file(first_name: str, native_bin: Path, tmp_path: Path) -> None:  # noqa: F811
    model, tokenizer = fixture("stories260K.bin"), fixture("tok512.bin")
    text, whole = _run(native_bin, model, tokenizer, tmp_path / "w.txt")
    parts = split_by_rule(model, tmp_path, first_name, 3)
    assert len({path.name.lower() for path in parts}) == 3
    for extra in ((), ("-M", _half_of(whole))):
        split_text, split = _run(native_bin, parts[0], tokenizer, tmp_path / "p.txt", *extra)
        assert split_text == text
        for key in ("bytes", "crc32"):
            assert split.records["model"][key] == whole.records["model"][key]
        assert split.records["model"]["parts"] == "3" and whole.records["model"]["parts"] == "1"


@pytest.mark.parametrize("fmt", ["q8_0", "ternary-int8-classifier", "llama3-v3-untied"])
def test_streamed_split_run_is_memory_safe(fmt: str, asan_bin: Path, tmp_path: Path) -> None:  # noqa: F811
    """AddressSanitizer + UBSan over a streamed run of a split file: the chunked reads stay inside the buffer."""
    model, tokenizer = FORMATS[fmt](tmp_path)
    parts = split_by_rule(model, tmp_path, "MODEL.BIN", 4)
    text, resident = _run(asan_bin, model, tokenizer, tmp_path / "r.txt")
    streamed_text, streamed = _run(asan_bin, parts[0], tokenizer, tmp_path / "s.txt", "-M", _half_of(resident))
    assert streamed_text == text and int(streamed.records["memory"]["streamed"]) > 0


def _error(binary: Path, args: list[str]) -> str:
    result = run_port(binary, args)
    assert result.returncode == 1 and result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llama98: error: "), lines
    return lines[0]


def test_budget_and_parts_errors_are_one_line(native_bin: Path, tmp_path: Path) -> None:  # noqa: F811
    model, tokenizer = fixture("stories260K.bin"), fixture("tok512.bin")
    assert "too small for this model" in _error(native_bin, [str(model), "-z", str(tokenizer), "-M", "0.01"])
    assert "memory budget must be a positive" in _error(native_bin, [str(model), "-z", str(tokenizer), "-M", "x"])
    parts = split_by_rule(model, tmp_path, "MODEL.BIN", 3)
    parts[1].unlink()  # a gap: only MODEL.BIN is found, shorter than its header says
    message = _error(native_bin, [str(parts[0]), "-z", str(tokenizer)])
    assert "MODEL.BIN" in message and "truncated" in message
    parts[1].write_bytes(b"")
    assert "part" in _error(native_bin, [str(parts[0]), "-z", str(tokenizer)])
