"""What a failing VM test leaves behind, and the promise that no QEMU outlives the test session.

Why: a failure in a guest is only debuggable with what the guest showed: the serial transcript's tail, a fresh
screendump and the artifact directory go into the test's report (and the JUnit XML properties) at once.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from typing import Any

import pytest

TRANSCRIPT_TAIL_LINES = 40


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """On a failing VM test: attach the serial transcript tail, a fresh screendump and the artifact dir."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed or "vm_session" not in getattr(item, "fixturenames", ()):
        return
    funcargs = getattr(item, "funcargs", {})
    session = funcargs.get("vm_session") or funcargs.get("guest")
    if session is None:
        return
    lines = [f"artifacts: {session.artifacts}"]
    if session.guest is not None:
        screendump = session.guest.machine.try_screendump(f"failed-{item.name}")
        if screendump:
            lines.append(f"screendump: {screendump}")
    transcript = session.artifacts.serial_transcript
    if transcript.exists():
        tail = transcript.read_text(encoding="utf-8", errors="replace").splitlines()[-TRANSCRIPT_TAIL_LINES:]
        lines += [f"serial transcript: {transcript} (last {len(tail)} lines)", *tail]
    report.sections.append(("llama98 guest", "\n".join(lines)))
    item.user_properties.append(("artifacts", str(session.artifacts)))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No QEMU we started may outlive the test session: kill any leftover and fail the run loudly."""
    if "harness.vm.processes" not in sys.modules:  # no QEMU was ever started in this process
        return
    from harness.vm.processes import kill_leftovers

    leftovers = kill_leftovers()
    if leftovers:
        print(f"\nllama98-harness: QEMU processes {sorted(leftovers)} were still running at the end of the test "
              f"session; they were killed, and the session fails", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
