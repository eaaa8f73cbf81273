"""Judge a foreign llama2.c-family binary by the text it printed: a text-level verdict.

Why this exists: our own port writes a run report with every token id (a token-level verdict,
harness/judge/token_check.py),
but the binaries people bring (llama2.c's `run`, Windows 98 forks built with Borland C++ or OpenWatcom, DOS-extender
ports) only print text, wrapped in whatever chatter each fork adds ("Prompt:", config dumps, allocation lines,
`achieved tok/s`). What they share is llama2.c's algorithm, so the oracle knows the exact bytes they must print.

How the text is found: the oracle's expected stdout (prompt echo included, as llama2.c prints it) is searched for in
the program's output; of every place where its first piece occurs, the one that agrees with it longest is where the
generated text starts (a chatter line that echoes the prompt agrees only for the prompt's length). From there the
oracle is replayed against the program's bytes token by token, with llama2.c's xorshift RNG for T > 0. Where they
part, the verdict names the byte, the token and position, both texts around it and the oracle's top candidates; at
T = 0 a departure to a candidate whose logit is within `tol` of the best is a near-tie: it is reported as one and the
replay follows the program's choice from there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.oracle.generate import Oracle, RunArgs
from harness.oracle.sampler import Sampler, softmax
from harness.oracle.tokenizer import BOS_ID

NEAR_TIE_TOL = 1e-3  # logit gap accepted as a tie at T = 0 (the same tolerance the token-level verify uses)
TOP_CANDIDATES = 5
CONTEXT_BYTES = 24
TOK_S_PATTERN = re.compile(rb"achieved tok/s:\s*([0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)")


@dataclass(frozen=True)
class Candidate:
    """One of the oracle's most likely next tokens at a position."""

    token: int
    piece: bytes
    logit: float
    probability: float

    def describe(self) -> str:
        shown = self.piece.decode("utf-8", "replace")
        return f"{self.token} {shown!r} (logit {self.logit:.4f}, p {self.probability:.3f})"


@dataclass
class TextVerdict:
    """The outcome of judging a program's printed text against the oracle."""

    ok: bool
    message: str
    level: str = "text-level"
    text: bytes = b""  # the generated text as found in the program's output (prompt echo included)
    oracle_text: bytes = b""
    divergence_byte: int | None = None  # offset into the text where the program and the oracle part
    divergence_token: int | None = None  # index of the generated token (0 = the first after BOS) that differs
    candidates: list[Candidate] = field(default_factory=list)
    near_ties: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return ("ok: " if self.ok else "FAIL: ") + self.message


def program_tok_s(output: bytes) -> float | None:
    """The figure of the program's own `achieved tok/s: X` line (llama2.c prints it on stderr), if any."""
    found = TOK_S_PATTERN.findall(output)
    return float(found[-1]) if found else None


def _common_prefix(left: bytes, right: bytes) -> int:
    limit = min(len(left), len(right))
    index = 0
    while index < limit and left[index] == right[index]:
        index += 1
    return index


def locate_text(output: bytes, expected: bytes) -> int | None:
    """Offset in `output` where the program's generated text starts, or None when none of it is there.

    The candidates are the occurrences of the expected text's first line fragment (up to 8 bytes); the winner is
    the one that agrees with the expected text longest, the earliest among equals."""
    probe = expected[: max(1, min(8, len(expected.split(b"\n", 1)[0]) or 1))]
    best, best_length = None, 0
    start = output.find(probe)
    while start != -1:
        length = _common_prefix(output[start:], expected)
        if length > best_length:
            best, best_length = start, length
        start = output.find(probe, start + 1)
    return best


