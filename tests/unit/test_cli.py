"""The `llama98-harness` dispatcher: every command module is registered, errors are one line, Ctrl-C is 130."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import harness.cli
from harness.core.paths import project_root
from tests.support.cli_helpers import ERROR_PREFIX, run_cli, subcommand_parser


def test_every_command_module_is_registered_and_every_module_of_commands_is_listed() -> None:
    """A command module that is written but not listed would be unreachable; a listed one must add a parser."""
    on_disk = {f"harness.commands.{path.stem}" for path in (project_root() / "harness" / "commands").glob("*.py")
               if path.stem != "__init__"}
    assert set(harness.cli.COMMAND_MODULES) == on_disk
    for module in harness.cli.COMMAND_MODULES:
        assert callable(importlib.import_module(module).register), module
    for name in ("build", "export", "quantize", "oracle", "run", "build-guest", "bench", "bisect", "plot", "audit",
                 "prepare-image", "toolchain"):
        assert subcommand_parser(name) is not None


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli([], capsys)
    assert result.code == 2
    assert "COMMAND" in result.err


def test_a_harness_error_is_one_line_with_its_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(["oracle", str(tmp_path / "absent.bin"), "-z", str(tmp_path / "absent-tok.bin")], capsys)
    assert result.code != 0
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), result.err
    assert "Traceback" not in result.err


def test_sigterm_unwinds_like_ctrl_c_and_exits_130(tmp_path: Path) -> None:
    """A cancelled CI job sends SIGTERM: the command must unwind through its `finally` blocks (exit 130), not die."""
    script = tmp_path / "slow_command.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        import harness.cli
        from harness.core.errors import HarnessError

        def register(subparsers):
            parser = subparsers.add_parser("sleep")
            parser.set_defaults(func=run)

        def run(args):
            try:
                print("started", flush=True)
                time.sleep(60)
            finally:
                print("cleaned up", flush=True)
            return 0

        sys.modules["slow_command"] = sys.modules[__name__]
        harness.cli.COMMAND_MODULES = ("slow_command",)
        sys.exit(harness.cli.main(["sleep"]))
    """))
    env = {**os.environ, "PYTHONPATH": str(project_root())}
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler))
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "started"
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 130, err
    assert "cleaned up" in out
    assert err.strip() == "llama98-harness: interrupted"
