"""Which pytest-xdist worker this process is: each worker gets its own guest, FTP ports, Wine prefix and
artifact directory, so parallel workers never share state."""

import os


def worker_id() -> str:
    """The pytest-xdist worker id (`gw0`, `gw1`, ...), or `main` outside xdist."""
    return os.environ.get("PYTEST_XDIST_WORKER") or "main"
