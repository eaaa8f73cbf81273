"""`llama98-harness bisect` and `bisect-step`: help, and one-line refusals of bad input on real git repositories made
in tmp_path, before any clone or measurement. (A whole bisection runs in tests/unit/perf/bisect/test_runner.py.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from harness.perf.bisect.state import EXIT_ABORT, GIT_LOCATION_VARS
from tests.support.cli_helpers import assert_help, assert_one_line_error, run_cli


def make_repo(path: Path, files: dict[str, str], commits: int = 2) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in GIT_LOCATION_VARS}
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.invalid", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.invalid", GIT_CONFIG_NOSYSTEM="1")

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(path), "-c", "commit.gpgsign=false", *args], capture_output=True,
                              text=True, env=env, timeout=60, check=True).stdout.strip()

    path.mkdir(parents=True)
    git("init", "-q")
    shas = []
    for number in range(commits):
        for name, text in files.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_text(f"{text}\n/* {number} */\n")
        git("add", "-A")
        git("commit", "-q", "-m", f"commit {number}")
        shas.append(git("rev-parse", "HEAD"))
    return shas


@pytest.fixture(autouse=True)
def no_repository_above(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))


def test_help_lists_the_options(capsys):
    assert_help("bisect", capsys, "host-ipt", "guest-ipt", "tok_s")


def test_step_help_lists_the_options(capsys):
    assert_help("bisect-step", capsys)


def test_a_repo_that_is_a_file_is_refused(tmp_path, capsys):
    afile = tmp_path / "file"
    afile.write_text("x")
    result = run_cli(["bisect", "--good", "a", "--bad", "b", "--repo", str(afile)], capsys)
    assert_one_line_error(result, f"--repo {afile} is not a directory", code=2)


def test_a_directory_outside_git_is_refused(tmp_path, capsys):
    result = run_cli(["bisect", "--good", "a", "--bad", "b", "--repo", str(tmp_path)], capsys)
    assert_one_line_error(result, "is not inside a git repository", code=2)


def test_an_unknown_revision_is_refused(tmp_path, capsys):
    repo = tmp_path / "repo"
    make_repo(repo, {"ports/llama98/gcc.mk": "# make"})
    result = run_cli(["bisect", "--good", "nope", "--bad", "HEAD", "--repo", str(repo)], capsys)
    assert_one_line_error(result, "--good 'nope' is not a commit", code=2)


def test_the_same_commit_twice_is_refused(tmp_path, capsys):
    repo = tmp_path / "repo"
    make_repo(repo, {"ports/llama98/gcc.mk": "# make"})
    result = run_cli(["bisect", "--good", "HEAD", "--bad", "HEAD", "--repo", str(repo)], capsys)
    assert_one_line_error(result, "--good and --bad are the same commit", code=2)


def test_a_later_good_than_bad_is_refused(tmp_path, capsys):
    repo = tmp_path / "repo"
    first, second = make_repo(repo, {"ports/llama98/gcc.mk": "# make"})
    result = run_cli(["bisect", "--good", second, "--bad", first, "--repo", str(repo)], capsys)
    assert_one_line_error(result, "is not an ancestor of --bad", code=2)


def test_a_repository_without_the_port_is_refused(tmp_path, capsys):
    repo = tmp_path / "repo"
    make_repo(repo, {"README": "not the harness"})
    result = run_cli(["bisect", "--good", "HEAD~1", "--bad", "HEAD", "--repo", str(repo)], capsys)
    assert_one_line_error(result, "has no ports/llama98/gcc.mk", code=2)


def test_build_without_binary_is_refused(tmp_path, capsys):
    repo = tmp_path / "repo"
    make_repo(repo, {"run.c": "int main(void) { return 0; }"})
    result = run_cli(["bisect", "--good", "HEAD~1", "--bad", "HEAD", "--repo", str(repo), "--build", "make run"],
                     capsys)
    assert_one_line_error(result, "--build and --binary go together", code=2)


def test_a_step_with_an_unreadable_state_aborts_git_bisect_in_one_line(tmp_path, capsys):
    """bisect-step is run by `git bisect run`: its failures exit 128 (abort the bisection, never "bad") with one
    line of its own."""
    result = run_cli(["bisect-step", "--state", str(tmp_path)], capsys)
    assert result.code == EXIT_ABORT
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert result.err.startswith("bisect-step: error: ") and "not a bisect state file" in result.err
