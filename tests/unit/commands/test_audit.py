"""`llama98-harness audit`: help, one-line refusals of what is not an i386 executable, and real audits of a clean
build of the port and of a program with an SSE instruction."""

from __future__ import annotations

import pytest

from tests.support.c_programs import compile_c
from tests.support.cli_helpers import assert_help, assert_one_line_error, run_cli
from tests.support.port_helpers import built, fixture

SSE_PROGRAM = """
void with_sse(void) { __asm__ volatile("addps %xmm1, %xmm0"); }
int main(void) { with_sse(); return 0; }
"""


def test_help_lists_the_options(capsys):
    assert_help("audit", capsys, "BINARY", "pentium2", "win98")


def test_a_missing_binary_is_exit_2(tmp_path, capsys):
    result = run_cli(["audit", str(tmp_path / "missing.exe")], capsys)
    assert_one_line_error(result, "missing.exe", "does not exist or is not a file", code=2)


def test_a_directory_is_exit_2(tmp_path, capsys):
    result = run_cli(["audit", str(tmp_path)], capsys)
    assert_one_line_error(result, str(tmp_path), "is not a file", code=2)


def test_a_file_that_is_no_executable_is_exit_2(capsys):
    tokenizer = fixture("tok512.bin")
    result = run_cli(["audit", str(tokenizer)], capsys)
    assert_one_line_error(result, "is neither an ELF nor a PE executable", code=2)


def test_a_64_bit_binary_is_exit_2(capsys):
    result = run_cli(["audit", str(built("native"))], capsys)
    assert_one_line_error(result, "not i386", code=2)


def test_the_tiny686_build_is_clean_for_pentium2(capsys):
    result = run_cli(["audit", str(built("tiny686"))], capsys)
    assert result.code == 0, result.err
    assert result.err == ""
    assert result.out.startswith("audit: llama98 (ELF, scope port: ") and result.out.rstrip().endswith(
        "is clean for pentium2")


def test_an_sse_instruction_is_a_finding_with_exit_1(tmp_path, capsys):
    program = compile_c(SSE_PROGRAM, tmp_path / "sse", "-m32", "-O0")
    result = run_cli(["audit", str(program), "--port-src", str(tmp_path)], capsys)
    assert result.code == 1 and result.err == ""
    lines = result.out.splitlines()
    assert lines[0].startswith("audit: sse (ELF, scope port: ") and lines[0].endswith("has 1 findings for pentium2")
    assert any("SSE" in line and "addps xmm0, xmm1" in line and "with_sse+" in line for line in lines)
    assert "per extension: SSE 1" in lines
    clean = run_cli(["audit", str(program), "--port-src", str(tmp_path), "--cpu", "pentium3"], capsys)
    assert clean.code == 0 and "is clean for pentium3" in clean.out


@pytest.mark.parametrize("scope", ["all"])
def test_scope_all_needs_no_port_sources(tmp_path, capsys, scope):
    program = compile_c(SSE_PROGRAM, tmp_path / "sse", "-m32", "-O0")
    result = run_cli(["audit", str(program), "--scope", scope], capsys)
    assert result.code == 1 and "scope all: " in result.out and "addps" in result.out
