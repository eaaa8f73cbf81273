"""QmpLink: a synchronous, thread-safe facade over qemu.qmp's asyncio QMPClient.

Why: the client lives on its own event loop in a daemon thread, so the FTP server thread (active-mode forwards)
and the main thread (screendumps, savevm) can both issue commands without sharing a loop. Once closed, the loop
is gone: a later command is refused (a QemuError, like any failed command) before its coroutine is even made, so
nothing is left unawaited, and closing again does nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from qemu.qmp import QMPClient, QMPError

from harness.vm.processes import QemuError


class QmpLink:
    """One QMP connection to one QEMU."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"qmp-{name}", daemon=True)
        self._thread.start()
        self._client = QMPClient(name)
        self._lock = threading.Lock()  # a command is submitted entirely before close() or entirely after it
        self._closed = False

    def _submit(self, make: Callable[[], Coroutine[Any, Any, Any]],
                timeout: float) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(asyncio.wait_for(make(), timeout), self._loop)

    def _call(self, make: Callable[[], Coroutine[Any, Any, Any]], timeout: float) -> Any:
        """Run the coroutine `make` returns on the loop; ConnectionError (an OSError) once the link is closed."""
        with self._lock:
            if self._closed:
                raise ConnectionError("the QMP link is closed")
            future = self._submit(make, timeout)
        return future.result(timeout + 1.0)

    def connect(self, sock: socket.socket, timeout: float = 10.0) -> None:
        """Run the QMP greeting and capabilities negotiation on an already connected socket."""
        self._call(lambda: self._client.connect(sock), timeout)

    def execute(self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 15.0) -> Any:
        """Execute a QMP command and return its value; raises QemuError on failure or timeout."""
        try:
            return self._call(lambda: self._client.execute(command, arguments), timeout)
        except (QMPError, OSError, EOFError, TimeoutError) as error:
            raise QemuError(f"QMP command {command} failed: {type(error).__name__}: {error}") from None

    def close(self) -> None:
        """Disconnect (ignoring a peer that already went away) and stop the loop thread; a second call does
        nothing (error paths close again).

        Only errors are swallowed: Ctrl-C during close still reaches the caller, after the loop is stopped.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._submit(self._client.disconnect, 5.0).result(6.0)
        except Exception:  # noqa: BLE001 - QEMU may already be gone; closing must not fail on that
            pass
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5.0)
            if not self._thread.is_alive():
                self._loop.close()
