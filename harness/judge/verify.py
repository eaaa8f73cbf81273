"""Teacher-forced verification of a port's run report against the oracle.

Instead of regenerating text (one forward pass per token, and a single early near-tie would make every later
token differ), verify feeds the port's own token ids through one batched causal forward pass and judges each
position on its own:
- forced (prompt) positions must carry the prompt's next id;
- at T=0 the port's id must be the argmax, or have a logit within `tol` of the best (x87 and SSE round the
  last bits differently, so exact near-ties may flip);
- at T>0 the RNG is replayed from the reported seed (one coin per sampled step) and the oracle's own choice
  recomputed. A different id is still accepted when the coin lies within a small distance of the cdf
  interval of the port's id, i.e. on the boundary between the two tokens: a logit error of d moves every
  probability by a factor of about exp(d / T), so cdf boundaries move by up to about tol / T.
Before any of that the report must describe the same files (sizes, CRC-32, header fields), the same prompt
encoding, and a finished run (`done` line). The first problem found is the Verdict.

A run with a BPE tokenizer file (the Llama 3 family, version-3 checkpoints) is judged the same way on
harness/oracle/llama3.py: ids are the checkpoint's own, the prompt is the tokenizer's BOS then the BPE encoding,
and a sampled EOS or stop id (not id 1) is the one that ends the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.formats.checkpoint import ModelConfig
from harness.formats.parts import logical_crc32
from harness.formats.report import FileRecord, Report, file_crc32, format_report, read_report
from harness.oracle.generate import Generation, Oracle
from harness.oracle.llama3 import Llama3Oracle, is_bpe_tokenizer
from harness.oracle.rng import XorShiftRng
from harness.oracle.sampler import (
    apply_temperature,
    argmax,
    top_p_choice,
    top_p_full_order,
    uses_top_p,
)

DEFAULT_TOL = 1e-3
MAX_CDF_TOL = 0.01
# Quantized weights (Q8_0, ternary): the oracle equals a native (SSE) build bit for bit, but an x87 build (the
# guest, Win32) keeps excess precision, and one activation landing on the other side of an int8 rounding moves
# logits by about one quantization step (~0.03) -- so the x87 builds are judged with these wider bounds.
QUANT_TOL = 0.25
QUANT_MAX_CDF_TOL = 0.1
CONTEXT_BYTES = 60

AnyOracle = Oracle | Llama3Oracle


def load_oracle(checkpoint: str | Path, tokenizer: str | Path) -> AnyOracle:
    """The oracle for a checkpoint and tokenizer pair: Llama 3 rules for a BPE tokenizer file, llama2.c's else."""
    if is_bpe_tokenizer(tokenizer):
        return Llama3Oracle.load(checkpoint, tokenizer)
    return Oracle.load(checkpoint, tokenizer)


def piece_bytes(oracle: AnyOracle, token: int) -> bytes:
    """What the port prints for `token` on its own."""
    if isinstance(oracle, Llama3Oracle):
        return oracle.tokenizer.decode([token]) if 0 <= token < len(oracle.tokenizer.tokens) else b""
    return oracle.tokenizer.piece(token)


def decode_ids(oracle: AnyOracle, ids: list[int], first_prev: int) -> bytes:
    """The bytes the port prints for `ids` (printed tokens only: no stop id)."""
    if isinstance(oracle, Llama3Oracle):
        return b"".join(piece_bytes(oracle, i) for i in ids)
    return oracle.tokenizer.decode_sequence(ids, first_prev=first_prev)


def ends_run(oracle: AnyOracle, token: int, position: int, forced: int) -> bool:
    """True when the id chosen at `position` ends the run, by the oracle's own rules (the ones its generate loop
    stops by): a BOS (llama2.c), or a sampled stop id (Llama 3); `forced` prompt positions come first."""
    return oracle.rules.is_stop(token, position >= forced)


def max_token_length(oracle: AnyOracle) -> int:
    if isinstance(oracle, Llama3Oracle):
        return max(len(t) for t in oracle.tokenizer.tokens)
    return oracle.tokenizer.max_token_length


