"""What a failing VM test leaves behind, and the promise that no QEMU outlives the test session.

Why: a failure in a guest is only debuggable with what the guest showed: the serial transcript's tail, a fresh
screendump and the artifact directory go into the test's report (and the JUnit XML properties) at once.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from harness.pytest_plugin.fixtures import plugin_state

TRANSCRIPT_TAIL_LINES = 40


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """On a failing VM test: attach the serial transcript tail, a fresh screendump and the artifact dir."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed or "vm_session" not in getattr(item, "fixturenames", ()):
        return
    from harness.core.artifacts import ArtifactDir

    funcargs = getattr(item, "funcargs", {})
    session = funcargs.get("vm_session") or funcargs.get("guest")
    if session is None:
        return
    # Each piece of evidence goes into the report section and, as a path, into the JUnit XML properties, so a CI
    # reading only the XML finds the screendump and the transcript too.
    lines = [f"artifacts: {session.artifacts}"]
    properties = [("artifacts", str(session.artifacts))]
    if session.guest is not None:
        screendump = session.guest.machine.try_screendump(f"failed-{item.name}")
        if screendump:
            lines.append(f"screendump: {screendump}")
            properties.append(("screendump", str(screendump)))
    transcript = session.artifacts.serial_transcript
    if transcript.exists():
        tail = _tail(transcript)
        lines += [f"serial transcript: {transcript} (last {len(tail)} lines)", *tail]
        properties.append(("serial_transcript", str(transcript)))
    for index, own in enumerate(plugin_state(item.config).dedicated_artifacts.get(item.nodeid, []), start=1):
        # a guest llama98_run started for a model that did not fit the worker's (stopped by now): its own evidence
        lines.append(f"artifacts of the guest started for this test's model: {own}")
        properties.append((f"model_guest_artifacts_{index}", str(own)))
        own_transcript = own / ArtifactDir.SERIAL_TRANSCRIPT
        if own_transcript.exists():
            tail = _tail(own_transcript)
            lines += [f"serial transcript of that guest: {own_transcript} (last {len(tail)} lines)", *tail]
            properties.append((f"model_guest_serial_transcript_{index}", str(own_transcript)))
    report.sections.append(("llama98 guest", "\n".join(lines)))
    item.user_properties.extend(properties)


def _tail(transcript: Path) -> list[str]:
    return transcript.read_text(encoding="utf-8", errors="replace").splitlines()[-TRANSCRIPT_TAIL_LINES:]


# The QEMU processes already running in this Python process when a test session starts: a session run inside
# another one (pytester's in-process runs) must not kill the outer session's guests at its end.
_RUNNING_AT_START = pytest.StashKey[frozenset[int]]()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Remember which QEMU processes this session did not start."""
    running: frozenset[int] = frozenset()
    if "harness.vm.processes" in sys.modules:
        from harness.vm.processes import live_qemu_pids

        running = frozenset(live_qemu_pids())
    session.config.stash[_RUNNING_AT_START] = running


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No QEMU this session started may outlive it: kill any leftover and fail the run loudly."""
    if "harness.vm.processes" not in sys.modules:  # no QEMU was ever started in this process
        return
    from harness.vm.processes import kill_leftovers

    leftovers = kill_leftovers(keep=session.config.stash.get(_RUNNING_AT_START, frozenset()))
    if leftovers:
        print(f"\nllama98-harness: QEMU processes {sorted(leftovers)} were still running at the end of the test "
              f"session; they were killed, and the session fails", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
