"""A fork built with OpenWatcom by its own makefile, run in the tiny686 guest through `run --binary --build`.

The fork is a directory of the port's sources compiled the way the field's forks behave (LLAMA98_FORK_STYLE:
llama2.c's flags only, chatter around the text; ports/llama98/variants.h) by a wmake makefile of its own, for
i386 Linux: `wmake -f fork.mk` runs in OpenWatcom's environment (found from the command's first word, or named
with --toolchain openwatcom), leaves ./run, and the run gets a text-level verdict. Needs the OpenWatcom toolchain
(in CI the source archive is given, so nothing here skips there)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.paths import project_root
from harness.toolchains.openwatcom import ToolchainMissing, find_openwatcom
from tests.e2e.test_foreign_runs import _fork_sources
from tests.support.port_helpers import fixture, fixture_dir

pytestmark = pytest.mark.vm

CLI = [sys.executable, "-m", "harness.cli"]
# The fork's own build: wcc386 for each source (Pentium Pro/II code, register calls, P6 x87 like the nightly's
# flags), wlink for a static i386 Linux ELF named run.
FORK_MAKEFILE = """# fork.mk: my fork's OpenWatcom build for i386 Linux; `wmake -f fork.mk` leaves ./run.
CFLAGS = -zq -bt=linux -6r -fp6 -ox -s -dLLAMA98_FORK_STYLE -i=src
OBJS = {objects}

run: $(OBJS)
\twlink option quiet system linux name run file {{ $(OBJS) }}

.c: src
.c.obj:
\twcc386 $(CFLAGS) -fo=$@ $[@
"""


def openwatcom_or_skip() -> None:
    """The toolchain the fork's makefile needs; skips (with its one-line reason) only when there is none."""
    try:
        find_openwatcom()
    except ToolchainMissing as error:
        pytest.skip(str(error))


def watcom_fork(path: Path) -> Path:
    """A fork directory: src/ with the port's sources (portable C dot products) and fork.mk for wmake."""
    (path / "src").mkdir(parents=True)
    port = project_root() / "ports" / "llama98"
    names = _fork_sources()
    for name in names:
        shutil.copy2(port / f"{name}.c", path / "src")
    for header in port.glob("*.h"):
        shutil.copy2(header, path / "src")
    (path / "fork.mk").write_text(FORK_MAKEFILE.format(objects=" ".join(f"{name}.obj" for name in names)))
    return path


def _run(fork: Path, args: list[str], artifacts: Path) -> subprocess.CompletedProcess[str]:
    """`llama98-harness run` in the fork's directory, as its developer types it, on the real stories260K."""
    fixture("stories260K.bin")
    env = {**os.environ, "LLAMA98_FIXTURE_DIR": str(fixture_dir())}
    return subprocess.run([*CLI, "run", "--vm", "tiny686", "--artifacts", str(artifacts), *args], cwd=fork,
                          env=env, capture_output=True, text=True, timeout=600)


def test_a_fork_built_by_its_own_wmake_makefile_runs_and_is_judged_text_level(vm_image: tuple[str, Path],
                                                                                tmp_path: Path) -> None:
    openwatcom_or_skip()
    fork = watcom_fork(tmp_path / "fork")
    result = _run(fork, ["--binary", "run", "--build", "wmake -f fork.mk", "-n", "150"], tmp_path / "art")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "built run with 'wmake -f fork.mk' (openwatcom)" in result.stderr
    assert "command line style: llama2c" in result.stderr
    assert result.stdout.startswith("Once upon a time")  # the text alone, without the fork's chatter
    assert "verdict (text-level): ok:" in result.stdout
    binary = (fork / "run").read_bytes()
    assert binary[:4] == b"\x7fELF" and binary[4] == 1 and b"Open Watcom" in binary  # i386 ELF, Watcom's runtime
    output = (tmp_path / "art" / "output.txt").read_bytes()
    assert output.startswith(b"llama2.c for Windows 98 (test fork)") and b"achieved tok/s:" in output


def test_toolchain_openwatcom_for_a_build_script_with_a_prompt_and_sampling(vm_image: tuple[str, Path],
                                                                            tmp_path: Path) -> None:
    """A command that does not start with an OpenWatcom tool gets its environment when asked for by name."""
    openwatcom_or_skip()
    fork = watcom_fork(tmp_path / "fork")
    (fork / "build.sh").write_text("#!/bin/sh\nset -e\nwmake -h -f fork.mk\n")
    result = _run(fork, ["--binary", "run", "--build", "sh build.sh", "--toolchain", "openwatcom", "-t", "0.8",
                         "-p", "0.9", "-s", "7", "-n", "80", "-i", "The dog"], tmp_path / "art")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "built run with 'sh build.sh' (openwatcom)" in result.stderr
    assert result.stdout.startswith("The dog") and "verdict (text-level): ok:" in result.stdout
