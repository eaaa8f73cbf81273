"""`llama98-harness bisect` for real: a throwaway git repository of the port with a known slow commit and a
commit that does not compile; the bisection must name exactly the slow commit, skip the broken one, stay within
log2(N)+2 measurements, and leave the repository exactly as it was (also when interrupted with Ctrl-C).

Measured with host-ipt (callgrind on the tiny686 build, ~1 s per commit), so it runs in every CI run.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.commands.bisect import parse_threshold
from harness.core.errors import UsageError
from harness.core.paths import project_root
from harness.perf.bisect import BisectError, bisect, max_steps, slower_by, tok_s_decision
from tests.support.port_helpers import fixture, fixture_dir

PORT = project_root() / "ports" / "llama98"
GIT_ID = ["-c", "user.name=Bisect Test", "-c", "user.email=bisect@example.invalid", "-c", "commit.gpgsign=false"]

# A real per-token slowdown: a pass over every weight before each forward step (C89, output unchanged).
SLOW_ANCHOR = "    embed(m, x, &w->token_embedding, token, dim);\n"
SLOW_CODE = """
    /* Guard against corrupted weights: their sum must be a number. */
    {
        int t;
        float total = 0.0f;
        for (t = 0; t < 7 * c->n_layers; t++) {
            const float *p = m->layer_tensors[t].f;
            const float *end = p + (size_t)m->layer_tensors[t].rows * (size_t)m->layer_tensors[t].cols;
            for (; p < end; p++) {
                total += *p;
            }
        }
        if (total != total) {
            return s->logits;
        }
    }
