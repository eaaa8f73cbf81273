"""The port's generate mode: the known greedy story, equality of the native and -m32 builds, the -r report,
llama2.c's argument clamping, and the 64-bit RNG emulation."""

from __future__ import annotations

import re
import subprocess
import zlib
from pathlib import Path

import pytest

from harness.port.build import default_src_dir
from tests.support.port_helpers import (  # noqa: F401
    GREEDY_STORY_START,
    asan_bin,
    fixture,
    native_bin,
    parse_report,
    run_port,
    stories_args,
    tiny686_bin,
)

# (name, extra arguments): greedy, three seeded samplers (with/without top-p and prompt), and -n 0.
RUNS = [
    ("greedy", ["-t", "0", "-n", "200"]),
    ("multinomial-seed7", ["-t", "1.0", "-p", "0", "-s", "7", "-n", "300"]),
    ("topp-prompt", ["-t", "0.8", "-p", "0.9", "-s", "42", "-n", "256", "-i", "Once upon a time, Tom"]),
    ("topp-low-prompt", ["-t", "1.2", "-p", "0.5", "-s", "3", "-n", "200", "-i", "The little dog"]),
    ("n0-seq-len", ["-t", "0.9", "-s", "11", "-n", "0"]),
    ("utf8-prompt", ["-t", "0", "-n", "40", "-i", "Héllo wörld ☃ 😀"]),
]


