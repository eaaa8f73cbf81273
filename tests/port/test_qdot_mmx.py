"""The MMX dot products (qdot_mmx.c) return exactly the portable C89 ones (qdot.c), so a quantized model prints
the same bytes with either; the audit accepts the MMX build for a Pentium II and flags it for a Pentium."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.audit import audit
from harness.models.modelgen import SHAPES, cached_tokenizer
from harness.models.quantize import quantize_file, write_ternary_model
from harness.port.build import default_src_dir
from tests.support.port_helpers import built, fixture, run_port

STRICT = ["-std=c89", "-pedantic-errors", "-Wall", "-Wextra", "-Wdeclaration-after-statement", "-Werror"]

# Random and extreme (+-127 everywhere) vectors of every length 1..1000, as sums of qdot_i8 and qdot_t2.
DRIVER = r"""
#include <stdio.h>
#include "qdot.h"
int main(void)
{
    static short x[1024];
    static signed char w[1024];
    static unsigned char p[256];
    static long sums[1024];
    static const int groups[] = {48, 32, 16, 12, 8, 5, 4, 3, 2, 1};
    unsigned long r = 12345UL;
    int t, i, k, n, g;
    long multi;
    for (t = 0; t < 3000; t++) {
        n = 1 + t % 1000;
        for (i = 0; i < n; i++) {
            r = (r * 1103515245UL + 12345UL) & 0xFFFFFFFFUL;
            x[i] = (short)((int)((r >> 8) % 255UL) - 127);
            r = (r * 1103515245UL + 12345UL) & 0xFFFFFFFFUL;
            w[i] = (signed char)((int)((r >> 8) % 255UL) - 127);
            if (t % 3 == 0) {
                x[i] = (short)((i & 1) ? -127 : 127);
                w[i] = (signed char)((i & 1) ? -127 : 127);
            }
            if (t % 7 == 1) {
                x[i] = (short)(t % 2 ? 127 : -127);
                w[i] = (signed char)-128;
            }
        }
        for (i = 0; i < (n + 3) / 4; i++) {
            int b = 0;
            for (k = 0; k < 4; k++) {
                r = (r * 1103515245UL + 12345UL) & 0xFFFFFFFFUL;
                b |= (int)((r >> 10) % 3UL) << (2 * k);
            }
            p[i] = (unsigned char)(t % 3 == 0 ? 0x55 : b);
        }
        for (k = 0; n % groups[k] != 0; k++) {
        }
        multi = 0;
        qdot_i8_groups(x, w, n, groups[k], sums);
        for (g = 0; g < n / groups[k]; g++) {
            multi += sums[g] * (g + 1);
        }
        qdot_i8_groups(x, w, n, n, sums);
        printf("%d %ld %ld %ld\n", n, sums[0], multi, n % 4 == 0 ? qdot_t2(x, p, n) : 0L);
    }
    return 0;
}
"""


KERNEL_FILES = {"qdot.c": [str(default_src_dir() / "qdot.c")],
                "qdot_mmx.c": [str(default_src_dir() / "qdot_mmx.c"), str(default_src_dir() / "qdot_mmx_gcc.c")]}


def _sums(kernel: str, tmp_path: Path) -> list[str]:
    """Build the driver with `kernel` (qdot.c, or qdot_mmx.c with its GCC assembly file) and run it."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    src = default_src_dir()
    (tmp_path / "driver.c").write_text(DRIVER)
    exe = tmp_path / f"driver-{kernel}"
    build = subprocess.run(["gcc", "-m32", "-march=pentium2", "-O2", *STRICT, "-I", str(src), "-o", str(exe),
                            str(tmp_path / "driver.c"), *KERNEL_FILES[kernel]], capture_output=True, text=True,
                           timeout=120, check=False)
    if build.returncode != 0 and "gnu/stubs-32.h" in build.stderr:
        pytest.skip("gcc -m32 needs gcc-multilib")
    assert build.returncode == 0, build.stderr
    return subprocess.run([str(exe)], capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()


def test_mmx_sums_equal_the_portable_c_sums(tmp_path: Path) -> None:
    c_sums, mmx_sums = _sums("qdot.c", tmp_path), _sums("qdot_mmx.c", tmp_path)
    assert len(c_sums) == 3000
    assert c_sums == mmx_sums
    assert any(line.startswith("1000 16129000 ") and line.endswith(" 0") for line in c_sums)  # 1000 * 127 * 127


def test_mmx_and_c_builds_print_the_same_bytes(tmp_path: Path) -> None:
    mmx, portable = built("tiny686"), built("tiny686-c")
    q8 = quantize_file(fixture("stories260K.bin"), tmp_path / "q8.bin", "q8_0")
    ternary = write_ternary_model(tmp_path / "t.bin", SHAPES["gqa-512"], seed=4, ffn="relu2", sub_norms=True,
                                  int8_classifier=True)
    for model, tokenizer in ((q8, fixture("tok512.bin")), (ternary, cached_tokenizer(512))):
        for args in (["-t", "0", "-n", "100"], ["-t", "0.9", "-s", "3", "-n", "100", "-i", "Once"]):
            command = [str(model), "-z", str(tokenizer), *args]
            a, b = run_port(mmx, command), run_port(portable, command)
            assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
            assert a.stdout == b.stdout and len(a.stdout) > 20


def test_audit_accepts_mmx_on_pentium2_and_flags_it_on_pentium() -> None:
    binary = built("tiny686")
    assert audit(binary, cpu="pentium2").clean
    flagged = audit(binary, cpu="pentium").findings
    mmx = [f for f in flagged if f.extension == "MMX"]
    assert any("pmaddwd" in f.text for f in mmx), [f.text for f in flagged][:10]
    assert not audit(built("tiny686-c"), cpu="pentium2").findings
