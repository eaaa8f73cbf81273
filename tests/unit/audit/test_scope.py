"""Which functions count as the port's (harness.audit.scope): definitions read from C sources by the small scanner,
and the symbols of a real gcc -m32 binary built here from a "port" file and a "library" file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.audit.binary import Function, load
from harness.audit.scope import PortSources, default_port_dirs, defined_functions, port_functions, port_sources
from harness.core.paths import project_root
from tests.support.c_programs import gcc

PORT_C = r"""
/* int commented_out(void) { return 0; } */
#include <stddef.h>
#define BRACES(x) { (x); }
#define LONG_MACRO(a, b) \
    int macro_made(void) { return (a) + (b); }

struct pair { int a; int b; };
typedef struct { float x; } wrapped;
static const int table[] = { 1, 2, 3 };
static const char *text = "not_a_function(void) { }";
int declared_only(int value);

static int helper(int value)
{
    if (value > 2) {
        return value * 2;
    }
    return value;
}

float *
pointer_returning(float *base,
                  size_t count)
{
    return base + count;
}

int apply(int (*fn)(int), int x) { return fn(x); }

int port_entry(int value)
{
    int i, total = 0;
    for (i = 0; i < 3; i++) { total += table[i]; }
    (void)text;
    return apply(helper, value) + total;
}
"""

LIB_C = r"""
static int helper(int value) { return value + 100; }  /* same name as the port's static, other file */
int library_function(int value) { return helper(value); }
int port_entry(int value);
int main(void) { return library_function(port_entry(1)) == 0; }
"""


def test_defined_functions_finds_definitions_only():
    assert defined_functions(PORT_C) == {"helper", "pointer_returning", "apply", "port_entry"}


@pytest.mark.parametrize("source, names", [
    ("int f(void);\nint g(void) { return 0; }\n", {"g"}),
    ("void h(a, b)\n{\n}\n", {"h"}),
    ("int k(void) { if (1) { while (0) { } } return 0; }\nint l(void) { return 1; }\n", {"k", "l"}),
    ("// int cpp_comment(void) { }\nint real(void) { return '{'; }\n", {"real"}),
    ("int s = sizeof(int);\nstatic int arr[2] = {0, 1};\n", set()),
    ("enum color { RED, GREEN };\nunion u { int i; float f; };\n", set()),
])
def test_defined_functions_small_cases(source, names):
    assert defined_functions(source) == names


def test_port_sources_collects_file_and_function_names(tmp_path):
    (tmp_path / "port").mkdir()
    (tmp_path / "port" / "engine.c").write_text(PORT_C)
    (tmp_path / "port" / "notes.txt").write_text("int not_c(void) { }")
    (tmp_path / "second").mkdir()
    (tmp_path / "second" / "extra.c").write_text("int extra(void) { return 0; }\n")
    sources = port_sources([tmp_path / "port", tmp_path / "second"])
    assert sources.files == {"engine.c", "extra.c"}
    assert sources.functions == {"helper", "pointer_returning", "apply", "port_entry", "extra"}


def test_owns_by_source_file_first_then_by_name():
    sources = PortSources(frozenset({"engine.c"}), frozenset({"port_entry", "matmul"}))
    assert sources.owns(Function("helper", 0, 4, "engine.c", False))  # a static of a port file
    assert sources.owns(Function("helper", 0, 4, "/build/ports/llama98/engine.c", False))  # only the name counts
    assert not sources.owns(Function("helper", 0, 4, "lib.c", False))  # a static of another file
    assert not sources.owns(Function("port_entry", 0, 4, "lib.c", False))  # the file decides, not the name
    assert sources.owns(Function("port_entry", 0, 4, None, True))  # a global: by name
    assert sources.owns(Function("matmul.part.0", 0, 4, None, True))  # GCC clones keep their base name
    assert sources.owns(Function("matmul.cold", 0, 4, None, True))
    assert not sources.owns(Function("memcpy", 0, 4, None, True))


@pytest.fixture(scope="module")
def linked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("scope")
    (root / "port").mkdir()
    (root / "lib").mkdir()
    (root / "port" / "engine.c").write_text(PORT_C)
    (root / "lib" / "other.c").write_text(LIB_C)
    binary = root / "program"
    result = subprocess.run([gcc(), "-m32", "-std=c89", "-O0", "-fno-inline", str(root / "port" / "engine.c"),
                             str(root / "lib" / "other.c"), "-o", str(binary)], capture_output=True, text=True,
                            timeout=60, check=False)
    if result.returncode != 0 and ("stubs-32.h" in result.stderr or "cannot find" in result.stderr):
        pytest.skip(f"gcc -m32 cannot link here (install gcc-multilib): {result.stderr.strip()[:200]}")
    assert result.returncode == 0, result.stderr
    return binary, root


def test_port_functions_of_a_real_binary(linked):
    binary_path, root = linked
    binary = load(binary_path)
    owned = port_functions(binary, port_sources([root / "port"]))
    by_name: dict[str, list[Function]] = {}
    for function in owned:
        by_name.setdefault(function.name, []).append(function)
    assert set(by_name) == {"helper", "pointer_returning", "apply", "port_entry"}
    assert len(by_name["helper"]) == 1 and by_name["helper"][0].source_file == "engine.c"  # not other.c's helper
    assert all(f.end > f.start for f in owned)
    everything = {f.name for f in binary.functions}
    assert {"library_function", "main"} <= everything  # present, but not the port's
    assert len([f for f in binary.functions if f.name == "helper"]) == 2


def test_the_library_side_is_the_port_when_its_directory_is_given(linked):
    binary_path, root = linked
    owned = {(f.name, f.source_file) for f in port_functions(load(binary_path), port_sources([root / "lib"]))}
    assert owned == {("helper", "other.c"), ("library_function", None), ("main", None)}


def test_default_port_dirs_are_this_checkouts_ports():
    dirs = default_port_dirs()
    assert project_root() / "ports" / "llama98" in dirs
    assert all(d.parent == project_root() / "ports" and d.is_dir() for d in dirs)
    sources = port_sources(dirs)
    assert "llama98.c" in sources.files and "main" in sources.functions
