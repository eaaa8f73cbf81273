"""Anyone's llama2.c-style binary in the tiny686 guest, through `run`, the pytest plugin and `bisect`.

The binaries are fork-style builds of our own sources (llama2.c's flags only, chatter around the text) and small
programs that crash, print nothing or never end. Each run is checked from the outside, as a user sees it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.paths import project_root
from harness.perf.bisect import bisect
from tests.support.foreign_helpers import WRONG_ROPE, fork_binary, misbehaving_binary
from tests.unit.perf.bisect.test_runner import SLOW_ANCHOR, SLOW_CODE

pytestmark = pytest.mark.vm

CLI = [sys.executable, "-m", "harness.cli"]
README = project_root() / "README.md"
GIT_ID = ["-c", "user.name=Fork Test", "-c", "user.email=fork@example.invalid", "-c", "commit.gpgsign=false"]


def _run(args: list[str], artifacts: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "run", "--vm", "tiny686", "--artifacts", str(artifacts), *args],
                          capture_output=True, text=True, timeout=timeout)


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("llama98-harness: error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    return lines[0]


def test_fork_binary_detected_and_judged_text_level_at_t0(vm_image: tuple[str, Path], tmp_path: Path) -> None:
    result = _run(["--binary", str(fork_binary("tiny686")), "-n", "150"], tmp_path / "art")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stdout.startswith("Once upon a time")  # the text alone, without the fork's chatter
    assert "verdict (text-level): ok:" in result.stdout
    assert re.search(r"program tok/s \(its own 'achieved tok/s' line\): \d+\.\d\d", result.stdout)
    assert re.search(r"guest wall time of the run: \d+\.\d\d s", result.stdout)
    assert "command line style: llama2c" in result.stderr
    output = (tmp_path / "art" / "output.txt").read_bytes()
    assert output.startswith(b"llama2.c for Windows 98 (test fork)") and b"achieved tok/s:" in output


def test_fork_binary_ok_at_seeded_temperature_with_a_prompt(vm_image: tuple[str, Path], tmp_path: Path) -> None:
    result = _run(["--binary", str(fork_binary("tiny686")), "--cli", "llama2c", "-t", "0.8", "-p", "0.9",
                   "-s", "31337", "-n", "120", "-i", "The little bird"], tmp_path / "art")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stdout.startswith("The little bird") and "verdict (text-level): ok:" in result.stdout


def test_wrong_rope_base_fails_with_the_divergence_point(vm_image: tuple[str, Path], tmp_path: Path) -> None:
    result = _run(["--binary", str(fork_binary("tiny686", WRONG_ROPE)), "-n", "200"], tmp_path / "art")
    assert result.returncode == 1, result.stderr[-2000:]
    verdict = next(line for line in result.stdout.splitlines() if line.startswith("verdict (text-level): FAIL:"))
    assert re.search(r"diverges from the oracle's at byte \d+ \(at generated token \d+, position \d+\)", verdict)
    assert "oracle's top candidates:" in verdict and "got '" in verdict


@pytest.mark.parametrize("kind, message", [
    ("crash", "failed in the guest with exit code 139 (killed by signal 11: SIGSEGV, segmentation fault)"),
    ("silent", "the program exited 0 but printed nothing"),
    ("hang", "timed out after"),
])
def test_a_binary_that_crashes_is_silent_or_hangs_gets_one_line(vm_image: tuple[str, Path], tmp_path: Path,
                                                                 kind: str, message: str) -> None:
    binary = misbehaving_binary(kind, tmp_path)
    args = ["--binary", str(binary), "--cli", "llama2c", "-n", "20"]
    if kind == "hang":
        args += ["--timeout-scale", "0.05"]  # 120 s of start-up allowance * 0.05: a hang is noticed in seconds
    result = _run(args, tmp_path / "art")
    assert result.returncode == 1
    line = _one_error_line(result)
    assert message in line and f"artifacts: {tmp_path / 'art'}" in line
    if kind == "hang":
        assert "serial log:" in line and "screendump:" in line


def _readme_example() -> str:
    """The user's test file the README shows (the code block after the example marker), verbatim."""
    text = README.read_text(encoding="utf-8")
    marker = text.index("<!-- example: test_my_build.py -->")
    block = re.search(r"```python\n(.*?)```", text[marker:], re.S)
    assert block is not None, "the README lost its example test file"
    return block.group(1)


