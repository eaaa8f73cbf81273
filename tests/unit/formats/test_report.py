"""The -r report parser: typed records, tolerant of additions, strict about what checks need."""

from __future__ import annotations

import pytest

from harness.formats.report import (
    ReportError,
    describe_memory,
    format_report,
    parse_report,
    read_report,
    split_stdout,
)

SAMPLE = """llama98 report 1
args temperature=0.000000 topp=0.900000 seed=42 steps=200 prompt_hex=4869
model bytes=1056540 crc32=53c34099 dim=64 hidden=172 layers=5 heads=8 kv_heads=4 vocab=512 seq_len=512 shared=1
tokenizer bytes=6227 crc32=0a1b2c3d max_token_length=7
timer source=clock_gettime hz=1000000
prompt tokens=2 ids=1,320
token pos=0 id=403 ticks=1234
token pos=1 id=407 ticks=1180
token pos=2 id=261 ticks=820
done tokens=3 ticks=9876543 hz=1000000 status=ok
"""


def test_parses_every_record():
    r = parse_report(SAMPLE)
    assert (r.args.temperature, r.args.topp, r.args.seed, r.args.steps) == (0.0, 0.9, 42, 200)
    assert r.args.prompt == b"Hi"
    assert (r.model.bytes, r.model.crc32, r.model.int_field("kv_heads")) == (1056540, 0x53C34099, 4)
    assert (r.tokenizer.bytes, r.tokenizer.crc32, r.tokenizer.int_field("max_token_length")) == (6227, 0x0A1B2C3D, 7)
    assert (r.timer.source, r.timer.hz) == ("clock_gettime", 1000000)
    assert r.prompt_ids == [1, 320]
    assert r.token_ids == [403, 407, 261]
    assert r.tokens[1].ticks == 1180
    assert r.done is not None and r.done.tokens == 3 and r.done.status == "ok"
    assert r.complete


def test_tok_per_s_skips_the_first_step():
    r = parse_report(SAMPLE)
    assert r.tok_per_s() == pytest.approx(2 * 1000000 / (1180 + 820))
    one = parse_report(SAMPLE.replace("token pos=1 id=407 ticks=1180\n", "")
                       .replace("token pos=2 id=261 ticks=820\n", ""))
    assert one.tok_per_s() is None


def test_unknown_keys_and_kinds_and_crlf_are_tolerated():
    text = SAMPLE.replace("status=ok", "status=ok future=1").replace("timer source", "mem free=123\ntimer source")
    r = parse_report(text.replace("\n", "\r\n"))
    assert r.done is not None and r.done.status == "ok"
    assert r.timer.hz == 1000000


def test_no_prompt_is_dash():
    assert parse_report(SAMPLE.replace("prompt_hex=4869", "prompt_hex=-")).args.prompt is None


def test_missing_done_is_an_incomplete_report_not_an_error():
    r = parse_report(SAMPLE.replace("done tokens=3 ticks=9876543 hz=1000000 status=ok\n", ""))
    assert not r.complete and len(r.tokens) == 3


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: t.replace("llama98 report 1", "llama98 report 2"), "version 2"),
        (lambda t: t.replace("llama98 report 1", "hello"), "not 'llama98 report N'"),
        (lambda t: "\n".join(l for l in t.splitlines() if not l.startswith("args")), "no args record"),
        (lambda t: "\n".join(l for l in t.splitlines() if not l.startswith("model")), "no model record"),
        (lambda t: "\n".join(l for l in t.splitlines() if not l.startswith("prompt")), "no prompt record"),
        (lambda t: t.replace("id=407", "id=four"), "line 8 (token): id='four' is not a number"),
        (lambda t: t.replace("ticks=1180", "ticks"), "line 8: expected key=value"),
        (lambda t: t.replace("crc32=53c34099", "crc32=53c3"), "not 8 hex digits"),
        (lambda t: t.replace("prompt tokens=2", "prompt tokens=3"), "tokens=3 but 2 ids"),
        (lambda t: t.replace("token pos=0 id=403 ticks=1234", "token pos=0 ticks=1234"), "missing id="),
        (lambda t: t + "args temperature=1 topp=1 seed=1 steps=1 prompt_hex=-\n", "second args record"),
        (lambda t: "", "empty"),
    ],
)
def test_malformed_reports_are_one_line_errors(mutate, message):
    with pytest.raises(ReportError) as info:
        parse_report(mutate(SAMPLE), source="r.txt")
    assert message in str(info.value)
    assert "\n" not in str(info.value) and str(info.value).startswith("r.txt")


def test_split_stdout_separates_text_and_report():
    story = b"Once upon a time llama98 report 1 appears mid-line.\n"
    text, report = split_stdout(story + SAMPLE.encode())
    assert text == story
    assert report.token_ids == [403, 407, 261]
    with pytest.raises(ReportError, match="no 'llama98 report' header"):
        split_stdout(b"just text\n")


def test_format_then_parse_round_trip(tmp_path):
    model, tok = tmp_path / "m.bin", tmp_path / "t.bin"
    model.write_bytes(b"model bytes")
    tok.write_bytes(b"tok")
    text = format_report(temperature=0.8, topp=0.9, seed=7, steps=3, prompt=b"\xc3\xa9", model_path=model,
                         model_fields={"dim": 8}, tokenizer_path=tok, max_token_length=5, prompt_ids=[1, 9],
                         token_ids=[9, 4, 1], ticks=[5, 6, 7], hz=1000)
    path = tmp_path / "r.txt"
    path.write_text(text)
    r = read_report(path)
    assert r.model.bytes == 11 and r.tokenizer.bytes == 3
    assert r.args.prompt == "é".encode() and r.args.temperature == pytest.approx(0.8)
    assert r.token_ids == [9, 4, 1] and r.done is not None and r.done.ticks == 18
    assert r.tok_per_s() == pytest.approx(2 * 1000 / 13)


