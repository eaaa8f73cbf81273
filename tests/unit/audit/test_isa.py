"""The ISA scan (harness.audit.isa) on real machine code: one instruction per section of an object file assembled by
gcc -m32 -c from top-level inline asm, then decoded by the scan for each target CPU. What each CPU has follows
the module's table (Bochs' P5, Klamath and Katmai models): an SSE instruction is a finding for pentium2 but not
for pentium3, CMOVcc is fine for pentium2 but a finding for the P5 pentium, and so on."""

from __future__ import annotations

import pytest
from elftools.elf.elffile import ELFFile

from harness.audit import isa
from tests.support.c_programs import compile_c

# name -> (AT&T assembly, the extension the scan must report, or None for the base i386..P5 set)
SNIPPETS: dict[str, tuple[str, str | None]] = {
    "add": ("addl %edx, %eax", None),
    "cpuid": ("cpuid", None),
    "rdtsc": ("rdtsc", None),
    "cmpxchg8b": ("cmpxchg8b (%eax)", None),
    "x87": ("fmulp %st, %st(1)", None),
    "pause": ("pause", None),  # rep nop
    "ud2": ("ud2", None),
    "tzcnt": ("tzcnt %eax, %edx", None),  # rep bsf
    "cmov": ("cmovl %edx, %eax", isa.P6),
    "fcmov": ("fcmovb %st(1), %st", isa.P6),
    "fcomi": ("fcomi %st(1), %st", isa.P6),
    "long_nop": ("nopw 0(%eax,%eax,1)", isa.P6),
    "endbr32": ("endbr32", isa.P6),
    "mmx": ("paddw %mm1, %mm0", isa.MMX),
    "emms": ("emms", isa.MMX),
    "sysenter": ("sysenter", isa.SEP),
    "fxsave": ("fxsave (%eax)", isa.FXSR),
    "sse": ("addps %xmm1, %xmm0", isa.SSE),
    "sse_on_mmx": ("pshufw $0, %mm1, %mm0", isa.SSE),
    "pminub_mmx": ("pminub %mm1, %mm0", isa.SSE),
    "pminub_xmm": ("pminub %xmm1, %xmm0", isa.SSE2),
    "sse2": ("addpd %xmm1, %xmm0", isa.SSE2),
    "paddq_mmx": ("paddq %mm1, %mm0", isa.SSE2),
    "fisttp": ("fisttpl (%eax)", isa.SSE3),
    "ssse3": ("pshufb %mm1, %mm0", isa.SSSE3),
    "popcnt": ("popcnt %eax, %edx", isa.POPCNT),
    "avx": ("vaddps %ymm1, %ymm2, %ymm0", isa.AVX),
}

ALLOWED = {
    "pentium": set(),
    "pentium2": {isa.P6, isa.MMX, isa.SEP},
    "pentium3": {isa.P6, isa.MMX, isa.SEP, isa.FXSR, isa.SSE},
}


