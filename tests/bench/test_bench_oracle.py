"""Oracle speed: teacher-forced verify of 256 tokens on the 15M-shaped model must take under 3 s here."""

from __future__ import annotations

import time

import pytest

from harness.formats.report import parse_report
from harness.judge.verify import oracle_report_text, verify
from harness.models.downloads import FixtureError, resolve
from harness.models.modelgen import cached_checkpoint, cached_tokenizer
from harness.oracle.generate import Oracle, clamp_args

VERIFY_TARGET_S = 3.0


def tokenizer_32000():
    try:
        return resolve("tokenizer.bin", allow_download=False)
    except FixtureError:
        return cached_tokenizer(32000)


@pytest.mark.bench
def test_verify_256_tokens_15m_shape():
    model, tok = cached_checkpoint("15M-shape"), tokenizer_32000()
    oracle = Oracle.load(model, tok)
    start = time.perf_counter()
    result = oracle.generate(clamp_args(256, 0.9, 0.9, 1234, 256, b"Once upon a time"))
    generate_s = time.perf_counter() - start
    report = parse_report(oracle_report_text(oracle, result))
    assert len(report.tokens) == 256

    start = time.perf_counter()
    verdict = verify(model, tok, report)  # cold: loads checkpoint and tokenizer too
    cold_s = time.perf_counter() - start
    start = time.perf_counter()
    warm = verify(model, tok, report, oracle=oracle)
    warm_s = time.perf_counter() - start
    assert verdict.ok and warm.ok, str(verdict)
    print(
        f"\noracle 15M-shape: verify 256 tokens {cold_s:.2f} s (incl. loading), {warm_s:.2f} s (loaded); "
        f"generate 256 tokens {generate_s:.2f} s = {256 / generate_s:.1f} tok/s; tokenizer {tok.name}"
    )
    assert cold_s < VERIFY_TARGET_S
