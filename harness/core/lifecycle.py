"""The start/stop context-manager protocol shared by everything the harness starts (QEMU, the FTP server, a
whole guest session): a start that fails half-way is stopped before the error propagates, and leaving the
`with` block always stops, also on Ctrl-C. `stop()` must be idempotent."""

from __future__ import annotations

from typing import Self


class StartStop:
    """Mixin: subclasses implement `start()` and an idempotent `stop()`."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