@dataclass
class Verdict:
    """The outcome of verify: ok, or the first failing position with both tokens and the text around it."""

    ok: bool
    message: str
    position: int | None = None
    expected_id: int | None = None
    actual_id: int | None = None
    expected_piece: str | None = None
    actual_piece: str | None = None
    expected_logit: float | None = None
    actual_logit: float | None = None
    gap: float | None = None
    context_text: str = ""
    checked: int = 0
    near_ties: int = 0

    def __str__(self) -> str:
        return ("ok: " if self.ok else "FAIL: ") + self.message


def _show(data: bytes) -> str:
    """Bytes as one readable line: UTF-8 where possible, escapes for newlines and undecodable bytes."""
    text = data.decode("utf-8", errors="backslashreplace")
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def _fail(message: str, **details: Any) -> Verdict:
    return Verdict(False, message, **details)


def _check_file(kind: str, record: FileRecord, path: Path) -> Verdict | None:
    """The port's `bytes`/`crc32` against the file; a checkpoint is its logical file (harness/formats/parts.py)."""
    size, crc = logical_crc32(path) if kind == "model" else file_crc32(path)
    if record.bytes != size or record.crc32 != crc:
        return _fail(
            f"{kind} mismatch: the port read {record.bytes} bytes with crc32 {record.crc32:08x}, "
            f"but {path} has {size} bytes with crc32 {crc:08x}"
        )
    return None


def model_fields(c: ModelConfig) -> dict[str, int]:
    """The header fields a port's `model` record states, as the checkpoint has them."""
    return {
        "dim": c.dim, "hidden": c.hidden_dim, "layers": c.n_layers, "heads": c.n_heads,
        "kv_heads": c.n_kv_heads, "vocab": c.vocab_size, "seq_len": c.seq_len, "shared": int(c.shared_classifier),
    }


def oracle_report_text(oracle: Oracle, result: Generation, ticks: list[int] | None = None) -> str:
    """A llama98 `-r` report of an oracle run, as the port would write it: the oracle's `-r` output, and a report
    verify must accept (tests, comparisons). It lives here, not in the oracle, because the oracle only computes;
    it is not harness/formats/report.py's format_report itself because it needs the oracle's own types."""
    return format_report(
        temperature=float(result.args.temperature), topp=float(result.args.topp), seed=result.args.seed,
        steps=result.args.steps, prompt=result.args.prompt, model_path=oracle.checkpoint.path,
        model_fields=model_fields(oracle.checkpoint.config), tokenizer_path=oracle.tokenizer.path,
        max_token_length=oracle.tokenizer.max_token_length, prompt_ids=result.prompt_ids,
        token_ids=result.token_ids, ticks=ticks,
    )


def _check_header(report: Report, oracle: AnyOracle) -> Verdict | None:
    for key, value in model_fields(oracle.checkpoint.config).items():
        reported = report.model.int_field(key)
        if reported is not None and reported != value:
            return _fail(f"model header mismatch: the port reports {key}={reported}, the checkpoint has {value}")
    mtl = report.tokenizer.int_field("max_token_length")
    if mtl is not None and mtl != max_token_length(oracle):
        return _fail(
            f"tokenizer mismatch: the port reports max_token_length={mtl}, "
            f"the file has {max_token_length(oracle)}"
        )
    bpe = report.tokenizer.fields.get("format") == "bpe"
    if bpe != isinstance(oracle, Llama3Oracle):
        return _fail(f"tokenizer mismatch: the port read it as {'a BPE' if bpe else 'a llama2.c'} tokenizer file, "
                     f"the file is {'a BPE' if not bpe else 'a llama2.c'} one")
    return None


