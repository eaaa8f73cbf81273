"""Shared pieces of the byte-level BPE tests: building bpetool with the port's makefiles and running it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.core.proc import tool_env
from harness.models.bpe_writer import from_tokenizer_json, llama3_control_ids, write_bpe
from tests.support.bpe_vocab import SharedVocab
from tests.support.port_helpers import wine_env

SRC = Path(__file__).resolve().parents[2] / "ports" / "llama98"
MAKEFILES = {"native": ("gcc.mk", "bpetool"), "native-asan": ("gcc.mk", "bpetool"),
             "tiny686": ("gcc.mk", "bpetool"), "win32": ("mingw.mk", "bpetool.exe")}


def build_bpetool(target: str, directory: Path) -> Path:
    """bpetool built by `make -f gcc.mk|mingw.mk` for `target` in `directory`; a missing compiler skips."""
    makefile, name = MAKEFILES[target]
    compiler = "i686-w64-mingw32-gcc" if target == "win32" else "gcc"
    if shutil.which(compiler) is None or shutil.which("make") is None:
        pytest.skip(f"{compiler} or make not installed")
    directory.mkdir(parents=True, exist_ok=True)
    command = ["make", "-s", "-f", str(SRC / makefile), name]
    if makefile == "gcc.mk":
        command.append(f"TARGET={target}")
    result = subprocess.run(command, cwd=directory, capture_output=True, text=True, timeout=300, check=False,
                            env=tool_env())  # the user's MAKEFLAGS, CC or CFLAGS must not change what is built
    assert result.returncode == 0, result.stderr
    return directory / name


def write_port_tokenizer(vocab: SharedVocab, path: Path) -> Path:
    """The test vocabulary in the port's BPE tokenizer format, converted from its tokenizer.json."""
    source = from_tokenizer_json(vocab.tokenizer_json)
    write_bpe(path, source, *llama3_control_ids(source))
    return path


def port_encode(command: list[str], tokenizer: Path, strings: list[bytes], specials: bool = False,
                timeout: float = 300) -> list[list[int]]:
    """Ids of each string from bpetool (strings must not hold NUL)."""
    args = [*command, str(tokenizer), *(["-s"] if specials else [])]
    result = subprocess.run(args, input=b"\0".join(strings), capture_output=True, timeout=timeout, check=False,
                            env=wine_env())  # a bpetool.exe under Wine: headless, the tests' prefix
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    lines = result.stdout.decode("ascii").split("\n")
    assert lines[-1] == "" and len(lines) == len(strings) + 1
    return [[int(x) for x in line.split()] for line in lines[:-1]]
