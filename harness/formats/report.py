"""Parse (and write) the llama98 `-r` report: what the port loaded, which ids it produced, how long each took.

The format is ports/llama98/REPORT.md. Readers ignore unknown keys and unknown record kinds (fields can be added
without a version bump) but insist on the records every check needs; a malformed report is a ReportError
naming the line, never a KeyError. A missing `done` line is not a parse error: it is an incomplete run, which
verify reports as a failure with its own message.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

from harness.core.errors import HarnessError
from harness.formats.parts import logical_crc32

HEADER_PREFIX = b"llama98 report "
SUPPORTED_VERSION = 1


class ReportError(HarnessError):
    """The report cannot be parsed or lacks a record every check needs."""


@dataclass(frozen=True)
class ArgsRecord:
    temperature: float
    topp: float
    seed: int
    steps: int
    prompt: bytes | None  # None when prompt_hex is "-"


@dataclass(frozen=True)
class FileRecord:
    """A file the port read: its size and the CRC-32 of the bytes read, plus the other fields as text."""

    bytes: int
    crc32: int
    fields: dict[str, str]

    def int_field(self, key: str) -> int | None:
        value = self.fields.get(key)
        return int(value) if value is not None and _is_int(value) else None

    @property
    def parts(self) -> int | None:
        """`parts=N` of the model line: how many files the checkpoint was read from (harness/formats/parts.py);
        None when the port did not say (reports before issue 14)."""
        return self.int_field("parts")


MEMORY_SOURCES = ("option", "os", "none")


@dataclass(frozen=True)
class MemoryRecord:
    """The `memory` line: how the port shared its memory budget between resident and streamed weights.

    budget: bytes the port allowed itself; resident: weight bytes kept in memory; streamed: weight bytes read
    from the checkpoint on every token; buffer: bytes of the buffer streamed weights pass through; source: where
    the budget came from (`option` the command line, `os` the memory the OS reported, `none` no limit known).
    """

    budget: int
    resident: int
    streamed: int
    buffer: int
    source: str


@dataclass(frozen=True)
class TimerRecord:
    source: str
    hz: int


@dataclass(frozen=True)
class TokenRecord:
    pos: int
    id: int
    ticks: int
    read_bytes: int | None = None  # `read=`: checkpoint bytes read during this step (streamed weights)
    io_ticks: int | None = None  # `io=`: the ticks of this step spent reading them (the rest is arithmetic)


@dataclass(frozen=True)
class DoneRecord:
    tokens: int
    ticks: int
    hz: int
    status: str
    peak_bytes: int | None = None  # `peak=`: the most bytes the port had allocated at once
    read_bytes: int | None = None  # `read=`: checkpoint bytes read after loading, over the whole run


@dataclass
class Report:
    """One parsed run report."""

    version: int
    args: ArgsRecord
    model: FileRecord
    tokenizer: FileRecord
    timer: TimerRecord
    prompt_ids: list[int]
    tokens: list[TokenRecord] = field(default_factory=list)
    done: DoneRecord | None = None
    source: str = "report"
    memory: MemoryRecord | None = None  # None: the port printed no `memory` line

    @property
    def token_ids(self) -> list[int]:
        return [record.id for record in self.tokens]

    @property
    def peak_bytes(self) -> int | None:
        """The port's peak allocation (`done peak=`), None when not reported or the run is incomplete."""
        return self.done.peak_bytes if self.done else None

    @property
    def read_bytes(self) -> int | None:
        """Checkpoint bytes read after loading (`done read=`), None when not reported or the run is incomplete."""
        return self.done.read_bytes if self.done else None

    @property
    def complete(self) -> bool:
        return self.done is not None

    def tok_per_s(self) -> float | None:
        """llama2.c's figure from raw ticks: (tokens - 1) * hz / ticks of token lines 2..tokens."""
        if len(self.tokens) < 2:
            return None
        ticks = sum(record.ticks for record in self.tokens[1:])
        if ticks <= 0 or self.timer.hz <= 0:
            return None
        return (len(self.tokens) - 1) * self.timer.hz / ticks


def describe_memory(report: Report) -> str | None:
    """One line on how the port used memory (budget, resident and streamed weights, peak, bytes read), or None
    for a report without a `memory` line (a port before issue 14)."""
    memory = report.memory
    if memory is None:
        return None
    mib = 1024 * 1024
    budget = f"{memory.budget / mib:.1f} MiB ({memory.source})" if memory.source != "none" else "none known"
    line = (f"memory: budget {budget}, weights resident {memory.resident / mib:.1f} MiB, streamed "
            f"{memory.streamed / mib:.1f} MiB per token")
    if memory.buffer:
        line += f" through a {memory.buffer / 1024:.0f} KiB buffer"
    if report.peak_bytes is not None:
        line += f"; peak allocation {report.peak_bytes / mib:.1f} MiB"
    if report.read_bytes is not None:
        line += f"; {report.read_bytes / 1e6:.1f} MB read from the checkpoint over the run"
    io = [t.io_ticks for t in report.tokens if t.io_ticks is not None]
    ticks = sum(t.ticks for t in report.tokens)
    if io and ticks > 0:
        line += f" ({100.0 * sum(io) / ticks:.0f}% of the steps' time reading)"
    return line