def _check_run_shape(report: Report, oracle: AnyOracle) -> Verdict | None:
    if report.done is None:
        return _fail(f"report has no done line: the run is incomplete after {len(report.tokens)} token records")
    if report.done.status != "ok":
        return _fail(f"the port ended with status={report.done.status}")
    if report.done.tokens != len(report.tokens):
        return _fail(f"done says tokens={report.done.tokens} but the report has {len(report.tokens)} token records")
    steps = report.args.steps
    seq_len = oracle.checkpoint.config.seq_len
    if not 0 < steps <= seq_len:
        return _fail(f"args steps={steps} is not what llama2.c uses (it clamps to 1..seq_len={seq_len})")
    if len(report.tokens) > steps:
        return _fail(f"the report has {len(report.tokens)} token records for steps={steps}")
    vocab = oracle.checkpoint.config.vocab_size
    forced = len(report.prompt_ids) - 1
    stop_name = "a stop id" if isinstance(oracle, Llama3Oracle) else "BOS (id 1)"
    for index, record in enumerate(report.tokens):
        if record.pos != index:
            return _fail(f"token record {index + 1} has pos={record.pos}, expected {index}", position=index)
        if not 0 <= record.id < vocab:
            return _fail(f"position {index}: id {record.id} is outside the vocabulary (0..{vocab - 1})",
                         position=index, actual_id=record.id)
        if ends_run(oracle, record.id, index, forced) and index != len(report.tokens) - 1:
            return _fail(f"position {index}: {stop_name} should have ended the run, but it continued",
                         position=index, actual_id=record.id)
    last = len(report.tokens) - 1
    if len(report.tokens) < steps and (not report.tokens or not ends_run(oracle, report.tokens[-1].id, last, forced)):
        return _fail(f"the run stopped after {len(report.tokens)} of {steps} steps without producing {stop_name}")
    return None


class _Judge:
    """Checks the token positions in order, keeping the RNG in step with the port."""

    def __init__(self, oracle: AnyOracle, report: Report, tol: float, max_cdf_tol: float = MAX_CDF_TOL) -> None:
        self.oracle, self.report, self.tol = oracle, report, tol
        self.temperature = np.float32(report.args.temperature)
        self.topp = np.float32(report.args.topp)
        self.rng = XorShiftRng(report.args.seed)
        self.cdf_tol = min(tol / float(self.temperature), max_cdf_tol) if self.temperature > 0 else 0.0
        self.ids = report.token_ids
        self.inputs = [report.prompt_ids[0]] + self.ids[:-1]
        self.near_ties = 0

    def piece(self, token: int) -> str:
        return repr(_show(piece_bytes(self.oracle, token)))

    def context(self, position: int) -> str:
        text = decode_ids(self.oracle, self.inputs[1 : position + 1], first_prev=self.inputs[0])
        return _show(text[-CONTEXT_BYTES:])

    def mismatch(self, position: int, expected: int, logits: np.ndarray | None, why: str) -> Verdict:
        actual = self.ids[position]
        exp_logit = float(logits[expected]) if logits is not None else None
        act_logit = float(logits[actual]) if logits is not None else None
        gap = exp_logit - act_logit if exp_logit is not None and act_logit is not None else None
        context = self.context(position)
        logit_text = f" (logit {act_logit:.6f} vs {exp_logit:.6f}, gap {gap:.6f})" if gap is not None else ""
        message = (
            f"position {position}: the port chose {actual} {self.piece(actual)}, the oracle expects {expected} "
            f"{self.piece(expected)}{logit_text}; {why}; text so far: \"{context}\""
        )
        return Verdict(False, message, position, expected, actual, self.piece(expected), self.piece(actual),
                       exp_logit, act_logit, gap, context, position, self.near_ties)

    def check_sampled(self, position: int, logits: np.ndarray) -> Verdict | None:
        actual = self.ids[position]
        if self.temperature == 0:
            best = argmax(logits)
            if actual == best:
                return None
            if logits[actual] >= logits[best] - np.float32(self.tol):
                self.near_ties += 1
                return None
            return self.mismatch(position, best, logits, f"T=0 and the logit gap exceeds tol {self.tol}")
        coin = self.rng.next_f32()
        probabilities = apply_temperature(logits, self.temperature)
        if not uses_top_p(self.topp):
            cdf = np.add.accumulate(probabilities, dtype=np.float32)
            hits = np.flatnonzero(coin < cdf)
            expected = int(hits[0]) if hits.size else len(cdf) - 1
            if actual == expected:
                return None
            low = float(cdf[actual - 1]) if actual > 0 else 0.0
            high = float(cdf[actual])
            point, scale = float(coin), 1.0
        else:
            choice = top_p_choice(probabilities, self.topp, coin)
            expected = choice.token
            if actual == expected:
                return None
            order, cdf = choice.order, choice.cdf
            ranks = np.flatnonzero(order == actual)
            if not ranks.size:  # beyond the sorted head: look at the full candidate order
                order, cdf = top_p_full_order(probabilities, self.topp)
                ranks = np.flatnonzero(order == actual)
            if not ranks.size:
                return self.mismatch(position, expected, logits, "the port's token is below the top-p cutoff")
            rank = int(ranks[0])
            low = float(cdf[rank - 1]) if rank > 0 else 0.0
            high = float(cdf[rank])
            if rank > choice.last and low > float(self.topp) + self.cdf_tol:
                return self.mismatch(position, expected, logits, "the port's token is outside the top-p nucleus")
            point, scale = float(choice.scaled_coin), float(choice.cdf[choice.last])
        margin = self.cdf_tol * scale
        if low - margin <= point < high + margin:
            self.near_ties += 1
            return None
        return self.mismatch(
            position, expected, logits,
            f"coin {float(coin):.7f} (at {point:.7f}) is not within {margin:.1e} of the port's cdf interval "
            f"[{low:.7f}, {high:.7f})",
        )


