"""The HarnessError family: every subclass, wherever it lives, renders as one line with its evidence in the fixed
order, carries its exit code (2 for usage errors, 1 otherwise) and is named in the tree documented in
harness/core/errors.py; the command line prints it as one `llama98-harness: error:` line and exits with its code.

The subclasses are found by reading the package's source (not by importing it), so every class is checked on its
own: a module that fails to import fails only its own cases.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import harness
from harness.core.artifacts import ArtifactDir
from harness.core.errors import HarnessError, ImageError, UsageError

PACKAGE = Path(harness.__file__).parent
USAGE_EXIT_CODE_CLASSES = {"UsageError", "AuditInputError"}  # AuditInputError: documented as "as for usage errors"


def _error_classes() -> list[tuple[str, str]]:
    """(module, class name) of every class in harness/ deriving, by name, from HarnessError."""
    bases: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                names = [b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else ""
                         for b in node.bases]
                bases[(module, node.name)] = names
    known = {"HarnessError"}
    grew = True
    while grew:
        grew = False
        for (_, name), parents in bases.items():
            if name not in known and known & set(parents):
                known.add(name)
                grew = True
    return sorted(key for key in bases if key[1] in known and key[1] != "HarnessError")


ERROR_CLASSES = _error_classes()


def _load(module: str, name: str) -> type[HarnessError]:
    cls = getattr(importlib.import_module(module), name)
    assert isinstance(cls, type) and issubclass(cls, HarnessError)
    return cls


def _instance(cls: type[HarnessError], message: str) -> HarnessError:
    """An instance built through the class's own constructor, its extra fields given plausible values."""
    values: dict[str, object] = {"exit_code": 1, "command": ["qemu-system-i386", "-bad"], "stderr": "boom",
                                 "waited_for": "TINY686 READY", "transcript": None, "screendump": None}
    args: list[object] = []
    kwargs: dict[str, object] = {}
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    for index, parameter in enumerate(parameters):
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if index == 0:
            args.append(message)
        elif parameter.default is parameter.empty:
            assert parameter.name in values, f"{cls.__name__}({parameter.name}=...): teach this test the field"
            if parameter.kind == parameter.KEYWORD_ONLY:
                kwargs[parameter.name] = values[parameter.name]
            else:
                args.append(values[parameter.name])
    return cls(*args, **kwargs)


def test_the_family_is_found() -> None:
    names = {name for _, name in ERROR_CLASSES}
    assert {"UsageError", "ImageError", "QemuError", "QemuLaunchError", "ConsoleTimeout", "GuestBuildError",
            "ToolError", "SessionError", "OracleError", "CheckpointError"} <= names
    assert len(ERROR_CLASSES) >= 30


@pytest.mark.parametrize(("module", "name"), ERROR_CLASSES, ids=[f"{m}.{n}" for m, n in ERROR_CLASSES])
def test_every_error_is_one_line_with_its_evidence_and_exit_code(module: str, name: str, tmp_path: Path) -> None:
    cls = _load(module, name)
    error = _instance(cls, f"{name} happened")
    assert str(error) == f"{name} happened" and error.message == f"{name} happened"
    assert isinstance(error, Exception) and not isinstance(error, (KeyboardInterrupt, SystemExit))

    expected_code = 2 if issubclass(cls, UsageError) or name in USAGE_EXIT_CODE_CLASSES else 1
    assert error.exit_code == expected_code

    artifacts = ArtifactDir(tmp_path / "artifacts")
    transcript, screendump = artifacts.serial_transcript, artifacts.file("screendump-01.png")
    same = error.with_evidence(artifacts=artifacts, transcript=transcript, screendump=screendump)
    assert same is error
    assert str(error) == (f"{name} happened; serial log: {transcript}; screendump: {screendump}; "
                          f"artifacts: {artifacts.path}")
    assert "\n" not in str(error)


@pytest.mark.parametrize(("module", "name"), ERROR_CLASSES, ids=[f"{m}.{n}" for m, n in ERROR_CLASSES])
def test_every_error_is_named_in_the_documented_tree(module: str, name: str) -> None:
    """harness/core/errors.py documents the tree 'each class beside the code that raises it': a new class must be
    added there, with the module it lives in."""
    tree = (PACKAGE / "core" / "errors.py").read_text(encoding="utf-8").split('"""')[1]
    line = next((line for line in tree.splitlines() if re.search(rf"(\+-- |, ){name}\b", line)), None)
    assert line is not None, f"{name} ({module}) is missing from the tree in harness/core/errors.py"
    where = module.removeprefix("harness.")
    documented = re.search(rf"\b{name} \(([\w.]+)\)", line)  # "ImageError (core.errors)"; subclasses may omit it
    if documented:
        assert where == documented.group(1) or where.startswith(f"{documented.group(1)}."), \
            f"{name} lives in {module}, the tree says ({documented.group(1)})"


def test_innermost_evidence_wins_and_missing_evidence_is_not_rendered(tmp_path: Path) -> None:
    inner = tmp_path / "inner"
    error = ImageError("disk gone", transcript=tmp_path / "serial.log")
    assert str(error) == f"disk gone; serial log: {tmp_path / 'serial.log'}"
    error.with_evidence(artifacts=inner)
    error.with_evidence(artifacts=tmp_path / "outer", transcript=tmp_path / "other.log")
    assert error.artifacts == inner and error.transcript == tmp_path / "serial.log" and error.screendump is None
    assert str(error) == f"disk gone; serial log: {tmp_path / 'serial.log'}; artifacts: {inner}"
    assert str(HarnessError("plain")) == "plain"


def test_a_raise_that_changes_type_keeps_one_line() -> None:
    """`raise Outer(str(inner)) from None` is the harness's idiom: the new error's text is still one line."""
    try:
        try:
            raise ImageError("inner failure", artifacts="/tmp/art")
        except ImageError as inner:
            raise UsageError(f"--vm x: {inner}") from None
    except UsageError as outer:
        assert str(outer) == "--vm x: inner failure; artifacts: /tmp/art" and outer.exit_code == 2
        assert outer.__cause__ is None and outer.__suppress_context__


def test_the_cli_prints_one_line_and_exits_with_the_errors_code(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-binary"
    result = subprocess.run([sys.executable, "-m", "harness.cli", "audit", str(missing)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]  # AuditInputError: exit code 2
    assert result.stderr == f"llama98-harness: error: {missing} does not exist or is not a file\n"
    assert result.stdout == ""
