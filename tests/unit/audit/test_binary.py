"""`llama98-harness audit`: real binaries built here with gcc -m32 and MinGW are flagged or passed as they should be.

Every binary below is compiled in the test from a small C file (or the port itself) with the flags that matter,
so the audit meets what compilers really emit, not hand-made byte strings.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.audit import audit, isa
from harness.audit.binary import load
from harness.audit.scope import defined_functions
from harness.audit.win98 import load_exports
from harness.cli import main
from harness.core.proc import tool_env
from harness.port.build import build_port, default_src_dir
from tests.support.port_helpers import built

COMPILE_TIMEOUT_S = 180

FLOAT_LOOPS = r"""
#include <stdio.h>
#include <stdlib.h>
float dot(const float *a, const float *b, int n) {
    float s = 0.0f; int i;
    for (i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}
void scale(float *x, float k, int n) { int i; for (i = 0; i < n; i++) x[i] = x[i] * k + 1.0f; }
int main(int argc, char **argv) {
    float a[256], b[256]; int i;
    for (i = 0; i < 256; i++) { a[i] = (float)(i + argc); b[i] = (float)atoi(argv[0]) + i; }
    scale(a, 0.5f, 256);
    printf("%f\n", (double)dot(a, b, 256));
    return 0;
}
"""

INT_MAX_LOOP = r"""
#include <stdio.h>
int biggest(const int *v, int n) {
    int best = v[0], i;
    for (i = 1; i < n; i++) best = v[i] > best ? v[i] : best;
    return best;
}
int main(int argc, char **argv) {
    int v[64], i;
    (void)argv;
    for (i = 0; i < 64; i++) v[i] = (i * 37 + argc) % 101;
    printf("%d\n", biggest(v, 64));
    return 0;
}
"""

WIN32_PROGRAM = r"""
#include <windows.h>
#include <stdio.h>
int main(void) {
#ifdef USE_TICK64
    ULONGLONG t = GetTickCount64();
    printf("%lu\n", (unsigned long)t);
#else
    printf("%lu\n", (unsigned long)GetTickCount());
#endif
    return 0;
}
"""


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed (apt-get install gcc-multilib gcc-mingw-w64-i686)")


def _compile(tmp_path: Path, source: str, name: str, compiler: str, flags: list[str],
             libs: tuple[str, ...] = ()) -> Path:
    _need(compiler)
    src_dir = tmp_path / f"{name}-src"
    src_dir.mkdir()
    c_file = src_dir / f"{name}.c"
    c_file.write_text(source)
    out = tmp_path / name
    result = subprocess.run([compiler, *flags, "-o", str(out), str(c_file), *libs], capture_output=True, text=True,
                            timeout=COMPILE_TIMEOUT_S, check=False)
    if result.returncode != 0 and "-m32" in flags and "cannot find" in result.stderr:
        pytest.skip(f"32-bit glibc not installed: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stderr
    return out


def _gcc32(tmp_path: Path, source: str, name: str, *flags: str) -> tuple[Path, Path]:
    """A static i386 build (glibc's SSE ifuncs included); returns the binary and its source directory."""
    binary = _compile(tmp_path, source, name, "gcc", ["-m32", "-static", *flags])
    return binary, tmp_path / f"{name}-src"


def _run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["audit", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- instruction classification: capstone groups corrected by the tables -----------------------------------

CLASSIFIED = {
    "cmovne %eax,%ebx": "P6",
    "fcmovb %st(1),%st": "P6",
    "fucomip %st(1),%st": "P6",
    "nopl 0(%eax)": "P6",
    "sysenter": "SYSENTER",
    "fxsave (%eax)": "FXSR",
    "emms": "MMX",
    "pshufw $1,%mm0,%mm1": "SSE",
    "pmovmskb %mm0,%eax": "SSE",
    "sfence": "SSE",
    "addss %xmm0,%xmm1": "SSE",
    "movsd (%eax),%xmm0": "SSE2",
    "paddq %mm0,%mm1": "SSE2",
    "lfence": "SSE2",
    "fisttpl (%eax)": "SSE3",
    "pshufb %mm0,%mm1": "SSSE3",
    "pminsd %xmm0,%xmm1": "SSE4.1",
    "crc32b %al,%ebx": "SSE4.2",
    "popcnt %eax,%ebx": "POPCNT",
    "lzcnt %eax,%ebx": "LZCNT",
    "movbe (%eax),%ebx": "MOVBE",
    "vaddps %ymm0,%ymm1,%ymm2": "AVX",
    "andn %eax,%ebx,%ecx": "post-P6",
    "rdrand %eax": "post-P6",
    "femms": "3DNow!",
    "pause": None,
    "ud2": None,
    "tzcnt %eax,%ebx": None,
    "rdtsc": None,
    "cmpxchg8b (%eax)": None,
    "bswap %eax": None,
    "fsincos": None,
}


def test_instruction_classification(tmp_path: Path) -> None:
    """Each line assembled alone by GNU as, decoded by capstone, classified by isa.required_extension."""
    _need("as")
    lines = list(CLASSIFIED)
    (tmp_path / "t.s").write_text(".text\n" + "\n".join(f"{line}\nint3" for line in lines) + "\n")
    subprocess.run(["as", "--32", "-o", str(tmp_path / "t.o"), str(tmp_path / "t.s")], check=True,
                   capture_output=True, timeout=60)
    from elftools.elf.elffile import ELFFile
    with (tmp_path / "t.o").open("rb") as handle:
        code = ELFFile(handle).get_section_by_name(".text").data()
    decoded = [insn for insn in isa.new_disassembler().disasm(code, 0) if insn.mnemonic != "int3"]
    assert len(decoded) == len(lines)
    got = {line: isa.required_extension(insn) for line, insn in zip(lines, decoded)}
    assert got == CLASSIFIED


def test_cpu_models_are_nested() -> None:
    assert isa.CPU_FEATURES["pentium"] < isa.CPU_FEATURES["pentium2"] < isa.CPU_FEATURES["pentium3"]
    assert "SSE" not in isa.CPU_FEATURES["pentium2"] and "FXSR" not in isa.CPU_FEATURES["pentium2"]


# --- compiled C: the flags decide the verdict ---------------------------------------------------------------

@pytest.mark.parametrize("flags", [["-march=pentium3", "-O3"], ["-msse2", "-mfpmath=sse", "-O2"]],
                         ids=["pentium3-O3", "msse2"])
def test_sse_builds_are_flagged_for_pentium2(flags: list[str], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    binary, src = _gcc32(tmp_path, FLOAT_LOOPS, "floats", *flags)
    code, out, err = _run_cli(capsys, str(binary), "--cpu", "pentium2", "--port-src", str(src))
    assert code == 1, out + err
    assert "xmm" in out and "scope port" in out
    assert any(f"{name}+0x" in out for name in ("dot", "scale", "main"))
    assert "per extension: SSE" in out


def test_sse1_build_is_clean_for_pentium3_but_sse2_is_not(tmp_path: Path) -> None:
    p3, src3 = _gcc32(tmp_path, FLOAT_LOOPS, "p3", "-march=pentium3", "-mfpmath=sse", "-O3")
    assert audit(p3, "pentium3", port_dirs=[src3]).findings == []
    sse2, src2 = _gcc32(tmp_path, FLOAT_LOOPS, "sse2", "-march=pentium3", "-msse2", "-mfpmath=sse", "-O3")
    extensions = {f.extension for f in audit(sse2, "pentium3", port_dirs=[src2]).findings}
    assert "SSE2" in extensions


def test_pentium2_build_is_clean_for_pentium2_and_flagged_for_pentium(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    binary, src = _gcc32(tmp_path, INT_MAX_LOOP, "cmov", "-march=pentium2", "-O2")
    code, out, _ = _run_cli(capsys, str(binary), "--cpu", "pentium2", "--port-src", str(src))
    assert code == 0 and out.count("\n") == 1 and "is clean for pentium2" in out
    code, out, _ = _run_cli(capsys, str(binary), "--cpu", "pentium", "--port-src", str(src))
    assert code == 1
    assert "cmov" in out and "biggest+0x" in out and "per extension: P6" in out


def test_static_glibc_sse_is_outside_the_default_scope_but_seen_with_scope_all(tmp_path: Path) -> None:
    """The explained choice: glibc's CPUID-dispatched SSE variants are reported only with --scope all."""
    binary, src = _gcc32(tmp_path, INT_MAX_LOOP, "glibc", "-march=pentium2", "-O2")
    assert audit(binary, "pentium2", port_dirs=[src]).findings == []
    everything = audit(binary, "pentium2", scope="all", port_dirs=[src])
    places = {everything.binary.locate(f.address) for f in everything.findings}
    assert any("sse2" in place for place in places)


def test_port_built_for_pentium3_is_flagged(tmp_path: Path) -> None:
    """The port itself, built by its own makefile with SSE floating point instead of x87."""
    _need("gcc")
    make = shutil.which("make")
    assert make is not None
    build = tmp_path / "build"
    build.mkdir()
    result = subprocess.run(
        [make, "-s", "-f", str(default_src_dir() / "gcc.mk"), f"SRC={default_src_dir()}", "TARGET=tiny686",
         "ARCH=-m32 -march=pentium3 -mfpmath=sse"],
        cwd=build, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, check=False, env=tool_env())
    assert result.returncode == 0, result.stderr
    found = audit(build / "llama98", "pentium2")
    assert found.scope == "port"
    assert {f.extension for f in found.findings} >= {"SSE"}
    assert any(found.binary.locate(f.address).startswith(("matmul", "linear")) for f in found.findings)


# --- Windows 98: imports and header -------------------------------------------------------------------------

def _mingw(tmp_path: Path, name: str, *flags: str) -> Path:
    return _compile(tmp_path, WIN32_PROGRAM, f"{name}.exe", "i686-w64-mingw32-gcc",
                    ["-march=pentium2", "-O2", "-static-libgcc",
                     "-Wl,--major-subsystem-version,4,--minor-subsystem-version,0",
                     "-Wl,--major-os-version,4,--minor-os-version,0", *flags])


def test_pe_importing_gettickcount64_is_flagged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exe = _mingw(tmp_path, "tick64", "-DUSE_TICK64", "-D_WIN32_WINNT=0x0600")
    code, out, _ = _run_cli(capsys, str(exe), "--os", "win98")
    assert code == 1
    assert "KERNEL32.dll!GetTickCount64" in out and "Vista" in out
    assert "GetTickCount " not in out  # only the bad import is listed


def test_mingw_pe_with_msvcrt_stdio_is_clean_for_win98(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    exe = _mingw(tmp_path, "tick32", "-D__USE_MINGW_ANSI_STDIO=0")
    code, out, _ = _run_cli(capsys, str(exe), "--os", "win98")
    assert code == 0, out
    assert "clean for pentium2 and Windows 98 SE" in out


def test_mingw_ansi_stdio_pulls_in_a_win9x_stub(tmp_path: Path) -> None:
    """MinGW-w64's own printf (the default with -std=c89) imports GetModuleHandleW, a stub on Windows 98: the
    reason ports/*/mingw.mk build with -D__USE_MINGW_ANSI_STDIO=0."""
    exe = _mingw(tmp_path, "ansi", "-std=c89", "-D__USE_MINGW_ANSI_STDIO=1")
    items = {f.item for f in audit(exe, "pentium2", "win98").os_findings}
    assert "KERNEL32.dll!GetModuleHandleW" in items


def test_subsystem_6_and_zero_heap_reserve_are_flagged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exe = _mingw(tmp_path, "vista", "-Wl,--major-subsystem-version,6,--minor-subsystem-version,0",
                 "-Wl,--heap=0")
    code, out, _ = _run_cli(capsys, str(exe), "--os", "win98")
    assert code == 1
    assert "subsystem version 6.0" in out
    assert "SizeOfHeapReserve 0" in out


def test_unknown_dll_is_flagged(tmp_path: Path) -> None:
    source = "#include <winsock.h>\nint main(void) { WSADATA d; return WSAStartup(0x0101, &d); }\n"
    exe = _compile(tmp_path, source, "sock.exe", "i686-w64-mingw32-gcc", ["-O2", "-D__USE_MINGW_ANSI_STDIO=0"],
                   libs=("-lwsock32",))
    findings = audit(exe, "pentium2", "win98").os_findings
    assert [(f.what, f.item.upper()) for f in findings] == [("dll", "WSOCK32.DLL")]


# --- bad input: one line, exit 2 ----------------------------------------------------------------------------

@pytest.mark.parametrize("content", [b"", b"not a binary at all\n", b"MZ" + b"\0" * 62 + b"garbage",
                                     b"\x7fELF" + b"\x01" * 60], ids=["empty", "text", "bad-pe", "bad-elf"])
def test_unreadable_files_exit_2_with_one_line(content: bytes, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "garbage.bin"
    path.write_bytes(content)
    code, out, err = _run_cli(capsys, str(path))
    assert code == 2
    assert out == ""
    assert err.startswith("llama98-harness: error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_missing_file_and_64_bit_binary_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run_cli(capsys, str(tmp_path / "nope"))
    assert code == 2 and "does not exist" in err
    native = _compile(tmp_path, INT_MAX_LOOP, "native", "gcc", ["-O2"])
    code, _, err = _run_cli(capsys, str(native))
    assert code == 2 and "not i386" in err


def test_stripped_elf_cannot_use_port_scope(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    binary, _ = _gcc32(tmp_path, INT_MAX_LOOP, "stripped", "-march=pentium2", "-O2", "-s")
    code, _, err = _run_cli(capsys, str(binary), "--scope", "port")
    assert code == 2 and "--scope all" in err
    assert audit(binary, "pentium2").scope == "all"


# --- the binaries the project ships -------------------------------------------------------------------------

def test_shipped_tiny686_build_is_clean() -> None:
    result = audit(built("tiny686"), "pentium2")
    assert result.scope == "port" and result.units >= 20
    assert result.findings == [], [(hex(f.address), f.text) for f in result.findings]


@pytest.mark.parametrize("program", ["llama98", "agent98"])
def test_shipped_win32_builds_are_clean_for_win98(program: str) -> None:
    _need("i686-w64-mingw32-gcc")
    if not default_src_dir(program).is_dir():
        pytest.skip(f"ports/{program} is not in this checkout")
    exe = build_port("win32", program=program)
    result = audit(exe, "pentium2", "win98")
    assert result.scope == "all"
    assert result.clean, ([f.text for f in result.findings], result.os_findings)


# --- the Windows 98 export list ------------------------------------------------------------------------------

def test_export_list_is_consistent() -> None:
    """The generated list (tests/unit/audit/test_exports_source.py covers how it is made): four DLLs, stubs are
    exports."""
    exports = load_exports()
    assert set(exports.exported) == {"KERNEL32.DLL", "USER32.DLL", "ADVAPI32.DLL", "MSVCRT.DLL"}
    for dll, names in exports.exported.items():
        assert set(exports.stubs[dll]) <= set(names), dll
        assert not set(names) & set(exports.absent[dll]), dll
        assert all(source for source in names.values()), dll
    for trap in ("GetTickCount64", "CancelIoEx", "GetFileSizeEx"):
        assert trap in exports.absent["KERNEL32.DLL"], trap
    for stub in ("CreateFileW", "SetHandleInformation"):
        assert stub in exports.stubs["KERNEL32.DLL"], stub


def test_every_import_of_the_shipped_pes_is_listed() -> None:
    """What the project imports today must be covered by name (the audit also enforces this)."""
    _need("i686-w64-mingw32-gcc")
    exports = load_exports()
    for program in ("llama98", "agent98"):
        if not default_src_dir(program).is_dir():
            continue
        for item in load(build_port("win32", program=program)).imports:
            assert item.name in exports.available[item.dll.upper()], f"{program}: {item.dll}!{item.name}"


def test_export_list_against_a_real_windows98_system_dir() -> None:
    """Turns the curated list into a verified one, given Windows 98 SE's SYSTEM directory copied from an image."""
    system = os.environ.get("LLAMA98_WIN98_SYSTEM_DIR")
    if not system:
        pytest.skip("set LLAMA98_WIN98_SYSTEM_DIR to a Windows 98 SE WINDOWS/SYSTEM directory to verify the list")
    import pefile
    exports = load_exports()
    for dll, by_name in exports.exported.items():
        names = set(by_name)
        matches = [p for p in Path(system).iterdir() if p.name.upper() == dll]
        assert matches, f"{dll} not in {system}"
        pe = pefile.PE(str(matches[0]))
        real = {symbol.name.decode() for symbol in pe.DIRECTORY_ENTRY_EXPORT.symbols if symbol.name}
        assert names <= real, f"{dll} lacks {sorted(names - real)}"
        assert not set(exports.absent[dll]) & real, f"{dll} has {sorted(set(exports.absent[dll]) & real)}"


def test_c89_function_scanner() -> None:
    source = """
    #include <stdio.h>
    /* int fake(void) { */
    static const char *s = "not(a) { function";
    static int helper(int a, int (*cb)(int))
    {
        if (a) { return cb(a); }
        return 0;
    }
    int main(void) { return helper(1, 0); }
    struct point { int x; };
    """
    assert defined_functions(source) == {"helper", "main"}