def verify(
    checkpoint: str | Path,
    tokenizer: str | Path,
    report: Report | str | Path,
    tol: float = DEFAULT_TOL,
    oracle: AnyOracle | None = None,
) -> Verdict:
    """Check a port's run report against the checkpoint and tokenizer it should have used."""
    checkpoint, tokenizer = Path(checkpoint), Path(tokenizer)
    if not isinstance(report, Report):
        report = read_report(report)
    oracle = oracle or load_oracle(checkpoint, tokenizer)
    for problem in (
        _check_file("model", report.model, checkpoint),
        _check_file("tokenizer", report.tokenizer, tokenizer),
        _check_header(report, oracle),
        _check_run_shape(report, oracle),
    ):
        if problem:
            return problem
    expected_prompt = oracle.encode_prompt(report.args.prompt)
    if report.prompt_ids != expected_prompt:
        shown = _show(report.args.prompt or b"")
        return _fail(
            f"prompt mismatch: the port encoded \"{shown}\" as {_ids(report.prompt_ids)}, "
            f"the oracle as {_ids(expected_prompt)}"
        )
    max_cdf_tol = MAX_CDF_TOL
    if oracle.checkpoint.config.weight_type != "fp32" and tol == DEFAULT_TOL:
        tol, max_cdf_tol = QUANT_TOL, QUANT_MAX_CDF_TOL
    judge = _Judge(oracle, report, tol, max_cdf_tol)
    if not judge.ids:
        return Verdict(True, "0 tokens to verify (steps ended immediately)")
    forced = len(expected_prompt) - 1
    for position in range(min(forced, len(judge.ids))):
        if judge.ids[position] != expected_prompt[position + 1]:
            return judge.mismatch(position, expected_prompt[position + 1], None, "this is a forced prompt position")
    logits = oracle.transformer.logits_for_sequence(judge.inputs)
    for position in range(forced, len(judge.ids)):
        problem = judge.check_sampled(position, logits[position])
        if problem:
            return problem
    sampled = max(len(judge.ids) - forced, 0)
    mode = "argmax" if judge.temperature == 0 else f"T={float(judge.temperature):g} seed={report.args.seed}"
    return Verdict(
        True,
        f"{len(judge.ids)} tokens match the oracle ({min(forced, len(judge.ids))} forced, {sampled} sampled, {mode}, "
        f"{judge.near_ties} accepted within tolerance) on {checkpoint.name}",
        checked=len(judge.ids),
        near_ties=judge.near_ties,
    )


def _ids(ids: list[int], limit: int = 12) -> str:
    shown = ",".join(str(i) for i in ids[:limit])
    return f"[{shown}{',...' if len(ids) > limit else ''}] ({len(ids)} ids)"
