"""Models bigger than the guest's RAM, end to end in the tiny686 guest: the port streams the weights it cannot keep
(its -M memory budget, by default what the guest says is free), and the run is still checked token by token
against the oracle, prints the same text as a resident run, and stays within the guest's RAM."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.formats.parts import logical_size
from harness.judge.token_check import check_run
from harness.models.names import choose_model
from harness.run.session import PortArgs, PortRun, Session, SessionOptions

pytestmark = pytest.mark.vm
MIB = 1 << 20


def test_a_streamed_run_in_the_guest_is_checked_token_by_token(llama98_run) -> None:
    """The quick case: stories260K under a 0.5 MiB budget streams most of its weights for every token."""
    resident = llama98_run(model="stories260K", temperature=0.0, steps=60)
    streamed = llama98_run(model="stories260K", temperature=0.0, steps=60, budget_mb=0.5)
    assert resident.ok and streamed.ok, f"{resident.verdict} / {streamed.verdict}"
    assert streamed.text == resident.text
    memory = streamed.run.report.memory
    assert memory is not None and memory.source == "option" and memory.budget == MIB // 2
    assert memory.streamed > 0 and resident.run.report.memory.streamed == 0
    assert streamed.run.report.peak_bytes <= MIB // 2
    assert [token.read_bytes for token in streamed.run.report.tokens] == [memory.streamed] * 60


def _run_110m(artifacts: Path, memory_mb: int | None) -> tuple[PortRun, str]:
    """110M-shape in the tiny686 guest with `memory_mb` of RAM (None: the profile's 128), checked by the oracle."""
    choice = choose_model("110M-shape", None, allow_download=False)
    options = SessionOptions(artifacts=artifacts, inputs=(choice.checkpoint, choice.tokenizer), memory_mb=memory_mb)
    with Session(options) as session:
        injected = session.inject_model(choice)
        run = session.run_port(injected, PortArgs(temperature=0.0, steps=4))
        check = check_run(choice, run.text, run.report)
        assert check.ok, str(check)
        command_line = session.artifacts.command_line.read_text()
    return run, command_line


def test_110m_shape_streams_in_a_128mb_guest_and_matches_a_resident_run(vm_image: tuple[str, Path],
                                                                         tmp_path: Path) -> None:
    if vm_image[0] != "tiny686":
        pytest.skip("the 128 MB vs 1024 MB comparison uses the tiny686 guest's RAM sizes")
    streamed, small = _run_110m(tmp_path / "small", None)
    assert " -m 128 " in small
    memory = streamed.report.memory
    assert memory is not None and memory.source == "os"  # the port's default: what the guest says is free
    assert memory.budget < 128 * MIB and memory.streamed > 0
    assert logical_size(choose_model("110M-shape", None).checkpoint) > 128 * MIB
    assert streamed.report.peak_bytes < 128 * MIB
    assert all(token.read_bytes == memory.streamed for token in streamed.report.tokens)

    resident, large = _run_110m(tmp_path / "large", 1024)
    assert " -m 1024 " in large
    assert resident.report.memory is not None and resident.report.memory.streamed == 0
    assert resident.text == streamed.text
    assert resident.report.model.crc32 == streamed.report.model.crc32
