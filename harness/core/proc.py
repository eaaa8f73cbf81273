"""The one way the harness runs an external program (qemu-img, make, mtools, git, valgrind, wine, dpkg-deb...).

Why one helper: every call needs the same three things, and scattered `subprocess.run` calls each forgot one of
them at some point: a timeout (a hung tool must not hang the harness), a pinned environment where the result
matters (tool_env: compilers, make, wine, qemu-img, mtools), and a failure that reads as one line naming the
tool and its last line of stderr instead of a traceback.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.core.errors import HarnessError

DEFAULT_TIMEOUT_S = 120.0
# What a tool started by the harness inherits from the user's environment: where programs are (PATH), where
# temporary files may go (TMPDIR) and the home directory some tools insist on (HOME). Nothing else: every other
# variable a user may have exported (CC, CFLAGS, MAKEFLAGS, OUT, CPATH, LANG, WINEARCH...) could change a result.
INHERITED_ENV = ("PATH", "TMPDIR", "HOME")


class ToolError(HarnessError):
    """An external program is missing, failed or did not finish in time."""


def last_line(text: str | bytes, default: str = "no output") -> str:
    """The last non-empty line of a program's output: where tools put the reason they failed."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else default


def require(tool: str, install_hint: str, error: type[HarnessError] = ToolError) -> str:
    """Absolute path of `tool` on PATH, or a one-line error saying how to install it."""
    found = shutil.which(tool)
    if found is None:
        raise error(f"{tool} not found on PATH: {install_hint}")
    return found


def tool_env(**extra: str) -> dict[str, str]:
    """The explicit environment every result-producing tool runs with: INHERITED_ENV from os.environ, the C
    locale, and `extra` (the tool's own settings, e.g. WINEPREFIX=...).

    Why not os.environ: make reads any variable as a default (OUT, QDOT, CC, CFLAGS, DEFINES, MAKEFLAGS), gcc
    reads CPATH and GCC_EXEC_PREFIX, mtools reads its configuration and the time zone, and a build cache keyed
    on the harness's own flags would then hand the result of one user's shell to every later run.
    """
    environment = {name: os.environ[name] for name in INHERITED_ENV if os.environ.get(name)}
    environment.setdefault("PATH", os.defpath)
    environment["LC_ALL"] = "C"
    environment.update(extra)
    return environment


def run(command: Sequence[str | Path], *, what: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
        env: Mapping[str, str] | None = None, extra_env: Mapping[str, str] | None = None,
        cwd: Path | None = None, check: bool = True, text: bool = True, input: str | bytes | None = None,
        error: type[HarnessError] = ToolError) -> subprocess.CompletedProcess[str]:
    """Run `command` to completion with captured output.

    `what` names the step in the error ("qemu-img create"); `extra_env` is added to the environment (or to `env`
    when given). With `check` a non-zero exit raises `error` with the last stderr line; a missing program or a
    timeout always raises. `text=False` returns bytes in stdout/stderr (typed loosely as the caller knows).
    """
    argv = [str(part) for part in command]
    label = what or shlex.join(argv[:2])
    environment = dict(env if env is not None else os.environ)
    if extra_env:
        environment.update(extra_env)
    try:
        # No input: stdin is /dev/null, so a tool that asks a question fails instead of waiting for a terminal.
        stdin = subprocess.DEVNULL if input is None else None
        result = subprocess.run(argv, cwd=cwd, env=environment, capture_output=True, text=text, input=input,
                                stdin=stdin, timeout=timeout, check=False)
    except FileNotFoundError:
        raise error(f"{label}: {argv[0]} not found on PATH") from None
    except subprocess.TimeoutExpired:
        raise error(f"{label}: `{shlex.join(argv)}` did not finish within {timeout:g} s") from None
    if check and result.returncode != 0:
        detail = last_line(result.stderr or result.stdout, f"exit code {result.returncode}")
        raise error(f"{label} failed (exit code {result.returncode}): {detail}")
    return result


def first_line(command: Sequence[str], timeout: float = 30.0) -> str | None:
    """First line a program prints (a version string), or None when it is missing or fails: for records that
    describe the environment, where an absent tool is a fact, not an error. Run with tool_env(), so the line
    is the one the harness's own tool calls see (same PATH, C locale)."""
    try:
        result = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, check=False,
                                env=tool_env(), stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0].strip() if result.returncode == 0 and lines else None