def test_readme_example_test_file_runs_against_a_fork(vm_image: tuple[str, Path], tmp_path: Path) -> None:
    """The README's example, outside this repository, with the plugin's fixtures: the docs cannot drift."""
    work = tmp_path / "my-project"
    work.mkdir()
    (work / "test_my_build.py").write_text(_readme_example(), encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "pytest", "test_my_build.py", "-q", "-s", "-p", "no:randomly",
                             "--vm", "tiny686", "--llama98-binary", str(fork_binary("tiny686")),
                             "--llama98-cli", "llama2c", "--vm-artifacts", str(tmp_path / "art")],
                            cwd=work, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert re.search(r"\b2 passed\b", result.stdout), result.stdout[-2000:]
    assert "tok/s" in result.stdout and "artifacts in" in result.stdout


# --- bisecting a fork with its own build -------------------------------------------------------------------

# tok/s is taken on the guest's -icount clock, so it does not move with the host's load: one pass over the
# weights before each token is a slowdown of about 1.5x, well over the 20% threshold.
SLOWDOWN_PASSES = 1
def _fork_sources() -> list[str]:
    """The port's sources as its makefiles list them (NAMES in sources.mk, with the portable qdot), so the fork
    builds whatever files the port grows."""
    names = re.search(r"^NAMES = (.*)$", (project_root() / "ports" / "llama98" / "sources.mk").read_text(), re.M)
    assert names is not None, "sources.mk lost its NAMES line"
    return [name if name != "$(QDOT_NAME)" else "qdot" for name in names.group(1).split()]
FORK_MAKEFILE = """# A fork's own build: `make run` leaves ./run.
OPT = -O2
run: $(wildcard src/*.c) $(wildcard src/*.h)
\tgcc -m32 -march=pentium2 -static -std=c89 $(OPT) -DLLAMA98_FORK_STYLE -DLLAMA98_FLOAT_LIBM -o run src/*.c -lm
"""


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *GIT_ID, "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def _fork_repository(path: Path) -> tuple[str, str]:
    """good, a docs commit, the culprit (passes over every weight before each token), another docs commit."""
    (path / "src").mkdir(parents=True)
    port = project_root() / "ports" / "llama98"
    for name in _fork_sources():
        shutil.copy2(port / f"{name}.c", path / "src")
    for header in port.glob("*.h"):
        shutil.copy2(header, path / "src")
    (path / "Makefile").write_text(FORK_MAKEFILE)
    (path / ".gitignore").write_text("run\n")
    _git(path, "init", "-q", "-b", "main")
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", "fork: llama2.c for the guest")
    good = _git(path, "rev-parse", "HEAD")
    (path / "README").write_text("my fork\n")
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", "docs")
    model = path / "src" / "forward.c"
    source = model.read_text()
    assert SLOW_ANCHOR in source
    model.write_text(source.replace(SLOW_ANCHOR, SLOW_CODE * SLOWDOWN_PASSES + SLOW_ANCHOR, 1))
    _git(path, "commit", "-q", "-am", "model: check the weights before every token (the slowdown)")
    culprit = _git(path, "rev-parse", "HEAD")
    (path / "README").write_text("my fork, faster soon\n")
    _git(path, "commit", "-q", "-am", "docs again")
    return good, culprit


def test_bisect_finds_the_slow_commit_of_a_fork_by_its_own_tok_s(vm_image: tuple[str, Path],
                                                                   tmp_path: Path) -> None:
    repo = tmp_path / "fork"
    good, culprit = _fork_repository(repo)
    head_before = _git(repo, "rev-parse", "HEAD")
    outcome = bisect(repo, good, "main", metric="tok_s", threshold=0.2, out_dir=tmp_path / "run",
                     vm="tiny686", plot=False, build_command="make run", binary="run", cli="llama2c")
    assert outcome.culprit == culprit
    assert outcome.culprit_measurement.value is not None and outcome.good.value is not None
    assert outcome.culprit_measurement.value < outcome.good.value / 1.2
    assert all(len(m.samples) == 1 for m in outcome.measurements)  # the guest clock decides in one run
    assert _git(repo, "rev-parse", "HEAD") == head_before and not (repo / "run").exists()
