"""Bad input never crashes the port: a one-line `llama98: error:` and exit 1, or (for damaged weights) a clean run.

The fuzz test feeds seeded random truncations and bit flips of real checkpoints and tokenizers to the
AddressSanitizer/UBSan build, which aborts on the first out-of-bounds access or undefined operation.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.port_helpers import asan_bin, fixture, native_bin, run_port  # noqa: F401

HEADER = struct.Struct("<7i")


def _model() -> bytes:
    return fixture("stories260K.bin").read_bytes()


def _tok() -> bytes:
    return fixture("tok512.bin").read_bytes()


def _with_header(data: bytes, **fields: int) -> bytes:
    names = ["dim", "hidden", "layers", "heads", "kv_heads", "vocab", "seq_len"]
    values = dict(zip(names, HEADER.unpack_from(data)))
    values.update(fields)
    return HEADER.pack(*(values[n] for n in names)) + data[HEADER.size:]


def _tokenizer_with(count: int | None = None, max_len: int | None = None,
                    bad_len_at: int | None = None, bad_len: int = 0) -> bytes:
    data = _tok()
    out = bytearray(struct.pack("<i", max_len if max_len is not None else struct.unpack_from("<i", data)[0]))
    off, index = 4, 0
    while off < len(data) and (count is None or index < count):
        score, length = struct.unpack_from("<fi", data, off)
        piece = data[off + 8: off + 8 + length]
        out += struct.pack("<fi", score, bad_len if index == bad_len_at else length) + piece
        off += 8 + length
        index += 1
    return bytes(out)


# name -> (model bytes or None for "missing", tokenizer bytes, extra args, expected words in the message)
def _cases() -> dict[str, tuple[Callable[[], bytes | None], Callable[[], bytes], list[str], str]]:
    model, tok = _model, _tok
    return {
        "missing-checkpoint": (lambda: None, tok, [], "cannot open checkpoint"),
        "empty-checkpoint": (lambda: b"", tok, [], "shorter than"),
        "short-header": (lambda: model()[:10], tok, [], "shorter than"),
        "header-only": (lambda: model()[:28], tok, [], "implies"),
        "truncated-weights": (lambda: model()[:-4], tok, [], "implies"),
        "extra-bytes": (lambda: model() + b"\0\0\0\0", tok, [], "implies"),
        "dim-zero": (lambda: _with_header(model(), dim=0), tok, [], "dim"),
        "negative-layers": (lambda: _with_header(model(), layers=-5), tok, [], "n_layers"),
        "heads-not-dividing-dim": (lambda: _with_header(model(), heads=7), tok, [], "divisible"),
        "kv-heads-not-dividing-heads": (lambda: _with_header(model(), kv_heads=3), tok, [], "divisible"),
        "odd-head-size": (lambda: _with_header(model(), dim=72, heads=8), tok, [], "odd"),
        "zero-vocab": (lambda: _with_header(model(), vocab=0), tok, [], "vocab_size"),
        "vocab-without-bos": (lambda: _with_header(model(), vocab=1), tok, [], "BOS"),
        "absurd-vocab": (lambda: _with_header(model(), vocab=1 << 30), tok, [], "vocab_size"),
        "most-negative-vocab": (lambda: _with_header(model(), vocab=-(1 << 31)), tok, [], "vocab_size"),
        "absurd-seq-len": (lambda: _with_header(model(), seq_len=0x7FFFFFFF), tok, [], "seq_len"),
        "huge-but-legal-shape": (lambda: _with_header(model(), dim=65536, hidden=1 << 20, layers=1024), tok, [],
                                 "implies"),
        "unshared-without-classifier": (lambda: _with_header(model(), vocab=-512), tok, [], "implies"),
        "missing-tokenizer": (model, lambda: b"", ["-z", "/nonexistent/tok.bin"], "cannot open tokenizer"),
        "tokenizer-too-short": (model, lambda: b"\x07\0", [], "too short"),
        "tokenizer-truncated": (model, lambda: _tok()[:3000], [], "tokenizer"),
        "tokenizer-fewer-tokens": (model, lambda: _tokenizer_with(count=300), [], "ends after 300 tokens"),
        "tokenizer-zero-max-length": (model, lambda: _tokenizer_with(max_len=0), [], "max_token_length"),
        "tokenizer-absurd-max-length": (model, lambda: _tokenizer_with(max_len=1 << 30), [], "max_token_length"),
        "tokenizer-zero-length-token": (model, lambda: _tokenizer_with(bad_len_at=10, bad_len=0), [], "token 10"),
        "tokenizer-negative-length": (model, lambda: _tokenizer_with(bad_len_at=5, bad_len=-3), [], "token 5"),
        "tokenizer-token-too-long": (model, lambda: _tokenizer_with(bad_len_at=7, bad_len=100), [], "token 7"),
        "unknown-flag": (model, tok, ["-x", "1"], "unknown option"),
        "long-flag": (model, tok, ["-tt", "1"], "unknown option"),
        "not-a-flag": (model, tok, ["t", "1"], "unknown option"),
        "missing-value": (model, tok, ["-n"], "needs a value"),
        "chat-mode": (model, tok, ["-m", "chat"], "unknown mode"),
        "unwritable-report": (model, tok, ["-r", "/nonexistent/dir/report.txt"], "cannot open report"),
    }


CASES = _cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_clear_error(name: str, native_bin: Path, tmp_path: Path) -> None:  # noqa: F811
    make_model, make_tok, extra, words = CASES[name]
    model = make_model()
    model_path = tmp_path / "model.bin"
    if model is not None:
        model_path.write_bytes(model)
    tok_path = tmp_path / "tok.bin"
    tok_path.write_bytes(make_tok())
    result = run_port(native_bin, [str(model_path), "-z", str(tok_path), "-n", "4", *extra], timeout=60)
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert result.stdout == b""
    assert result.stderr.startswith(b"llama98: error: "), result.stderr
    assert result.stderr.count(b"\n") == 1 and result.stderr.endswith(b"\n")
    assert words.encode() in result.stderr, result.stderr


def test_no_arguments_is_a_usage_error(native_bin: Path) -> None:  # noqa: F811
    result = run_port(native_bin, [])
    assert result.returncode == 1 and result.stderr.startswith(b"llama98: error: missing CHECKPOINT; usage:")


def test_size_error_names_file_and_both_sizes(native_bin: Path, tmp_path: Path) -> None:  # noqa: F811
    path = tmp_path / "short.bin"
    path.write_bytes(_model()[:-100])
    result = run_port(native_bin, [str(path), "-z", str(fixture("tok512.bin"))])
    assert str(path).encode() in result.stderr
    assert b"1056540" in result.stderr and b"1056440" in result.stderr


FUZZ_CASES = 240


def _mutate(rng: random.Random, data: bytes, header_bytes: int) -> bytes:
    """One damage: a truncation, bit flips in the header, or bit flips anywhere."""
    kind = rng.randrange(4)
    if kind == 0:
        return data[: rng.randrange(len(data))]
    buf = bytearray(data)
    region = header_bytes if kind in (1, 2) else len(buf)
    for _ in range(rng.randint(1, 4)):
        pos = rng.randrange(region)
        buf[pos] ^= 1 << rng.randrange(8)
    if kind == 2:  # a header field set to a random 32-bit value
        field = rng.randrange(header_bytes // 4)
        buf[field * 4: field * 4 + 4] = struct.pack("<I", rng.getrandbits(32))
    return bytes(buf)


def test_fuzzed_inputs_never_crash(asan_bin: Path, tmp_path: Path) -> None:  # noqa: F811
    rng = random.Random(98)
    model, tok = _model(), _tok()
    jobs = []
    for i in range(FUZZ_CASES):
        damaged_model = i % 2 == 0
        m = _mutate(rng, model, 28) if damaged_model else model
        t = tok if damaged_model else _mutate(rng, tok, rng.choice([4, 64, len(tok)]))
        case = tmp_path / f"case{i:03d}"
        case.mkdir()
        (case / "m.bin").write_bytes(m)
        (case / "t.bin").write_bytes(t)
        args = [str(case / "m.bin"), "-z", str(case / "t.bin"), "-n", "6", "-s", str(i + 1),
                "-t", rng.choice(["0", "0.8", "1.5"]), "-p", rng.choice(["0.9", "0", "0.3"]),
                "-i", rng.choice(["", "Tom", "Héllo ☃ \x01 end"]), "-r", str(case / "r.txt")]
        jobs.append((i, args))

    def run(job: tuple[int, list[str]]) -> tuple[int, int, bytes]:
        index, args = job
        result = run_port(asan_bin, args, timeout=60)
        return index, result.returncode, result.stderr

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, jobs))
    failures = [(i, rc, err[-300:]) for i, rc, err in results
                if rc not in (0, 1) or b"AddressSanitizer" in err or b"runtime error" in err
                or (rc == 1 and not err.startswith(b"llama98: error: "))]
    assert not failures, failures[:3]
    outcomes = {rc for _, rc, _ in results}
    assert outcomes == {0, 1}, f"the fuzz mix should both fail cleanly and run: {outcomes}"
