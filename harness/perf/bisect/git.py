"""Git plumbing for bisection: every call in a pinned environment, so a hook's GIT_DIR never points git at the user's repository."""


from __future__ import annotations

import os
import subprocess
from pathlib import Path

from harness.core.errors import UsageError
from harness.perf.bisect.state import GIT_LOCATION_VARS, GIT_TIMEOUT_S, BisectError

# --- git ---------------------------------------------------------------------------------------------------------

def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in GIT_LOCATION_VARS}
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


def git(repo: Path, *args: str, check: bool = True, timeout: float = GIT_TIMEOUT_S) -> str:
    """Run git in `repo` and return stdout (stripped); a failure is a one-line BisectError."""
    try:
        result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=timeout,
                                check=False, env=_git_env(), stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise BisectError("git not found: apt-get install git") from None
    except subprocess.TimeoutExpired:
        raise BisectError(f"git {' '.join(args)} timed out after {timeout:g} s in {repo}") from None
    if check and result.returncode != 0:
        why = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        raise BisectError(f"git {' '.join(args)} failed in {repo}: {why}")
    return result.stdout.strip()


def resolve_commit(repo: Path, rev: str, what: str) -> str:
    result = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                            capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False, env=_git_env())
    if result.returncode != 0 or not result.stdout.strip():
        raise UsageError(f"{what} {rev!r} is not a commit in {repo}")
    return result.stdout.strip()


def repo_toplevel(path: Path) -> Path:
    if not path.is_dir():
        raise UsageError(f"--repo {path} is not a directory")
    result = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True,
                            text=True, timeout=GIT_TIMEOUT_S, check=False, env=_git_env())
    if result.returncode != 0:
        raise UsageError(f"--repo {path} is not inside a git repository")
    return Path(result.stdout.strip())


def subject_of(repo: Path, sha: str) -> str:
    return git(repo, "log", "-1", "--format=%s", sha)


