"""Judge one port run against the oracle: three independent checks, one verdict.

1. Transport: the text that reached the host must be exactly the decoding of the token ids the port reported.
   This catches what the serial path or a text-mode bug does to the bytes, independent of the model.
2. Model: teacher-forced verify of the reported ids (harness.judge.verify), which also checks the CRC32 and size
   of the model and tokenizer the guest read and the prompt it received.
3. Oracle text: the oracle's own generation for the same arguments. It must match unless verify accepted a
   near-tie (x87 vs SSE rounding), after which the two texts may legitimately diverge.

A Llama 3 run (BPE tokenizer file, version-3 checkpoint) goes through the same three checks on the Llama 3
oracle (harness/oracle/llama3.py): its text is the bytes of its ids up to a sampled stop id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.formats.report import Report
from harness.judge.verify import AnyOracle, Verdict, decode_ids, ends_run, load_oracle, verify
from harness.models.names import ModelChoice
from harness.oracle.generate import RunArgs
from harness.oracle.tokenizer import BOS_ID


@dataclass
class RunCheck:
    """The combined verdict of a run and its parts."""

    ok: bool
    message: str
    verdict: Verdict
    oracle_text: bytes
    text_matches_oracle: bool
    transport_ok: bool

    def __str__(self) -> str:
        return ("ok: " if self.ok else "FAIL: ") + self.message


def first_difference(left: bytes, right: bytes) -> int | None:
    """Index of the first differing byte, or None when equal."""
    for index, (a, b) in enumerate(zip(left, right)):
        if a != b:
            return index
    return None if len(left) == len(right) else min(len(left), len(right))


def text_of_report(oracle: AnyOracle, report: Report) -> bytes:
    """The bytes the port must have printed for the ids in its report (up to the id that ends the run, then the
    final newline)."""
    ids = report.token_ids
    forced = len(report.prompt_ids) - 1
    end = next((i for i, token in enumerate(ids) if ends_run(oracle, token, i, forced)), len(ids))
    first = report.prompt_ids[0] if report.prompt_ids else BOS_ID
    return decode_ids(oracle, ids[:end], first_prev=first) + b"\n"

def _around(data: bytes, index: int) -> str:
    return data[max(0, index - 20): index + 20].decode("utf-8", errors="replace")


def check_run(choice: ModelChoice, text: bytes, report: Report) -> RunCheck:
    """Check the guest's text and report; see the module docstring for the three checks."""
    oracle = load_oracle(choice.checkpoint, choice.tokenizer)
    verdict = verify(choice.checkpoint, choice.tokenizer, report, oracle=oracle)
    args = report.args
    oracle_run = oracle.generate(
        RunArgs(np.float32(args.temperature), np.float32(args.topp), args.seed, args.steps, args.prompt))
    oracle_text = oracle_run.text
    expected_from_ids = text_of_report(oracle, report)
    transport_at = first_difference(text, expected_from_ids)
    oracle_at = first_difference(text, oracle_text)
    if transport_at is not None:
        message = (f"the text that reached the host differs from the port's reported tokens at byte {transport_at}: "
                   f"got {_around(text, transport_at)!r}, tokens say {_around(expected_from_ids, transport_at)!r}")
        return RunCheck(False, message, verdict, oracle_text, oracle_at is None, False)
    if not verdict.ok:
        return RunCheck(False, verdict.message, verdict, oracle_text, oracle_at is None, True)
    if oracle_at is None:
        return RunCheck(True, f"{verdict.message}; text identical to the oracle's ({len(text)} bytes)", verdict,
                        oracle_text, True, True)
    if verdict.near_ties:
        return RunCheck(True, f"{verdict.message}; text diverges from the oracle's own generation at byte {oracle_at} "
                              f"after an accepted near-tie", verdict, oracle_text, False, True)
    return RunCheck(False, f"text differs from the oracle's at byte {oracle_at} although every token verified: "
                           f"got {_around(text, oracle_at)!r}, oracle {_around(oracle_text, oracle_at)!r}",
                    verdict, oracle_text, False, True)
