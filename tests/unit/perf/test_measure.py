"""Measurements: callgrind instructions per token of the real tiny686 build, the icount tick-to-instruction
conversion, and (with --vm) that an icount guest run is repeatable and agrees with the host count."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.core.errors import UsageError
from harness.core.paths import project_root
from harness.formats.report import format_report, parse_report
from harness.perf.measure import (
    MeasureError,
    Workload,
    callgrind_instructions,
    environment,
    git_commit,
    guest_instructions,
    guest_ipt,
    host_ipt,
    report_ticks,
    run_in_guest,
    workload,
    workload_names,
)
from tests.support.port_helpers import fixture, fixture_dir, tiny686_bin  # noqa: F401


@pytest.fixture()
def fixtures_env(monkeypatch: pytest.MonkeyPatch) -> None:
    fixture("stories260K.bin")
    monkeypatch.setenv("LLAMA98_FIXTURE_DIR", str(fixture_dir()))


def _need_valgrind() -> None:
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind not installed (apt-get install valgrind)")


def test_host_ipt_of_the_tiny686_build_is_exact_and_plausible(tiny686_bin: Path, fixtures_env: None) -> None:  # noqa: F811
    _need_valgrind()
    load = workload("stories260K")
    first = host_ipt(tiny686_bin, load)
    second = host_ipt(tiny686_bin, load)
    # callgrind counts instructions, not time: two runs agree to a few instructions (the port prints its timer
    # readings, whose digits vary), so one measurement per commit is enough
    assert first.per_token == pytest.approx(second.per_token, rel=1e-4)
    assert (first.short_steps, first.long_steps) == (20, 40)
    assert first.per_token == (first.ir_long - first.ir_short) / 20
    # a 260K-parameter model: some 0.26 M multiply-adds per token, a few x87 instructions each
    assert 0.5e6 < first.per_token < 3e6


def test_longer_runs_cost_more_and_a_crash_is_a_measure_error(tiny686_bin: Path, fixtures_env: None,  # noqa: F811
                                                              tmp_path: Path) -> None:
    _need_valgrind()
    load = workload("260K")
    assert callgrind_instructions(tiny686_bin, load, 4) < callgrind_instructions(tiny686_bin, load, 8)
    truncated = tmp_path / "short.bin"
    truncated.write_bytes(load.model.read_bytes()[:5000])
    broken = Workload("260K", truncated, load.tokenizer, 20, 40)
    with pytest.raises(MeasureError, match=r"the port failed under callgrind \(-n \d+, exit 1\): llama98: error"):
        host_ipt(tiny686_bin, broken)


def test_run_that_stops_early_is_refused(tiny686_bin: Path, fixtures_env: None) -> None:  # noqa: F811
    _need_valgrind()
    load = workload("260K")
    # 260K's greedy story has fewer than 512 tokens before BOS: the count would not be per token any more
    with pytest.raises(MeasureError, match=r"stopped after \d+ of 512 tokens"):
        callgrind_instructions(tiny686_bin, load, 512)


def test_icount_ticks_convert_to_instructions(tmp_path: Path) -> None:
    # shift=1: 2 ns of guest time per instruction; 1000 ticks of a 1 MHz timer = 1 ms = 500,000 instructions
    assert guest_instructions(1000, 1_000_000, 1) == 500_000
    assert guest_instructions(1193180, 1193180, 0) == 1e9
    with pytest.raises(MeasureError, match="hz=0"):
        guest_instructions(10, 0, 1)
    model, tokenizer = tmp_path / "m.bin", tmp_path / "t.bin"
    model.write_bytes(b"\0" * 64)
    tokenizer.write_bytes(b"\0" * 16)
    text = format_report(temperature=0.0, topp=0.9, seed=1, steps=6, prompt=None, model_path=model,
                         model_fields={"dim": 8}, tokenizer_path=tokenizer, max_token_length=4, prompt_ids=[1],
                         token_ids=[5, 6, 7, 8, 9, 10], hz=1_000_000, ticks=[9999, 100, 200, 300, 400, 9999])
    report = parse_report(text)
    assert report_ticks(report) == 9999 * 2 + 1000
    # tokens 2..4 (0-based slice [2:5]): 200+300+400 ticks = 900 us = 450,000 instructions over 3 tokens
    assert guest_ipt(report, 1, 2, 5) == pytest.approx(150_000)
    with pytest.raises(MeasureError, match="fewer than the 9 needed"):
        guest_ipt(report, 1, 2, 9)


def test_workload_names_and_errors() -> None:
    assert workload_names("260K, 15M-shape,260K") == ["260K", "15M-shape"]
    assert workload_names("stories260K") == ["260K"]
    with pytest.raises(UsageError, match="unknown model 'nope'"):
        workload_names("260K,nope")
    with pytest.raises(UsageError, match="--models is empty"):
        workload_names(" , ")
    with pytest.raises(UsageError, match="1 <= short < long"):
        workload("260K", 8, 4)


def test_environment_names_compiler_cpu_and_commit() -> None:
    env = environment(profile="tiny686")
    assert str(env["compiler"]).startswith("gcc")
    assert env["host_cpu"] and env["profile"] == "tiny686" and "-march=pentium2" in str(env["cflags"])
    assert env["qemu"] is None or "QEMU" in str(env["qemu"])
    commit = git_commit(project_root())
    if commit is None:
        pytest.skip("not a git checkout")
    assert len(str(commit["sha"])) == 40 and isinstance(commit["dirty"], bool)
    assert git_commit(Path("/")) is None


@pytest.mark.vm
def test_icount_guest_runs_repeat_and_agree_with_callgrind(request: pytest.FixtureRequest, fixtures_env: None,
                                                           tiny686_bin: Path) -> None:  # noqa: F811
    """Two guest boots under -icount give the same instruction count per token (to within the guest kernel's
    timer interrupts, which land at different points of the run), and it matches callgrind's host count."""
    vm = request.config.getoption("--vm")
    if vm not in (None, "tiny686"):
        pytest.skip("compares with the tiny686 build; run with --vm tiny686")
    load = workload("260K")
    first = run_in_guest(tiny686_bin, load, vm=vm, icount_shift=1)[0]
    second = run_in_guest(tiny686_bin, load, vm=vm, icount_shift=1)[0]
    ticks = report_ticks(first.report), report_ticks(second.report)
    spread = abs(ticks[0] - ticks[1]) / max(ticks)
    print(f"\nicount shift=1, two boots: {ticks[0]} and {ticks[1]} ticks ({spread * 100:.3f}% apart)")
    assert spread < 0.005, ticks
    guest = first.guest_ipt(20, 40)
    assert guest == pytest.approx(second.guest_ipt(20, 40), rel=0.01)
    if shutil.which("valgrind"):
        host = host_ipt(tiny686_bin, load).per_token
        print(f"guest-ipt {guest / 1e6:.4f} M, host-ipt {host / 1e6:.4f} M instructions/token")
        assert guest == pytest.approx(host, rel=0.03)
