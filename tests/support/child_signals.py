"""Children that take Ctrl-C as a terminal delivers it.

A background job of a non-interactive shell (`nohup ... &`, `&` in a CI script) starts with SIGINT ignored, and a
child inherits that: its Python then installs no KeyboardInterrupt handler and a Ctrl-C test waits in vain. The
tests that send SIGINT start their children with it restored, so they test the harness, not how they were run.
"""

from __future__ import annotations

import signal


def take_sigint() -> None:
    """A `preexec_fn`: SIGINT back to its default in the child, so Python there raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
