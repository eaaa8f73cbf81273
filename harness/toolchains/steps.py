"""A logged, killable sequence of build steps, for toolchains the harness builds from source.

Why not core.proc.run: a toolchain build runs for minutes and prints megabytes, so its output goes to a log file
as it comes instead of into memory; every step runs in its own process group, so a timeout or Ctrl-C stops the
whole tree (builder -> pmake -> wmake -> gcc), not just the first child; and a failure is one line naming the
step, the line of the output that says why, and the log, because a reader of CI output needs exactly those three.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.core.errors import HarnessError

# Lines that usually say why a step failed, in the words gcc, ld, make, wmake, tar and xz use.
_REASON = re.compile(r"error|fatal|cannot|unexpected|not found|no such", re.IGNORECASE)
_KILL_GRACE_S = 5.0
_REASON_CHARS = 200


class BuildLog:
    """Runs steps with their output appended to one log file, under one deadline for the whole build.

    `error` is the exception class raised for a failed or late step; its message names the log, which the
    caller keeps when the build fails.
    """

    def __init__(self, path: Path, *, label: str, deadline: float, error: type[HarnessError]) -> None:
        self.path = path
        self.label = label
        self.deadline = deadline
        self.error = error
        self.started = time.monotonic()
        path.write_text(f"{label}: build log, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n", encoding="utf-8")

    def note(self, text: str) -> None:
        """A line of our own in the log (what is about to happen, what was decided)."""
        with self.path.open("a", encoding="utf-8") as log:
            log.write(f"[{time.monotonic() - self.started:7.1f} s] {text}\n")

    def attach(self, path: Path) -> None:
        """Copy a tool's own log (builder writes one per project directory) into ours, so one file tells all."""
        if not path.is_file():
            return
        with self.path.open("a", encoding="utf-8") as log:
            log.write(f"---- {path}\n")
            log.write(path.read_text(encoding="utf-8", errors="replace"))
            log.write(f"---- end of {path}\n")

    def fail(self, step: str, reason: str) -> HarnessError:
        """The one-line error for a step that failed for a reason found outside a program's output."""
        self.note(f"FAILED {step}: {reason}")
        return self.error(f"{self.label}: step '{step}' failed: {reason}; log: {self.path}")

    def run(self, step: str, command: Sequence[str | Path], *, cwd: Path, env: Mapping[str, str],
            attach: Path | None = None) -> None:
        """Run one step to completion with exactly `env`; raise `error` in one line if it fails or runs late.

        `attach` names a log the tool writes itself, copied into ours after the step whatever its outcome.
        """
        argv = [str(part) for part in command]
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise self._late(step)
        self.note(f"step {step}: $ {shlex.join(argv)}  (in {cwd})")
        offset = self.path.stat().st_size
        with self.path.open("ab") as log:
            try:
                process = subprocess.Popen(argv, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as error:
                raise self.fail(step, f"cannot start {argv[0]}: {error.strerror}") from None
            try:
                returncode = process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                _stop_group(process)
                raise self._late(step) from None
            except BaseException:  # Ctrl-C or SIGTERM: stop the whole tree before the caller removes its files
                _stop_group(process)
                raise
        if attach is not None:
            self.attach(attach)
        if returncode != 0:
            reason = self._reason(offset) or f"exit code {returncode}"
            raise self.fail(step, f"exit code {returncode}: {reason}")
        self.note(f"step {step}: ok")

    def _late(self, step: str) -> HarnessError:
        budget = self.deadline - self.started
        return self.fail(step, f"the build did not finish within its {budget:.0f} s budget")

    def _reason(self, offset: int) -> str | None:
        """The first line of the step's output that looks like a reason, else its last line."""
        with self.path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode("utf-8", errors="replace")
        lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("[")]
        if not lines:
            return None
        chosen = next((line for line in lines if _REASON.search(line)), lines[-1])
        return chosen[:_REASON_CHARS]


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the step's process group, SIGKILL it if it lingers, and reap the leader."""
    for sig, grace in ((signal.SIGTERM, _KILL_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    # Grandchildren in the group may outlive the leader by a moment; SIGKILL them too (they are ours).
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
