"""Git plumbing for bisection: every call in a pinned environment, so a hook's GIT_DIR never points git at the user's
repository.
"""


from __future__ import annotations

import os
from pathlib import Path

from harness.core.errors import UsageError
from harness.core.proc import run
from harness.perf.bisect.state import GIT_LOCATION_VARS, GIT_TIMEOUT_S, BisectError

# --- git ---------------------------------------------------------------------------------------------------------

def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in GIT_LOCATION_VARS}
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


def git(repo: Path, *args: str, check: bool = True, timeout: float = GIT_TIMEOUT_S) -> str:
    """Run git in `repo` and return stdout (stripped); a failure is a one-line BisectError."""
    result = run(["git", "-C", str(repo), *args], what=f"git {' '.join(args)} in {repo}", timeout=timeout,
                 env=_git_env(), check=check, error=BisectError)
    return result.stdout.strip()


def succeeds(repo: Path, *args: str) -> bool:
    """Whether a git query (merge-base --is-ancestor, cat-file -e, ...) answers yes."""
    return run(["git", "-C", str(repo), *args], what=f"git {args[0]}", timeout=GIT_TIMEOUT_S, env=_git_env(),
               check=False, error=BisectError).returncode == 0


def resolve_commit(repo: Path, rev: str, what: str) -> str:
    result = run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                 what="git rev-parse", timeout=GIT_TIMEOUT_S, env=_git_env(), check=False, error=BisectError)
    if result.returncode != 0 or not result.stdout.strip():
        raise UsageError(f"{what} {rev!r} is not a commit in {repo}")
    return result.stdout.strip()


def repo_toplevel(path: Path) -> Path:
    if not path.is_dir():
        raise UsageError(f"--repo {path} is not a directory")
    result = run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], what="git rev-parse", timeout=GIT_TIMEOUT_S,
                 env=_git_env(), check=False, error=BisectError)
    if result.returncode != 0:
        raise UsageError(f"--repo {path} is not inside a git repository")
    return Path(result.stdout.strip())


def subject_of(repo: Path, sha: str) -> str:
    return git(repo, "log", "-1", "--format=%s", sha)