def _show(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace").replace("\n", "\\n")


def _candidates(oracle: Oracle, logits: np.ndarray, prev: int, count: int = TOP_CANDIDATES) -> list[Candidate]:
    probabilities = softmax(logits.astype(np.float32))
    order = np.argsort(-logits, kind="stable")[:count]
    return [Candidate(int(t), oracle.tokenizer.decode(prev, int(t)), float(logits[t]), float(probabilities[t]))
            for t in order]


def _program_choice(oracle: Oracle, logits: np.ndarray, prev: int, rest: bytes) -> int | None:
    """The most likely token whose printed piece is what the program printed next (None if no token fits)."""
    for token in np.argsort(-logits, kind="stable"):
        piece = oracle.tokenizer.decode(prev, int(token))
        if piece and rest.startswith(piece) and int(token) != BOS_ID:
            return int(token)
    return None


def judge_text(oracle: Oracle, args: RunArgs, output: bytes, tol: float = NEAR_TIE_TOL) -> TextVerdict:
    """Replay llama2.c's generate loop against `output` (everything the program printed, chatter included)."""
    expected = oracle.generate(args).text
    start = locate_text(output, expected)
    if start is None:
        return TextVerdict(False, f"the output contains none of the expected text (it should start with "
                                  f"{_show(expected[:CONTEXT_BYTES])!r}); output begins "
                                  f"{_show(output[:CONTEXT_BYTES * 2])!r}", oracle_text=expected)
    observed = output[start:]
    prompt_ids = oracle.encode_prompt(args.prompt)
    sampler = Sampler.create(float(args.temperature), float(args.topp), args.seed)
    cache = oracle.transformer.new_cache(args.steps)
    text = bytearray()
    near_ties: list[str] = []
    token, pos = prompt_ids[0], 0
    while pos < args.steps:
        logits = oracle.transformer.step(token, pos, cache)
        forced = pos < len(prompt_ids) - 1
        chosen = prompt_ids[pos + 1] if forced else sampler.sample(logits)
        pos += 1
        if chosen == BOS_ID:
            break
        piece = oracle.tokenizer.decode(token, chosen)
        here = len(text)
        if observed[here: here + len(piece)] != piece:
            alternative = None if forced else _program_choice(oracle, logits, token, observed[here:])
            gap = float(logits[chosen] - logits[alternative]) if alternative is not None else None
            if (alternative is not None and gap is not None and float(args.temperature) == 0.0
                    and gap <= tol):
                near_ties.append(f"position {pos - 1}: the program chose {alternative} "
                                 f"{_show(oracle.tokenizer.decode(token, alternative))!r} where the oracle's argmax is "
                                 f"{chosen} {_show(piece)!r} (logit gap {gap:.2e} <= {tol:g})")
                chosen, piece = alternative, oracle.tokenizer.decode(token, alternative)
            else:
                at = here + _common_prefix(observed[here:], piece)
                where = "in the prompt echo" if forced else f"at generated token {pos - len(prompt_ids)}"
                return _diverged(oracle, logits, token, observed, bytes(text) + piece, at, pos - 1, where,
                                 None if forced else pos - len(prompt_ids), expected, near_ties, alternative,
                                 forced)
        text += piece
        token = chosen
    text += b"\n"
    if not observed.startswith(text):
        at = _common_prefix(observed, bytes(text))
        return TextVerdict(False, f"the program's text goes on where the oracle's ends, at byte {at}: got "
                                  f"{_show(observed[max(0, at - CONTEXT_BYTES): at + CONTEXT_BYTES])!r}, oracle "
                                  f"{_show(bytes(text)[max(0, at - CONTEXT_BYTES): at + CONTEXT_BYTES])!r}",
                           text=observed[:at], oracle_text=expected, divergence_byte=at, near_ties=near_ties)
    ties = f"; {len(near_ties)} near-tie(s) accepted: {'; '.join(near_ties)}" if near_ties else ""
    return TextVerdict(True, f"text-level: the program's {len(text)} bytes of text are exactly what llama2.c's "
                             f"algorithm prints for these arguments{ties}",
                       text=bytes(text), oracle_text=expected, near_ties=near_ties)


def _diverged(oracle: Oracle, logits: np.ndarray, prev: int, observed: bytes, oracle_so_far: bytes, at: int,
              position: int, where: str, token_index: int | None, expected: bytes, near_ties: list[str],
              chosen: int | None, forced: bool) -> TextVerdict:
    """A failing verdict at byte `at`; `chosen` is the token the program's bytes fit there, if any."""
    candidates = [] if forced else _candidates(oracle, logits, prev)
    got = observed[max(0, at - CONTEXT_BYTES): at + CONTEXT_BYTES]
    want = oracle_so_far[max(0, at - CONTEXT_BYTES): at + CONTEXT_BYTES]
    detail = ""
    if candidates:
        detail = "; oracle's top candidates: " + ", ".join(c.describe() for c in candidates)
        if chosen is not None:
            gap = candidates[0].logit - float(logits[chosen])
            piece = _show(oracle.tokenizer.decode(prev, chosen))
            detail += f"; the program's next bytes fit token {chosen} {piece!r} (logit gap {gap:.4f} to the best)"
    message = (f"the text diverges from the oracle's at byte {at} ({where}, position {position}): got "
               f"{_show(got)!r}, oracle {_show(want)!r}{detail}")
    return TextVerdict(False, message, text=observed[:at], oracle_text=expected, divergence_byte=at,
                       divergence_token=token_index, candidates=candidates, near_ties=near_ties)


def load_oracle(checkpoint: Path, tokenizer: Path) -> Oracle:
    """The oracle for a model and tokenizer pair."""
    return Oracle.load(checkpoint, tokenizer)