def _is_int(value: str) -> bool:
    return value.lstrip("-").isdigit()


def _fields(line_no: int, words: list[str], source: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise ReportError(f"{source}: line {line_no}: expected key=value, got {word!r}")
        fields[key] = value
    return fields


class _Line:
    """One record's fields with typed accessors that fail with the line number."""

    def __init__(self, kind: str, line_no: int, fields: dict[str, str], source: str) -> None:
        self.kind, self.line_no, self.fields, self.source = kind, line_no, fields, source

    def _fail(self, message: str) -> ReportError:
        return ReportError(f"{self.source}: line {self.line_no} ({self.kind}): {message}")

    def text(self, key: str) -> str:
        if key not in self.fields:
            raise self._fail(f"missing {key}=")
        return self.fields[key]

    def integer(self, key: str, base: int = 10) -> int:
        value = self.text(key)
        try:
            return int(value, base)
        except ValueError:
            raise self._fail(f"{key}={value!r} is not a number") from None

    def number(self, key: str) -> float:
        value = self.text(key)
        try:
            return float(value)
        except ValueError:
            raise self._fail(f"{key}={value!r} is not a number") from None

    def hex_bytes(self, key: str) -> bytes | None:
        value = self.text(key)
        if value == "-":
            return None
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise self._fail(f"{key}={value!r} is not hex") from None

    def byte_count(self, key: str) -> int:
        value = self.integer(key)
        if value < 0:
            raise self._fail(f"{key}={value} is negative")
        return value

    def optional_byte_count(self, key: str) -> int | None:
        """A field older ports do not print: None when absent, an error when it is not a byte count."""
        return self.byte_count(key) if key in self.fields else None

    def memory_record(self) -> MemoryRecord:
        source = self.text("source")
        if source not in MEMORY_SOURCES:
            raise self._fail(f"source={source!r} is not one of {', '.join(MEMORY_SOURCES)}")
        return MemoryRecord(self.byte_count("budget"), self.byte_count("resident"), self.byte_count("streamed"),
                            self.byte_count("buffer"), source)

    def id_list(self, key: str) -> list[int]:
        value = self.text(key)
        try:
            return [int(item) for item in value.split(",")] if value else []
        except ValueError:
            raise self._fail(f"{key}={value!r} is not a comma-separated id list") from None

    def file_record(self) -> FileRecord:
        crc_text = self.text("crc32")
        if len(crc_text) != 8:
            raise self._fail(f"crc32={crc_text!r} is not 8 hex digits")
        if "parts" in self.fields and self.integer("parts") < 1:
            raise self._fail(f"parts={self.fields['parts']} is not a positive count")
        return FileRecord(self.integer("bytes"), self.integer("crc32", 16), dict(self.fields))


def parse_report(data: bytes | str, source: str = "report") -> Report:
    """Parse a report; `source` (a file name or "stdout") is used in error messages."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    lines = [line.rstrip("\r") for line in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ReportError(f"{source}: report is empty")
    header = lines[0].split()
    if len(header) != 3 or header[:2] != ["llama98", "report"]:
        raise ReportError(f"{source}: line 1 is {lines[0][:60]!r}, not 'llama98 report N'")
    if not _is_int(header[2]) or int(header[2]) != SUPPORTED_VERSION:
        raise ReportError(f"{source}: report version {header[2]} is not supported (expected {SUPPORTED_VERSION})")

    singles: dict[str, _Line] = {}
    tokens: list[TokenRecord] = []
    for line_no, line in enumerate(lines[1:], start=2):
        words = line.split()
        if not words:
            continue
        kind = words[0]
        record = _Line(kind, line_no, _fields(line_no, words[1:], source), source)
        if kind == "token":
            tokens.append(TokenRecord(record.integer("pos"), record.integer("id"), record.integer("ticks"),
                                      record.optional_byte_count("read"), record.optional_byte_count("io")))
        elif kind in ("args", "model", "tokenizer", "memory", "timer", "prompt", "done"):
            if kind in singles:
                raise ReportError(f"{source}: line {line_no}: second {kind} record")
            if "done" in singles:
                raise ReportError(f"{source}: line {line_no}: {kind} record after done")
            singles[kind] = record
        elif "done" in singles:
            raise ReportError(f"{source}: line {line_no}: {kind} record after done")
        # other kinds: ignored, for forward compatibility
    for required in ("args", "model", "tokenizer", "timer", "prompt"):
        if required not in singles:
            raise ReportError(f"{source}: report has no {required} record")

    a = singles["args"]
    args = ArgsRecord(a.number("temperature"), a.number("topp"), a.integer("seed"), a.integer("steps"),
                      a.hex_bytes("prompt_hex"))
    t = singles["timer"]
    timer = TimerRecord(t.text("source"), t.integer("hz"))
    p = singles["prompt"]
    prompt_ids = p.id_list("ids")
    if len(prompt_ids) != p.integer("tokens"):
        raise ReportError(f"{source}: line {p.line_no}: prompt tokens={p.integer('tokens')} but {len(prompt_ids)} ids")
    done = None
    if "done" in singles:
        d = singles["done"]
        done = DoneRecord(d.integer("tokens"), d.integer("ticks"), d.integer("hz"), d.text("status"),
                          d.optional_byte_count("peak"), d.optional_byte_count("read"))
    memory = singles["memory"].memory_record() if "memory" in singles else None
    return Report(SUPPORTED_VERSION, args, singles["model"].file_record(), singles["tokenizer"].file_record(),
                  timer, prompt_ids, tokens, done, source, memory)


def split_stdout(stdout: bytes, source: str = "stdout") -> tuple[bytes, Report]:
    """Split the output of `-r -` into the generated text (with its final newline) and the parsed report.

    The report starts at the last line beginning with "llama98 report "; everything before it is text.
    """
    index = stdout.rfind(b"\n" + HEADER_PREFIX)
    start = index + 1 if index >= 0 else (0 if stdout.startswith(HEADER_PREFIX) else -1)
    if start < 0:
        raise ReportError(f"{source}: no 'llama98 report' header in the program's output")
    return stdout[:start], parse_report(stdout[start:], source)


def read_report(path: str | Path) -> Report:
    """Read and parse a report file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ReportError(f"{path}: cannot read report: {error.strerror or error}") from None
    return parse_report(data, str(path))


def file_crc32(path: str | Path) -> tuple[int, int]:
    """(size, CRC-32) of a file, the way the port reports the bytes it read."""
    crc = 0
    size = 0
    with Path(path).open("rb") as handle:
        while chunk := handle.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    return size, crc


def format_report(
    *,
    temperature: float,
    topp: float,
    seed: int,
    steps: int,
    prompt: bytes | None,
    model_path: str | Path,
    model_fields: dict[str, int],
    tokenizer_path: str | Path,
    max_token_length: int,
    prompt_ids: list[int],
    token_ids: list[int],
    timer_source: str = "clock",
    hz: int = 1000000,
    ticks: list[int] | None = None,
    memory: MemoryRecord | None = None,
    token_reads: list[int] | None = None,
    token_io: list[int] | None = None,
    peak_bytes: int | None = None,
    read_bytes: int | None = None,
) -> str:
    """Write a report in the port's format (used by the oracle's own `-r` and to build test reports); the
    `memory` line and the `read=`/`io=`/`peak=` fields only when given (the `model` line's `parts=` is a model field).
    The model's `bytes`/`crc32` are those of the logical file (every part)."""
    model_size, model_crc = logical_crc32(Path(model_path))
    tok_size, tok_crc = file_crc32(tokenizer_path)
    ticks = ticks if ticks is not None else [0] * len(token_ids)
    prompt_hex = prompt.hex() if prompt else "-"
    model_text = " ".join(f"{key}={value}" for key, value in model_fields.items())
    lines = [
        f"llama98 report {SUPPORTED_VERSION}",
        f"args temperature={temperature:f} topp={topp:f} seed={seed} steps={steps} prompt_hex={prompt_hex}",
        f"model bytes={model_size} crc32={model_crc:08x} {model_text}",
        f"tokenizer bytes={tok_size} crc32={tok_crc:08x} max_token_length={max_token_length}",
    ]
    if memory is not None:
        lines.append(f"memory budget={memory.budget} resident={memory.resident} streamed={memory.streamed} "
                     f"buffer={memory.buffer} source={memory.source}")
    lines += [
        f"timer source={timer_source} hz={hz}",
        f"prompt tokens={len(prompt_ids)} ids={','.join(str(i) for i in prompt_ids)}",
    ]
    for pos, (tid, tick) in enumerate(zip(token_ids, ticks)):
        read = f" read={token_reads[pos]}" if token_reads is not None else ""
        io = f" io={token_io[pos]}" if token_io is not None else ""
        lines.append(f"token pos={pos} id={tid} ticks={tick}{read}{io}")
    done_extra = "".join(f" {key}={value}" for key, value in (("peak", peak_bytes), ("read", read_bytes))
                         if value is not None)
    lines.append(f"done tokens={len(token_ids)} ticks={sum(ticks)} hz={hz} status=ok{done_extra}")
    return "\n".join(lines) + "\n"