@pytest.fixture(scope="module")
def snippets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The machine code of every snippet, assembled by gcc -m32 into section .text.<name>."""
    source = "\n".join(f'__asm__(".section .text.{name},\\"ax\\",@progbits\\n\\t{code}\\n\\t.previous");'
                       for name, (code, _) in SNIPPETS.items())
    obj = compile_c(source + "\nint llama98_isa_test_anchor;\n", tmp_path_factory.mktemp("isa") / "snippets.o",
                    "-m32", "-std=gnu89", link=False)
    code: dict[str, bytes] = {}
    with obj.open("rb") as handle:
        elf = ELFFile(handle)
        assert elf["e_machine"] == "EM_386"
        for name in SNIPPETS:
            section = elf.get_section_by_name(f".text.{name}")
            assert section is not None, name
            code[name] = section.data()
    return code


def scan_one(data: bytes, cpu: str) -> tuple[list[isa.Instruction], int]:
    return isa.scan(isa.new_disassembler(), data, 0x1000, cpu)


@pytest.mark.parametrize("name", sorted(SNIPPETS))
def test_each_instruction_needs_its_extension(snippets, name):
    decoder = isa.new_disassembler()
    instructions = list(decoder.disasm(snippets[name], 0))
    assert len(instructions) == 1 and instructions[0].size == len(snippets[name]), name
    assert isa.required_extension(instructions[0]) == SNIPPETS[name][1]


@pytest.mark.parametrize("cpu", sorted(isa.CPU_FEATURES))
@pytest.mark.parametrize("name", sorted(SNIPPETS))
def test_findings_are_what_the_cpu_lacks(snippets, name, cpu):
    findings, decoded = scan_one(snippets[name], cpu)
    assert decoded == 1
    needs = SNIPPETS[name][1]
    if needs is None or needs in ALLOWED[cpu]:
        assert findings == []
    else:
        assert [(f.address, f.extension) for f in findings] == [(0x1000, needs)]
        assert findings[0].size == len(snippets[name])


def test_sse_is_flagged_for_pentium2_and_cmov_only_for_pentium(snippets):
    sse, _ = scan_one(snippets["sse"], "pentium2")
    assert [(f.text, f.extension) for f in sse] == [("addps xmm0, xmm1", isa.SSE)]
    assert scan_one(snippets["cmov"], "pentium2")[0] == []
    cmov, _ = scan_one(snippets["cmov"], "pentium")
    assert [(f.text, f.extension) for f in cmov] == [("cmovl eax, edx", isa.P6)]
    assert scan_one(snippets["sse"], "pentium3")[0] == []


def test_a_run_of_code_reports_each_finding_at_its_address(snippets):
    order = ["add", "sse", "cmov", "mmx", "sse2", "pause"]
    code = b"".join(snippets[name] for name in order)
    findings, decoded = isa.scan(isa.new_disassembler(), code, 0x8048000, "pentium2")
    assert decoded == len(order)
    offsets = {name: sum(len(snippets[n]) for n in order[:order.index(name)]) for name in order}
    assert [(f.address, f.extension) for f in findings] == [(0x8048000 + offsets["sse"], isa.SSE),
                                                             (0x8048000 + offsets["sse2"], isa.SSE2)]
    pentium, _ = isa.scan(isa.new_disassembler(), code, 0, "pentium")
    assert [f.extension for f in pentium] == [isa.SSE, isa.P6, isa.MMX, isa.SSE2]


def test_bytes_that_do_not_decode_are_skipped_not_counted(snippets):
    # 0F D6 has no meaning without a prefix: capstone skips the 0F byte and decodes D6 (SALC, base set)
    code = snippets["add"] + b"\x0f\xd6" + snippets["cmov"]
    findings, decoded = isa.scan(isa.new_disassembler(), code, 0, "pentium")
    assert [(f.address, f.extension) for f in findings] == [(4, isa.P6)]  # the cmov after the junk is found
    assert decoded == 3  # add, salc, cmov: the skipped byte is not an instruction


def test_cpu_feature_sets_grow_with_the_cpu():
    assert isa.CPU_FEATURES["pentium"] < isa.CPU_FEATURES["pentium2"] < isa.CPU_FEATURES["pentium3"]
    assert isa.FXSR not in isa.CPU_FEATURES["pentium2"]  # Klamath has no FXSR
    for later in (isa.SSE2, isa.SSE3, isa.SSSE3, isa.POPCNT, isa.AVX, isa.AVX512, isa.AMD3DNOW, isa.OTHER):
        assert all(later not in features for features in isa.CPU_FEATURES.values())


def test_extension_order_lists_every_extension_once():
    assert len(set(isa.EXTENSION_ORDER)) == len(isa.EXTENSION_ORDER)
    for _code, needs in SNIPPETS.values():
        assert needs is None or needs in isa.EXTENSION_ORDER


def test_the_snippets_are_the_expected_encodings(snippets):
    """Sanity of the fixture: gcc -m32 assembled what the table says."""
    assert snippets["add"] == bytes.fromhex("01d0")
    assert snippets["cmov"] == bytes.fromhex("0f4cc2")
    assert snippets["sse"] == bytes.fromhex("0f58c1")
    assert snippets["long_nop"][:3] == bytes.fromhex("660f1f")
