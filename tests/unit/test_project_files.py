"""The README's two opening commands are the ones CI runs: keep them true."""

from __future__ import annotations

import re

from harness.core.paths import project_root

ROOT = project_root()


def readme_commands() -> list[str]:
    """The lines of the README's first code block."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```\n(.*?)```", text, re.S)
    assert block is not None, "README has no code block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_exactly_two_commands() -> None:
    commands = readme_commands()
    assert len(commands) == 2
    assert commands[0].startswith("bash .ci/setup && ") and "llama98-harness run" in commands[0]
    assert commands[1].startswith("bash .ci/setup && ") and "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    command_lines = [line for line in ci.splitlines() if line and not line.lstrip().startswith("#")]
    assert readme_commands()[1] in command_lines


def test_ci_fails_when_no_tests_ran() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r'"\$rc" = 5 \]', ci) and "exit 1" in ci
