"""Bisecting OpenWatcom builds in the tiny686 guest: our port's watcom-tiny686 build by guest instructions per
token (`bisect --toolchain openwatcom --metric guest-ipt`), and a fork built by its own wmake makefile by its own
tok/s on the guest's -icount clock (`bisect --build 'wmake -f fork.mk'`). Both must name the slow commit and leave
the repository as it was. Needs the OpenWatcom toolchain (given in CI, so nothing here skips there)."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest

from harness.perf.bisect import bisect, slower_by
from tests.e2e.test_foreign_watcom import openwatcom_or_skip, watcom_fork
from tests.support.port_helpers import fixture, fixture_dir
from tests.unit.perf.bisect.test_runner import SLOW_ANCHOR, SLOW_CODE, make_port_repo, repo_snapshot

pytestmark = pytest.mark.vm

GIT_ID = ["-c", "user.name=Fork Test", "-c", "user.email=fork@example.invalid", "-c", "commit.gpgsign=false"]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *GIT_ID, "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_guest_ipt_bisection_of_the_openwatcom_build(request: pytest.FixtureRequest, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    openwatcom_or_skip()
    fixture("stories260K.bin")
    monkeypatch.setenv("LLAMA98_FIXTURE_DIR", str(fixture_dir()))
    repo = make_port_repo(tmp_path)
    before = repo_snapshot(repo.path)
    outcome = bisect(repo.path, repo.good, "main", metric="guest-ipt", vm=request.config.getoption("--vm"),
                     out_dir=tmp_path / "run", use_cache=False, plot=False, toolchain="openwatcom")
    assert repo_snapshot(repo.path) == before
    assert outcome.culprit == repo.slow
    assert [r.verdict for r in outcome.measurements if r.sha == repo.broken] == ["skip"]
    assert outcome.parent_measurement.value is not None and outcome.culprit_measurement.value is not None
    assert slower_by("guest-ipt", outcome.parent_measurement.value, outcome.culprit_measurement.value) >= 0.20
    assert len(outcome.measured) <= math.floor(math.log2(repo.candidates)) + 2


def _fork_repository(path: Path) -> tuple[str, str]:
    """good, a docs commit, the culprit (a pass over every weight before each token), another docs commit."""
    watcom_fork(path)
    (path / ".gitignore").write_text("run\n*.obj\n")
    _git(path, "init", "-q", "-b", "main")
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", "fork: llama2.c built with OpenWatcom")
    good = _git(path, "rev-parse", "HEAD")
    (path / "README").write_text("my OpenWatcom fork\n")
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", "docs")
    model = path / "src" / "forward.c"
    source = model.read_text()
    assert SLOW_ANCHOR in source
    model.write_text(source.replace(SLOW_ANCHOR, SLOW_CODE + SLOW_ANCHOR, 1))
    _git(path, "commit", "-q", "-am", "model: check the weights before every token (the slowdown)")
    culprit = _git(path, "rev-parse", "HEAD")
    (path / "README").write_text("my OpenWatcom fork, faster soon\n")
    _git(path, "commit", "-q", "-am", "docs again")
    return good, culprit


def test_bisect_of_a_fork_built_by_its_own_wmake_makefile(vm_image: tuple[str, Path], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    openwatcom_or_skip()
    fixture("stories260K.bin")
    monkeypatch.setenv("LLAMA98_FIXTURE_DIR", str(fixture_dir()))  # the steps (git bisect run's children) too
    repo = tmp_path / "fork"
    good, culprit = _fork_repository(repo)
    head_before = _git(repo, "rev-parse", "HEAD")
    outcome = bisect(repo, good, "main", metric="tok_s", threshold=0.2, out_dir=tmp_path / "run", vm="tiny686",
                     plot=False, build_command="wmake -f fork.mk", binary="run", cli="llama2c")
    assert outcome.culprit == culprit
    assert outcome.culprit_measurement.value is not None and outcome.good.value is not None
    assert outcome.culprit_measurement.value < outcome.good.value / 1.2
    assert _git(repo, "rev-parse", "HEAD") == head_before and not (repo / "run").exists()
