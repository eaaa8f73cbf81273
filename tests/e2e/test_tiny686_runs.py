"""End to end on the guest given with --vm (tiny686 in CI): boot, FTP injection, generation over the serial
console, and the oracle's verdict. Every test starts from the worker's clean guest state (plugin `guest`)."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from harness.formats.report import file_crc32

pytestmark = pytest.mark.vm

STORY_START = b"Once upon a time, there was a little girl named Lily. She loved to play outside in the park."


def test_stories260k_greedy_matches_the_oracle(llama98_run) -> None:
    outcome = llama98_run(model="stories260K", temperature=0.0, steps=200)
    assert outcome.check.ok, str(outcome.check)
    assert outcome.check.text_matches_oracle
    assert outcome.run.text.startswith(STORY_START) and len(outcome.run.text) == 465
    tok_s = outcome.run.report.tok_per_s()
    assert tok_s is not None and tok_s > 0
    size, crc = file_crc32(outcome.injected.choice.checkpoint)
    assert (outcome.run.report.model.bytes, outcome.run.report.model.crc32) == (size, crc)


def test_stories260k_sampled_with_seed_matches_the_oracle(llama98_run) -> None:
    outcome = llama98_run(model="stories260K", temperature=0.8, topp=0.9, seed=1234, steps=160)
    assert outcome.check.ok, str(outcome.check)
    assert outcome.run.report.args.seed == 1234
    assert outcome.check.text_matches_oracle
    assert outcome.run.report.tok_per_s() is not None


def test_non_ascii_prompt_survives_the_serial_path(llama98_run) -> None:
    prompt = "Émile vit un café ☕ et dit «bonjour»"
    outcome = llama98_run(model="stories260K", temperature=0.0, steps=60, prompt=prompt)
    assert outcome.run.report.args.prompt == prompt.encode("utf-8")  # what the port received, byte for byte
    assert outcome.check.transport_ok and outcome.check.ok, str(outcome.check)
    byte_tokens = [i for i in outcome.run.report.prompt_ids if 3 <= i < 259]
    assert byte_tokens, "the prompt should need byte-fallback tokens in the 512-token vocabulary"


def test_active_mode_ftp_injection_then_run(llama98_run, guest) -> None:
    outcome = llama98_run(model="stories260K", temperature=0.0, steps=40, ftp_mode="active")
    assert all(fetch.mode == "active" for fetch in outcome.injected.fetches)
    assert outcome.check.ok, str(outcome.check)
    assert "PORT 10,0,2,15," in Path(guest.artifacts.ftp_log).read_text(errors="replace")


def test_15m_shaped_model_runs_inside_128mb_guest(llama98_run) -> None:
    outcome = llama98_run(model="15M-shape", temperature=0.0, steps=5)
    assert outcome.injected.fetches[0].size == 60_816_028
    assert outcome.run.report.model.bytes == 60_816_028
    assert len(outcome.run.report.tokens) == 5
    assert outcome.check.ok, str(outcome.check)


def test_crc32_in_report_is_of_the_bytes_read(llama98_run) -> None:
    outcome = llama98_run(model="gqa-512", temperature=1.0, topp=0.0, seed=7, steps=30)
    data = outcome.injected.choice.checkpoint.read_bytes()
    assert outcome.run.report.model.crc32 == zlib.crc32(data)
    assert outcome.check.ok, str(outcome.check)