def test_greedy_story_is_the_known_text(native_bin: Path) -> None:  # noqa: F811
    result = run_port(native_bin, stories_args("-t", "0", "-n", "200"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith(GREEDY_STORY_START)
    assert out.endswith(b"\n")
    # 464 bytes of story, then llama2.c's final newline (see the lead note on the fixture README's count)
    assert len(out) == 465, len(out)


@pytest.mark.parametrize("name,extra", RUNS, ids=[r[0] for r in RUNS])
def test_native_and_tiny686_print_the_same_bytes(name: str, extra: list[str], native_bin: Path,  # noqa: F811
                                                 tiny686_bin: Path) -> None:  # noqa: F811
    native = run_port(native_bin, stories_args(*extra))
    m32 = run_port(tiny686_bin, stories_args(*extra))
    assert native.returncode == 0 and m32.returncode == 0, (native.stderr, m32.stderr)
    assert len(native.stdout) > 1
    assert native.stdout == m32.stdout


def test_sampling_depends_on_the_seed(native_bin: Path) -> None:  # noqa: F811
    a = run_port(native_bin, stories_args("-t", "1", "-s", "1", "-n", "60")).stdout
    b = run_port(native_bin, stories_args("-t", "1", "-s", "2", "-n", "60")).stdout
    again = run_port(native_bin, stories_args("-t", "1", "-s", "1", "-n", "60")).stdout
    assert a == again and a != b


def test_tok_s_goes_to_stderr(native_bin: Path) -> None:  # noqa: F811
    result = run_port(native_bin, stories_args("-t", "0", "-n", "20"))
    assert re.fullmatch(rb"achieved tok/s: \d+\.\d{6}\n", result.stderr), result.stderr
    assert b"tok/s" not in result.stdout
    single = run_port(native_bin, stories_args("-t", "0", "-n", "1"))
    assert single.stderr == b"", "no tok/s line when pos <= 1"


@pytest.mark.parametrize("given,same_as", [
    (["-t", "-1"], ["-t", "0"]),                      # temperature < 0 -> 0
    (["-t", "1", "-p", "1.5"], ["-t", "1", "-p", "0.9"]),  # top-p outside [0, 1] -> 0.9
    (["-t", "1", "-p", "-2"], ["-t", "1", "-p", "0.9"]),
    (["-n", "-5"], ["-n", "0"]),                      # steps < 0 -> 0 -> seq_len
    (["-n", "100000"], ["-n", "512"]),                # steps > seq_len -> seq_len
    (["-y", "ignored in generate mode"], []),
    (["-m", "generate"], []),
])
def test_llama2c_clamping(given: list[str], same_as: list[str], native_bin: Path) -> None:  # noqa: F811
    base = ["-s", "5"]
    if "-t" not in given:
        base += ["-t", "0"]
    a = run_port(native_bin, stories_args(*base, *given))
    b = run_port(native_bin, stories_args(*base, *same_as))
    assert a.returncode == 0 and a.stdout == b.stdout


def test_report_file_records_what_was_read(native_bin: Path, tmp_path: Path) -> None:  # noqa: F811
    report_path = tmp_path / "run.rep"
    prompt = "Once upon a time"
    result = run_port(native_bin, stories_args("-t", "0.7", "-s", "9", "-n", "30", "-i", prompt,
                                               "-r", str(report_path)))
    assert result.returncode == 0, result.stderr
    report = parse_report(report_path.read_text())
    assert report.header == "llama98 report 1"
    model = fixture("stories260K.bin").read_bytes()
    tok = fixture("tok512.bin").read_bytes()
    m = report.records["model"]
    assert int(m["bytes"]) == len(model) and m["crc32"] == f"{zlib.crc32(model):08x}"
    assert (m["dim"], m["hidden"], m["layers"], m["heads"], m["kv_heads"], m["vocab"], m["seq_len"], m["shared"]) \
        == ("64", "172", "5", "8", "4", "512", "512", "1")
    t = report.records["tokenizer"]
    assert int(t["bytes"]) == len(tok) and t["crc32"] == f"{zlib.crc32(tok):08x}"
    assert t["max_token_length"] == "7"
    a = report.records["args"]
    assert a == {"temperature": "0.700000", "topp": "0.900000", "seed": "9", "steps": "30",
                 "prompt_hex": prompt.encode().hex()}
    assert report.records["timer"]["source"] == "clock_gettime" and report.records["timer"]["hz"] == "1000000"
    prompt_ids = [int(i) for i in report.records["prompt"]["ids"].split(",")]
    assert prompt_ids[0] == 1 and int(report.records["prompt"]["tokens"]) == len(prompt_ids) > 2
    assert [int(tk["pos"]) for tk in report.tokens] == list(range(30))
    assert [int(tk["id"]) for tk in report.tokens[: len(prompt_ids) - 1]] == prompt_ids[1:]
    assert all(int(tk["ticks"]) >= 0 for tk in report.tokens)
    assert report.done is not None
    assert report.done["tokens"] == "30" and report.done["status"] == "ok" and report.done["hz"] == "1000000"
    assert int(report.done["ticks"]) >= sum(int(tk["ticks"]) for tk in report.tokens)


def test_report_to_stdout_follows_the_text(native_bin: Path) -> None:  # noqa: F811
    plain = run_port(native_bin, stories_args("-t", "0", "-n", "25"))
    with_report = run_port(native_bin, stories_args("-t", "0", "-n", "25", "-r", "-"))
    assert with_report.stdout.startswith(plain.stdout)
    report = parse_report(with_report.stdout[len(plain.stdout):].decode())
    assert report.header == "llama98 report 1"
    assert len(report.tokens) == 25 and report.done is not None and report.done["tokens"] == "25"


def test_report_seed_defaults_to_time_and_negative_seeds_sign_extend(native_bin: Path) -> None:  # noqa: F811
    timed = parse_report(run_port(native_bin, stories_args("-n", "3", "-s", "0", "-r", "-"))
                         .stdout.split(b"\n", 1)[1].decode())
    assert int(timed.records["args"]["seed"]) > 1_600_000_000
    negative = parse_report(run_port(native_bin, stories_args("-n", "3", "-s", "-1", "-r", "-"))
                            .stdout.split(b"\n", 1)[1].decode())
    assert negative.records["args"]["seed"] == str(2**64 - 1)


def _xorshift_u32(state: int) -> tuple[int, int]:
    """llama2.c's random_u32 with Python's unbounded ints: the reference for the two-halves emulation."""
    mask = (1 << 64) - 1
    state ^= state >> 12
    state ^= (state << 25) & mask
    state ^= state >> 27
    return state, ((state * 0x2545F4914F6CDD1D) & mask) >> 32


DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "sampler.h"
int main(int argc, char **argv)
{
    u64 s;
    int i;
    (void)argc;
    u64_set(&s, strtoul(argv[1], NULL, 16), strtoul(argv[2], NULL, 16));
    for (i = 0; i < 1000; i++) {
        printf("%lu\n", random_u32(&s));
    }
    return 0;
}
"""


@pytest.mark.parametrize("cc", [["gcc"], ["gcc", "-m32"]])
@pytest.mark.parametrize("seed", [1, 42, 0xFFFFFFFFFFFFFFFF, 0x8000000000000001, 1764288000])
def test_rng_emulation_matches_64_bit_xorshift(cc: list[str], seed: int, tmp_path: Path) -> None:
    src = default_src_dir()
    (tmp_path / "driver.c").write_text(DRIVER)
    exe = tmp_path / "driver"
    subprocess.run([*cc, "-std=c89", "-pedantic-errors", "-Wall", "-Werror", "-I", str(src), "-o", str(exe),
                    str(tmp_path / "driver.c"), str(src / "sampler.c"), str(src / "u64.c"), str(src / "util.c"),
                    str(src / "crc32.c"), "-lm"], check=True, timeout=120)
    out = subprocess.run([str(exe), f"{seed >> 32:x}", f"{seed & 0xFFFFFFFF:x}"], capture_output=True,
                         text=True, check=True, timeout=60).stdout.split()
    state, expected = seed, []
    for _ in range(1000):
        state, value = _xorshift_u32(state)
        expected.append(str(value))
    assert out == expected


def test_asan_build_runs_clean(asan_bin: Path) -> None:  # noqa: F811
    result = run_port(asan_bin, stories_args("-t", "0.9", "-p", "0.7", "-s", "4", "-n", "80",
                                             "-i", "Héllo wörld ☃ 😀 Tom", "-r", "-"))
    assert result.returncode == 0, result.stderr
    assert b"AddressSanitizer" not in result.stderr and b"runtime error" not in result.stderr


def _pieces(tokenizer: Path) -> list[bytes]:
    data = tokenizer.read_bytes()
    pieces, off = [], 4
    while off < len(data):
        length = int.from_bytes(data[off + 4: off + 8], "little")
        pieces.append(data[off + 8: off + 8 + length])
        off += 8 + length
    return pieces


def _expected_text(pieces: list[bytes], first: int, ids: list[int]) -> bytes:
    """llama2.c's decode + safe_printf, written independently of the port, from the report's token ids."""
    out, prev = bytearray(), first
    for token in ids:
        if token == 1:
            break
        piece = pieces[token].split(b"\0")[0]
        if prev == 1 and piece[:1] == b" ":
            piece = piece[1:]
        match = re.fullmatch(rb"<0x([0-9A-Fa-f]{2})>", piece)
        if match:
            piece = bytes([int(match.group(1), 16)])
        if len(piece) == 1 and not (0x20 <= piece[0] <= 0x7E or piece[0] in b"\t\n\v\f\r "):
            piece = b""
        out += piece
        prev = token
    return bytes(out) + b"\n"


@pytest.mark.parametrize("model,tokenizer,extra", [
    ("stories260K.bin", "tok512.bin", ["-t", "0.9", "-s", "8", "-n", "300", "-i", "Héllo wörld ☃ 😀 Tom\n\tsaid"]),
    ("stories260K.bin", "tok512.bin", ["-t", "1.5", "-p", "0.95", "-s", "21", "-n", "400"]),
    ("gen:gqa-unshared-32000", "tokenizer.bin", ["-t", "1.0", "-s", "4", "-n", "80", "-i", "日本 ☃ \x01 \x7f ok"]),
])
def test_printed_text_is_llama2c_decoding_of_the_ids(model: str, tokenizer: str, extra: list[str],
                                                     native_bin: Path) -> None:  # noqa: F811
    from harness.models.modelgen import cached_checkpoint
    model_path = cached_checkpoint(model[4:]) if model.startswith("gen:") else fixture(model)
    tok_path = fixture(tokenizer)
    result = run_port(native_bin, [str(model_path), "-z", str(tok_path), *extra, "-r", "-"])
    assert result.returncode == 0, result.stderr
    split = result.stdout.rindex(b"llama98 report 1\n")
    report = parse_report(result.stdout[split:].decode())
    ids = [int(t["id"]) for t in report.tokens]
    assert result.stdout[:split] == _expected_text(_pieces(tok_path), 1, ids)