"""
BROKEN_LINE = "static int broken_on_purpose = ;\n"


# The CLI as a terminal runs it: Ctrl-C raises KeyboardInterrupt even if pytest was started with SIGINT ignored
# (as background jobs of a non-interactive shell are), which the child would otherwise inherit.
CLI_TAKING_SIGINT = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                     "from harness.cli import main; sys.exit(main(sys.argv[1:]))")


@dataclass
class PortRepo:
    """The throwaway repository and the commits a test expects git to find."""

    path: Path
    good: str
    bad: str
    slow: str
    broken: str
    commits: list[str]  # after good, oldest first

    @property
    def candidates(self) -> int:
        return len(self.commits)


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *GIT_ID, "-C", str(repo), *args], capture_output=True, text=True, timeout=60,
                            check=True)
    return result.stdout.strip()


def _commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def make_port_repo(root: Path, harmless: int = 18, slow_at: int = 12, broken_at: int = 11) -> PortRepo:
    """A repository whose first commit is the port as it is now, then `harmless` + 3 commits:
    harmless edits (README lines, comments), the slow commit after harmless edit `slow_at`, and a commit that does
    not compile (fixed by the next one) after harmless edit `broken_at`."""
    repo = root / "portrepo"
    port = repo / "ports" / "llama98"
    shutil.copytree(PORT, port)
    git(repo.parent, "init", "-q", "-b", "main", str(repo))
    good = _commit(repo, "import the llama98 port")
    commits: list[str] = []
    slow = broken = ""
    for i in range(1, harmless + 1):
        if i % 2:
            with (port / "README.md").open("a") as handle:
                handle.write(f"\nNote {i}: harmless documentation line.\n")
            commits.append(_commit(repo, f"docs: note {i}"))
        else:
            util = port / "util.c"
            util.write_text(util.read_text() + f"/* harmless comment {i} */\n")
            commits.append(_commit(repo, f"util: comment {i}"))
        if i == broken_at:
            sampler = port / "sampler.c"
            sampler.write_text(sampler.read_text() + BROKEN_LINE)
            broken = _commit(repo, "sampler: half-finished change that does not compile")
            commits.append(broken)
            sampler.write_text(sampler.read_text().replace(BROKEN_LINE, ""))
            commits.append(_commit(repo, "sampler: finish the change"))
        if i == slow_at:
            model = port / "forward.c"
            text = model.read_text()
            assert SLOW_ANCHOR in text, "forward.c changed: update SLOW_ANCHOR"
            model.write_text(text.replace(SLOW_ANCHOR, SLOW_ANCHOR + SLOW_CODE, 1))
            slow = _commit(repo, "model: check the weights before every step")
            commits.append(slow)
    return PortRepo(repo, good, commits[-1], slow, broken, commits)


def repo_snapshot(repo: Path) -> dict[str, str]:
    """What `bisect` must not change: HEAD, branch, status (with untracked files), stash, worktrees, refs, bisect."""
    return {
        "head": git(repo, "rev-parse", "HEAD"),
        "branch": git(repo, "symbolic-ref", "-q", "HEAD"),
        "status": git(repo, "status", "--porcelain", "--untracked-files=all", "--ignored"),
        "stash": git(repo, "stash", "list"),
        "worktrees": git(repo, "worktree", "list", "--porcelain"),
        "refs": git(repo, "for-each-ref"),
        "git_dir": " ".join(sorted(p.name for p in (repo / ".git").iterdir())),
    }


@pytest.fixture()
def port_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PortRepo:
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind not installed (apt-get install valgrind)")
    fixture("stories260K.bin")
    monkeypatch.setenv("LLAMA98_FIXTURE_DIR", str(fixture_dir()))
    monkeypatch.setenv("LLAMA98_CACHE", str(tmp_path / "cache"))  # every measurement is taken for real
    repo = make_port_repo(tmp_path)
    # a user's uncommitted work and an untracked file must survive untouched
    (repo.path / "ports" / "llama98" / "README.md").write_text("work in progress\n")
    (repo.path / "scratch.txt").write_text("untracked\n")
    return repo


def test_bisect_names_the_slow_commit_and_leaves_the_repo_untouched(port_repo: PortRepo, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    before = repo_snapshot(port_repo.path)
    outcome = bisect(port_repo.path, port_repo.good, "main", metric="host-ipt", threshold=0.05,
                     out_dir=tmp_path / "run")
    assert repo_snapshot(port_repo.path) == before

    assert outcome.culprit == port_repo.slow
    assert outcome.subject == "model: check the weights before every step"
    assert outcome.parent == port_repo.commits[port_repo.commits.index(port_repo.slow) - 1]
    # the slow commit really is >= 20% slower; its parent is as fast as good
    assert slower_by("host-ipt", outcome.parent_measurement.value, outcome.culprit_measurement.value) >= 0.20
    assert outcome.parent_measurement.value == pytest.approx(outcome.good.value, rel=1e-3)
    # the broken commit was visited and skipped, never measured
    broken = [r for r in outcome.measurements if r.sha == port_repo.broken]
    assert broken and all(r.verdict == "skip" and r.value is None for r in broken)
    assert "does not build" in (broken[0].error or "")
    # log2(N) + 2 measurements at most (the baseline included)
    budget = math.floor(math.log2(port_repo.candidates)) + 2
    assert len(outcome.measured) <= budget, [(r.sha[:7], r.verdict) for r in outcome.measurements]

    data = json.loads(outcome.json_path.read_text())
    assert data["culprit"]["sha"] == port_repo.slow and data["measurements_taken"] == len(outcome.measured)
    assert outcome.plot_path is not None and outcome.plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.vm
def test_bisect_with_guest_ipt_in_the_guest(request: pytest.FixtureRequest, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The same bisection measured inside the guest under QEMU -icount (guest instructions per token)."""
    fixture("stories260K.bin")
    monkeypatch.setenv("LLAMA98_FIXTURE_DIR", str(fixture_dir()))  # the cache (guest image) stays shared
    repo = make_port_repo(tmp_path)
    before = repo_snapshot(repo.path)
    outcome = bisect(repo.path, repo.good, "main", metric="guest-ipt", vm=request.config.getoption("--vm"),
                     out_dir=tmp_path / "run", use_cache=False)
    assert repo_snapshot(repo.path) == before
    assert outcome.culprit == repo.slow
    assert [r.verdict for r in outcome.measurements if r.sha == repo.broken] == ["skip"]
    assert slower_by("guest-ipt", outcome.parent_measurement.value, outcome.culprit_measurement.value) >= 0.20
    assert len(outcome.measured) <= math.floor(math.log2(repo.candidates)) + 2
    assert not any(r.cached for r in outcome.measured)


