"""Quantized models end to end on the guest (tiny686 in CI): Q8_0 and ternary files injected over FTP, run by the
x87 build, and verified by the oracle (teacher-forced, with the quantized bounds of harness/judge/verify.py)."""

from __future__ import annotations

import pytest

from harness.oracle.checkpoint import load_checkpoint

pytestmark = pytest.mark.vm


@pytest.mark.parametrize("model", ["stories260K:q8_0", "260K-shape:ternary"])
def test_quantized_model_greedy_verifies(model: str, llama98_run) -> None:  # type: ignore[no-untyped-def]
    outcome = llama98_run(model=model, temperature=0.0, steps=120, prompt="Once upon a time")
    assert outcome.check.ok, str(outcome.check)
    config = load_checkpoint(outcome.injected.choice.checkpoint).config
    assert config.weight_type == model.split(":")[1]
    assert len(outcome.run.report.tokens) > 0


def test_15m_shape_q8_0_runs_inside_128mb_guest(llama98_run) -> None:  # type: ignore[no-untyped-def]
    outcome = llama98_run(model="15M-shape:q8_0", temperature=0.0, steps=4)
    assert outcome.run.report.model.bytes < 60_816_028 // 3
    assert len(outcome.run.report.tokens) == 4
    assert outcome.check.ok, str(outcome.check)