def test_unreadable_report_is_a_report_error(tmp_path):
    with pytest.raises(ReportError, match="cannot read report"):
        read_report(tmp_path / "missing.txt")


STREAMED = SAMPLE.replace(" seq_len=512 shared=1\n", " seq_len=512 shared=1 parts=3\n").replace(
    "timer source=", "memory budget=67108864 resident=1000000 streamed=56540 buffer=65536 source=os\ntimer source=",
).replace("ticks=1234\n", "ticks=1234 read=56540 io=234\n").replace("ticks=1180\n", "ticks=1180 read=0 io=0\n").replace(
    "status=ok\n", "status=ok peak=3145728 read=113080\n")


def test_parses_the_memory_and_streaming_fields():
    r = parse_report(STREAMED)
    assert r.model.parts == 3
    assert r.memory is not None
    assert (r.memory.budget, r.memory.resident, r.memory.streamed, r.memory.buffer, r.memory.source) == (
        67108864, 1000000, 56540, 65536, "os")
    assert [t.read_bytes for t in r.tokens] == [56540, 0, None]
    assert [t.io_ticks for t in r.tokens] == [234, 0, None]
    assert (r.peak_bytes, r.read_bytes) == (3145728, 113080)
    assert r.done is not None and (r.done.peak_bytes, r.done.read_bytes) == (3145728, 113080)


def test_the_new_fields_are_optional():
    r = parse_report(SAMPLE)
    assert (r.model.parts, r.memory, r.peak_bytes, r.read_bytes) == (None, None, None, None)
    assert all(t.read_bytes is None and t.io_ticks is None for t in r.tokens)
    assert describe_memory(r) is None
    incomplete = parse_report(STREAMED.split("done ")[0])
    assert incomplete.memory is not None and (incomplete.peak_bytes, incomplete.read_bytes) == (None, None)


@pytest.mark.parametrize(("old", "new", "message"), [
    ("source=os", "source=disk", r"line 5 \(memory\): source='disk' is not one of option, os, none"),
    ("budget=67108864", "budget=lots", r"line 5 \(memory\): budget='lots' is not a number"),
    ("resident=1000000 ", "", r"line 5 \(memory\): missing resident="),
    ("streamed=56540 buffer", "streamed=-1 buffer", r"line 5 \(memory\): streamed=-1 is negative"),
    ("parts=3", "parts=0", r"line 3 \(model\): parts=0 is not a positive count"),
    ("ticks=1234 read=56540", "ticks=1234 read=x", r"line 8 \(token\): read='x' is not a number"),
    ("io=234", "io=-2", r"line 8 \(token\): io=-2 is negative"),
    ("peak=3145728", "peak=-3", r"line 11 \(done\): peak=-3 is negative"),
])
def test_bad_new_fields_are_one_line_errors(old, new, message):
    with pytest.raises(ReportError, match=message) as caught:
        parse_report(STREAMED.replace(old, new))
    assert "\n" not in str(caught.value)


def test_a_second_memory_line_or_one_after_done_is_refused():
    memory = "memory budget=1 resident=1 streamed=0 buffer=0 source=none\n"
    with pytest.raises(ReportError, match="second memory record"):
        parse_report(STREAMED.replace("timer source=", memory + "timer source="))
    with pytest.raises(ReportError, match="memory record after done"):
        parse_report(SAMPLE + memory)


def test_format_report_writes_the_new_fields(tmp_path):
    from harness.formats.report import MemoryRecord

    model, tok = tmp_path / "m.bin", tmp_path / "t.bin"
    model.write_bytes(b"m" * 100)
    tok.write_bytes(b"t" * 10)
    memory = MemoryRecord(1 << 20, 60, 40, 16, "option")
    text = format_report(temperature=0.0, topp=0.9, seed=1, steps=2, prompt=None, model_path=model,
                         model_fields={"parts": 1}, tokenizer_path=tok, max_token_length=3, prompt_ids=[1],
                         token_ids=[5, 6], ticks=[3, 4], memory=memory, token_reads=[40, 40], token_io=[1, 3],
                         peak_bytes=999, read_bytes=80)
    r = parse_report(text)
    assert text.splitlines()[4].startswith("memory ")  # after the model and tokenizer lines
    assert (r.model.parts, r.memory, [t.read_bytes for t in r.tokens], r.peak_bytes, r.read_bytes) == (
        1, memory, [40, 40], 999, 80)
    assert [t.io_ticks for t in r.tokens] == [1, 3]


def test_describe_memory_in_one_line():
    r = parse_report(STREAMED)
    assert describe_memory(r) == ("memory: budget 64.0 MiB (os), weights resident 1.0 MiB, streamed 0.1 MiB per "
                                  "token through a 64 KiB buffer; peak allocation 3.0 MiB; 0.1 MB read from the "
                                  "checkpoint over the run (7% of the steps' time reading)")
    none = parse_report(STREAMED.replace("budget=67108864", "budget=0").replace("source=os", "source=none")
                        .replace("buffer=65536", "buffer=0"))
    line = describe_memory(none)
    assert line is not None and line.startswith("memory: budget none known, weights resident 1.0 MiB, streamed ")
    assert "buffer" not in line