def test_bisect_cli_prints_culprit_table_and_uses_the_cache(port_repo: PortRepo, tmp_path: Path) -> None:
    """The command line end to end; a second run reads every measurement from the cache."""
    before = repo_snapshot(port_repo.path)
    command = [sys.executable, "-m", "harness.cli", "bisect", "--good", port_repo.good, "--bad", "main",
               "--threshold", "10%", "--repo", str(port_repo.path)]
    first = subprocess.run([*command, "--out", str(tmp_path / "one")], capture_output=True, text=True,
                           timeout=600, cwd=project_root(), check=False)
    assert first.returncode == 0, first.stderr
    assert repo_snapshot(port_repo.path) == before
    out = first.stdout
    assert f"culprit: {port_repo.slow} model: check the weights before every step" in out
    for label in ("at good", "at culprit's parent", "at culprit "):
        assert re.search(rf"host-ipt {label}.*M instr/token", out), out
    assert re.search(r"<== culprit", out) and f"skipped: {port_repo.broken[:7]}" in out
    assert re.search(r"commit 1 of at most \d+: measuring host-ipt of " + port_repo.good[:7], first.stderr)
    assert f"plot: {tmp_path / 'one' / 'bisect.png'}" in out

    second = subprocess.run([*command, "--out", str(tmp_path / "two")], capture_output=True, text=True,
                            timeout=600, cwd=project_root(), check=False)
    assert second.returncode == 0, second.stderr
    taken = re.search(r"measurements: (\d+) \((\d+) from cache\)", second.stdout)
    assert taken and taken.group(1) == taken.group(2), second.stdout
    assert f"culprit: {port_repo.slow}" in second.stdout


def test_ctrl_c_stops_everything_and_leaves_the_repo_untouched(port_repo: PortRepo, tmp_path: Path) -> None:
    before = repo_snapshot(port_repo.path)
    run_tmp = tmp_path / "tmp"
    run_tmp.mkdir()
    out_dir = tmp_path / "run"
    env = {**os.environ, "TMPDIR": str(run_tmp)}
    process = subprocess.Popen(
        [sys.executable, "-c", CLI_TAKING_SIGINT, "bisect", "--good", port_repo.good, "--bad", "main", "--repo",
         str(port_repo.path), "--out", str(out_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=project_root())
    seen = ""
    deadline = time.monotonic() + 300
    assert process.stderr is not None
    while "commit 3 of at most" not in seen:  # inside `git bisect run`, a step is measuring
        line = process.stderr.readline()
        assert line and time.monotonic() < deadline, f"bisect ended or stalled before step 3: {seen}"
        seen += line
    process.send_signal(signal.SIGINT)
    try:
        _, rest = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, seen + rest
    assert "interrupted" in rest
    assert repo_snapshot(port_repo.path) == before
    assert list(run_tmp.iterdir()) == [], "the temporary clone was left behind"
    leftovers = [pid for pid in _pids() if str(out_dir) in _cmdline(pid)]
    assert leftovers == [], f"processes of the bisection still running: {leftovers}"


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_bad_that_is_not_slower_is_reported(port_repo: PortRepo, tmp_path: Path) -> None:
    before = repo_snapshot(port_repo.path)
    before_slow = port_repo.commits[port_repo.commits.index(port_repo.slow) - 1]
    with pytest.raises(BisectError, match=r"is not slower than --good by more than 5% \(.*\): nothing to bisect"):
        bisect(port_repo.path, port_repo.good, before_slow, out_dir=tmp_path / "run", plot=False)
    assert repo_snapshot(port_repo.path) == before


def test_bad_input_is_one_line_usage_error(port_repo: PortRepo, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is not a commit"):
        bisect(port_repo.path, "no-such-rev", "main", out_dir=tmp_path / "a")
    with pytest.raises(UsageError, match="is not an ancestor"):
        bisect(port_repo.path, "main", port_repo.good, out_dir=tmp_path / "b")
    with pytest.raises(UsageError, match="not inside a git repository"):
        bisect(tmp_path, "a", "b", out_dir=tmp_path / "c")
    result = subprocess.run([sys.executable, "-m", "harness.cli", "bisect", "--good", "nope", "--bad", "main",
                             "--repo", str(port_repo.path)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"llama98-harness: error: --good 'nope' is not a commit in {port_repo.path}"]


def test_threshold_parsing_and_step_budget() -> None:
    assert parse_threshold("5%") == pytest.approx(0.05)
    assert parse_threshold("0.2") == pytest.approx(0.2)
    assert max_steps(20, 0) == 1 + 5 and max_steps(20, 1) == 7
    assert slower_by("tok_s", 10.0, 8.0) == pytest.approx(0.25)
    assert slower_by("host-ipt", 100.0, 125.0) == pytest.approx(0.25)


def test_tok_s_decision_waits_until_the_range_is_clear_of_the_threshold() -> None:
    good = [30.0, 32.0, 31.0]  # median 31; with 20%: the line is 31 / 1.2 = 25.83
    assert tok_s_decision(good, [18.0, 19.5, 18.7], 0.20) == "bad"
    assert tok_s_decision(good, [29.0, 33.0, 26.0], 0.20) == "good"
    assert tok_s_decision(good, [24.0, 27.0, 26.0], 0.20) is None  # straddles the line: sample again
