"""`llama98-harness bisect-step`: the command `git bisect run` calls at each commit; exits 0 (good), 1 (bad) or 125
(skip).
"""


from __future__ import annotations

import signal
from pathlib import Path

from harness.core.errors import HarnessError
from harness.perf.bisect.git import git, subject_of
from harness.perf.bisect.measuring import measure_checkout
from harness.perf.bisect.output import _say, progress_line, result_line
from harness.perf.bisect.state import (
    EXIT_ABORT,
    EXIT_BAD,
    EXIT_GOOD,
    EXIT_SKIP,
    BisectState,
    append_log,
    read_log,
)

# --- the step command ----------------------------------------------------------------------------------------------

def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_step(state_path: Path) -> int:
    """One `git bisect run` step in the current directory (the temporary clone): 0 good, 1 bad, 125 skip.

    Any other failure exits 128 so `git bisect run` aborts instead of taking it as "bad".
    """
    # git may start us with SIGINT ignored (inherited); the bisection stops its steps with SIGINT, so take it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        state = BisectState.load(state_path)
        checkout = Path.cwd()
        log_path = Path(state.log_path)
        log = read_log(log_path)
        sha = git(checkout, "rev-parse", "HEAD")
        _say(progress_line(state, log, sha, subject_of(checkout, sha)))
        record = measure_checkout(state, checkout, "step")
        append_log(log_path, record)
        if state.metric == "tok_s":
            state.save(state_path)  # the --good samples grow as they are re-sampled
        _say(result_line(state, record))
        return {"good": EXIT_GOOD, "bad": EXIT_BAD}.get(record.verdict, EXIT_SKIP)
    except KeyboardInterrupt:
        _say("bisect-step: interrupted")
        return 130
    except HarnessError as error:
        _say(f"bisect-step: error: {error}")
        return EXIT_ABORT
    except Exception as error:  # noqa: BLE001 - anything else must abort git bisect run, never count as "bad"
        _say(f"bisect-step: internal error: {type(error).__name__}: {error}")
        return EXIT_ABORT


