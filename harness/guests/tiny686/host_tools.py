"""The host tools the guest image builder shells out to, and the one way it runs them.

The builder needs no root because it leans on ordinary Debian tools (apt, dpkg-deb, mtools, syslinux). Keeping
their list, the up-front "is it installed?" check and the subprocess wrapper in one place means every step of
the build fails the same way: a one-line GuestBuildError naming what was being done, never a traceback.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.proc import run

TOOL_TIMEOUT_S = 600
MBR_BIN = Path("/usr/lib/syslinux/mbr/mbr.bin")

# Host tool -> Debian package that provides it, for the "install it" error.
HOST_TOOLS: dict[str, str] = {
    "apt-get": "apt",
    "apt-cache": "apt",
    "dpkg-deb": "dpkg",
    "mformat": "mtools",
    "mcopy": "mtools",
    "syslinux": "syslinux",
}

Log = Callable[[str], None]


class GuestBuildError(HarnessError):
    """The guest image could not be built (missing host tool, package, or a failing build step)."""


def check_host_tools() -> None:
    """Fail early, in one line, naming the apt package to install for the first missing tool."""
    for tool, package in HOST_TOOLS.items():
        if shutil.which(tool) is None:
            raise GuestBuildError(f"'{tool}' not found: install it with `apt-get install {package}`")
    if not MBR_BIN.is_file():
        raise GuestBuildError(f"{MBR_BIN} not found: install it with `apt-get install syslinux-common`")


def run_tool(command: list[str], what: str, cwd: Path | None = None) -> str:
    """Run a host tool; on failure raise a one-line error with its last line of stderr.

    The environment is pinned (C locale, no mtools config or disk-geometry check) so that output parsing and
    mtools' behaviour do not depend on the user's settings.
    """
    return run(command, what=what, cwd=cwd, timeout=TOOL_TIMEOUT_S, error=GuestBuildError,
               extra_env={"MTOOLS_SKIP_CHECK": "1", "MTOOLSRC": "/dev/null", "LC_ALL": "C"}).stdout
