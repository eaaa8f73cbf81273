"""Git plumbing of bisection (harness.perf.bisect.git) on real repositories made in tmp_path: answers come from the
repository named, never from one a hook's GIT_DIR points at, and every failure is one line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from harness.core.errors import UsageError
from harness.perf.bisect.git import git, repo_toplevel, resolve_commit, subject_of, succeeds
from harness.perf.bisect.state import GIT_LOCATION_VARS, BisectError

IDENTITY = {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.invalid", "GIT_COMMITTER_NAME": "Test",
            "GIT_COMMITTER_EMAIL": "test@example.invalid", "GIT_CONFIG_NOSYSTEM": "1"}


def plain_git(repo: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in GIT_LOCATION_VARS}
    env.update(IDENTITY, HOME=str(repo.parent))
    result = subprocess.run(["git", "-C", str(repo), "-c", "commit.gpgsign=false", *args], capture_output=True,
                            text=True, env=env, timeout=60, check=True)
    return result.stdout.strip()


def make_repo(path: Path, subjects: list[str]) -> list[str]:
    """A repository with one commit per subject (each changes a file); returns the shas, oldest first."""
    path.mkdir(parents=True)
    plain_git(path, "init", "-q", "-b", "main")
    shas = []
    for number, subject in enumerate(subjects):
        (path / "file.txt").write_text(f"version {number}\n")
        (path / "sub").mkdir(exist_ok=True)
        plain_git(path, "add", "-A")
        plain_git(path, "commit", "-q", "-m", subject)
        shas.append(plain_git(path, "rev-parse", "HEAD"))
    return shas


@pytest.fixture
def repo(tmp_path, monkeypatch) -> tuple[Path, list[str]]:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # never find a repository above tmp_path
    path = tmp_path / "repo"
    return path, make_repo(path, ["first commit", "second: make it slower", "third"])


def test_git_returns_stripped_stdout(repo):
    path, shas = repo
    assert git(path, "rev-parse", "HEAD") == shas[-1]
    assert git(path, "log", "--format=%s") == "third\nsecond: make it slower\nfirst commit"


def test_git_ignores_a_git_dir_pointing_elsewhere(repo, tmp_path, monkeypatch):
    path, shas = repo
    other = make_repo(tmp_path / "other", ["unrelated"])
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "other" / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(tmp_path / "other"))
    assert git(path, "rev-parse", "HEAD") == shas[-1] != other[0]
    assert resolve_commit(path, "HEAD", "--bad") == shas[-1]
    assert subject_of(path, shas[0]) == "first commit"


def test_a_failing_git_command_is_a_one_line_bisect_error(repo):
    path, _ = repo
    with pytest.raises(BisectError) as error:
        git(path, "cat-file", "-p", "0" * 40)
    message = str(error.value)
    assert "\n" not in message and "git cat-file" in message and str(path) in message
    assert git(path, "cat-file", "-e", "0" * 40, check=False) == ""


def test_succeeds_answers_yes_or_no(repo):
    path, shas = repo
    assert succeeds(path, "merge-base", "--is-ancestor", shas[0], shas[2])
    assert not succeeds(path, "merge-base", "--is-ancestor", shas[2], shas[0])
    assert succeeds(path, "cat-file", "-e", shas[1])
    assert not succeeds(path, "cat-file", "-e", "f" * 40)


def test_resolve_commit_gives_full_shas_and_refuses_non_commits(repo):
    path, shas = repo
    assert resolve_commit(path, "HEAD~2", "--good") == shas[0]
    assert resolve_commit(path, shas[1][:8], "--good") == shas[1]
    assert resolve_commit(path, "main", "--bad") == shas[2]
    with pytest.raises(UsageError, match=rf"^--good 'nope' is not a commit in {path}$"):
        resolve_commit(path, "nope", "--good")
    with pytest.raises(UsageError, match="is not a commit"):
        resolve_commit(path, "HEAD~5", "--good")
    with pytest.raises(UsageError, match="is not a commit"):  # a blob is an object, but not a commit
        resolve_commit(path, plain_git(path, "rev-parse", "HEAD:file.txt"), "--bad")


def test_repo_toplevel_from_a_subdirectory(repo):
    path, _ = repo
    assert repo_toplevel(path / "sub") == path.resolve()
    assert repo_toplevel(path) == path.resolve()


def test_repo_toplevel_refuses_what_is_not_a_repository(repo, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(UsageError, match=f"--repo {plain} is not inside a git repository"):
        repo_toplevel(plain)
    with pytest.raises(UsageError, match="is not a directory"):
        repo_toplevel(tmp_path / "missing")
    afile = repo[0] / "file.txt"
    with pytest.raises(UsageError, match="is not a directory"):
        repo_toplevel(afile)


def test_subject_of_each_commit(repo):
    path, shas = repo
    assert [subject_of(path, sha) for sha in shas] == ["first commit", "second: make it slower", "third"]
