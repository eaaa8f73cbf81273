"""Compile tiny C programs and objects for tests that compare the harness with what a C compiler does."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

GCC_MISSING = "gcc is not installed; install it with `apt-get install gcc`"


def gcc() -> str:
    """The gcc executable; skips (with the package to install) when there is none."""
    path = shutil.which("gcc")
    if path is None:
        pytest.skip(GCC_MISSING)
    return path


def compile_c(source: str, out: Path, *flags: str, libs: tuple[str, ...] = (), link: bool = True) -> Path:
    """Write `source` beside `out` and compile it with gcc `flags` into `out` (an object file when not `link`),
    linking `libs` (e.g. "-lm") after the source; a compiler error fails the test with gcc's message. A 32-bit
    build that lacks its libraries skips."""
    c_file = out.with_suffix(".c")
    c_file.write_text(source)
    command = [gcc(), *flags, *([] if link else ["-c"]), str(c_file), "-o", str(out), *(libs if link else ())]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0 and "-m32" in flags and ("gnu/stubs-32.h" in result.stderr
                                                       or "cannot find" in result.stderr):
        pytest.skip(f"gcc -m32 cannot build here (install gcc-multilib): {result.stderr.strip()[:200]}")
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stderr}"
    return out
