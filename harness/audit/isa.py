"""Which x86 extension an instruction needs, and which extensions each target CPU has.

Capstone's instruction groups (X86_GRP_SSE1, ...) are the first source, but they are incomplete or wrong for the
old CPUs this project targets, so explicit tables override them (each checked against capstone 5 by
tests/unit/audit/test_binary.py):
- the integer SSE additions that work on MMX registers (pshufw, pminub, pmovmskb, movntq, ...) are grouped MMX by
  capstone but came with the Pentium III (SSE); paddq/psubq/pmuludq on MMX registers are SSE2; pshufb & co on MMX
  registers have no group at all (SSSE3);
- POPCNT, LZCNT, MOVBE, RDRAND, RDSEED, XSAVE/XGETBV, FXSAVE/FXRSTOR, PREFETCHW, the multi-byte NOP (0F 1F) and the
  CET hint ENDBR32 have no group; FISTTP is grouped FPU but is SSE3;
- TZCNT is F3 0F BC, i.e. `rep bsf`: GCC (and MinGW's gdtoa in libmingwex) emits it for __builtin_ctz, whose
  argument is never 0, and every pre-BMI CPU executes it as BSF with the same result, so it is allowed. Limit: a
  program built with -mbmi that relies on TZCNT(0) = 32 would not be caught by this instruction alone;
- PAUSE is grouped SSE2 but is `rep nop`, which every earlier CPU executes as NOP (Intel SDM), so it is allowed;
- UD2 (Pentium Pro) is not flagged: it exists to raise #UD, which an older CPU raises for it too.
Registers back this up: any xmm register means at least SSE, ymm AVX, zmm or a mask register AVX-512, an mm
register at least MMX.

Target CPUs (features as in the Bochs CPU database, bochs/cpu/cpudb/intel/{pentium,p2_klamath,p3_katmai}.cc):
- pentium:  P5 (P54C) = i486 + CPUID, RDTSC, CMPXCHG8B, RDMSR/WRMSR. No MMX (the Pentium MMX added it; QEMU's
            `-cpu pentium` advertises MMX, so this target is stricter than that model), no P6 additions.
- pentium2: P6 additions (CMOVcc, FCMOVcc, FCOMI/FUCOMI(P), RDPMC, long NOP, hint NOPs), MMX, SYSENTER/SYSEXIT.
            FXSAVE/FXRSTOR is NOT included: the first Pentium II (Klamath, CPUID 0x634) lacks the FXSR flag in
            Bochs' model; it came with the Deschutes core (QEMU's `-cpu pentium2` is model 5 and has it). Code
            that needs FXSR must check CPUID, so an unconditional FXSAVE is a finding.
- pentium3: pentium2 + FXSR + SSE (incl. the MMX-register SSE integer instructions, PREFETCHh, SFENCE, MXCSR).
Everything later (SSE2 ... AVX-512, 3DNow!, POPCNT, ...) is a finding on all three.
"""

from __future__ import annotations

from dataclasses import dataclass

import capstone
from capstone import x86_const as x86

# Extensions in order of introduction (the order only decides which name a multi-group instruction reports).
P6 = "P6"
MMX = "MMX"
SEP = "SYSENTER"
FXSR = "FXSR"
SSE = "SSE"
SSE2 = "SSE2"
SSE3 = "SSE3"
SSSE3 = "SSSE3"
SSE41 = "SSE4.1"
SSE42 = "SSE4.2"
SSE4A = "SSE4a"
POPCNT = "POPCNT"
LZCNT = "LZCNT"
MOVBE = "MOVBE"
AMD3DNOW = "3DNow!"
SYSCALL = "SYSCALL"
AVX = "AVX"
AVX2 = "AVX2"
AVX512 = "AVX-512"
FMA = "FMA"
OTHER = "post-P6"  # anything else newer than the Pentium III (BMI, AES, SHA, XSAVE, RDRAND, TSX, ...)

EXTENSION_ORDER: tuple[str, ...] = (
    P6, MMX, SEP, FXSR, SSE, SSE2, SSE3, SSSE3, SSE41, SSE42, SSE4A, POPCNT, LZCNT, MOVBE, AMD3DNOW, SYSCALL,
    AVX, AVX2, FMA, AVX512, OTHER,
)

CPU_FEATURES: dict[str, frozenset[str]] = {
    "pentium": frozenset(),
    "pentium2": frozenset({P6, MMX, SEP}),
    "pentium3": frozenset({P6, MMX, SEP, FXSR, SSE}),
}

_GROUP_EXTENSION: dict[int, str] = {
    x86.X86_GRP_CMOV: P6,  # CMOVcc and FCMOVcc
    x86.X86_GRP_MMX: MMX,
    x86.X86_GRP_SSE1: SSE,
    x86.X86_GRP_SSE2: SSE2,
    x86.X86_GRP_SSE3: SSE3,
    x86.X86_GRP_SSSE3: SSSE3,
    x86.X86_GRP_SSE41: SSE41,
    x86.X86_GRP_SSE42: SSE42,
    x86.X86_GRP_SSE4A: SSE4A,
    x86.X86_GRP_3DNOW: AMD3DNOW,
    x86.X86_GRP_AVX: AVX,
    x86.X86_GRP_AVX2: AVX2,
    x86.X86_GRP_FMA: FMA,
    x86.X86_GRP_FMA4: FMA,
    x86.X86_GRP_AVX512: AVX512,
    x86.X86_GRP_BWI: AVX512,
    x86.X86_GRP_CDI: AVX512,
    x86.X86_GRP_DQI: AVX512,
    x86.X86_GRP_ERI: AVX512,
    x86.X86_GRP_PFI: AVX512,
    x86.X86_GRP_VLX: AVX512,
    x86.X86_GRP_XOP: OTHER,
    x86.X86_GRP_TBM: OTHER,
    x86.X86_GRP_F16C: OTHER,
    x86.X86_GRP_BMI: OTHER,
    x86.X86_GRP_BMI2: OTHER,
    x86.X86_GRP_ADX: OTHER,
    x86.X86_GRP_AES: OTHER,
    x86.X86_GRP_PCLMUL: OTHER,
    x86.X86_GRP_SHA: OTHER,
    x86.X86_GRP_RTM: OTHER,
    x86.X86_GRP_HLE: OTHER,
    x86.X86_GRP_SGX: OTHER,
    x86.X86_GRP_SMAP: OTHER,
    x86.X86_GRP_FSGSBASE: OTHER,
}

# Mnemonic tables that override or complete the groups (capstone spellings).
_P6_MNEMONICS = frozenset({"fcomi", "fcomip", "fcompi", "fucomi", "fucomip", "fucompi", "rdpmc"})
_SSE_ON_MMX = frozenset({
    "pshufw", "pminub", "pmaxub", "pminsw", "pmaxsw", "pavgb", "pavgw", "psadbw", "pmulhuw", "pextrw",
    "pinsrw", "pmovmskb", "maskmovq", "movntq",
})
_SSE2_ON_MMX = frozenset({"paddq", "psubq", "pmuludq", "movdq2q", "movq2dq"})
_SSSE3_MNEMONICS = frozenset({
    "pshufb", "phaddw", "phaddd", "phaddsw", "phsubw", "phsubd", "phsubsw", "pmaddubsw", "pmulhrsw",
    "psignb", "psignw", "psignd", "pabsb", "pabsw", "pabsd", "palignr",
})
_FIXED: dict[str, str | None] = {
    "pause": None,  # F3 90 = rep nop: a NOP before the Pentium 4
    "ud2": None,    # raises #UD by design, on every CPU
    "tzcnt": None,  # F3 0F BC = `rep bsf`: GCC emits it for __builtin_ctz (source never 0), older CPUs run BSF
    "sysenter": SEP,
    "sysexit": SEP,
    "fxsave": FXSR,
    "fxrstor": FXSR,
    "fisttp": SSE3,
    "popcnt": POPCNT,
    "lzcnt": LZCNT,
    "movbe": MOVBE,
    "syscall": SYSCALL,
    "sysret": SYSCALL,
    "prefetchw": AMD3DNOW,
    "endbr32": P6,  # F3 0F 1E FB: a hint NOP from the P6 on, undefined on the P5
    "endbr64": P6,
    "rdrand": OTHER, "rdseed": OTHER, "rdtscp": OTHER, "xgetbv": OTHER, "xsetbv": OTHER,
    "xsave": OTHER, "xsaveopt": OTHER, "xsavec": OTHER, "xsaves": OTHER, "xrstor": OTHER, "xrstors": OTHER,
    "clflushopt": OTHER, "clwb": OTHER, "cmpxchg16b": OTHER, "rdpid": OTHER, "wbnoinvd": OTHER,
}


@dataclass(frozen=True)
class Instruction:
    """What the audit keeps of one decoded instruction."""

    address: int
    size: int
    text: str
    extension: str


def _register_extension(insn: capstone.CsInsn) -> str | None:
    """The extension implied by the registers an instruction names (operands, including memory base/index)."""
    names: set[str] = set()
    for operand in insn.operands:
        if operand.type == x86.X86_OP_REG:
            names.add(insn.reg_name(operand.reg) or "")
        elif operand.type == x86.X86_OP_MEM:
            for reg in (operand.mem.base, operand.mem.index):
                if reg:
                    names.add(insn.reg_name(reg) or "")
    found: list[str] = []
    for name in names:
        if name.startswith("zmm") or (len(name) == 2 and name[0] == "k" and name[1].isdigit()):
            found.append(AVX512)
        elif name.startswith("ymm"):
            found.append(AVX)
        elif name.startswith("xmm"):
            found.append(SSE)
        elif name.startswith("mm"):
            found.append(MMX)
    return _latest(found)


def _latest(extensions: list[str]) -> str | None:
    return max(extensions, key=EXTENSION_ORDER.index) if extensions else None


def _is_long_nop(insn: capstone.CsInsn) -> bool:
    """0F 1F /0 (and 0F 18-0F 1E hint space): documented from the Pentium Pro on, invalid on a P5."""
    opcode = bytes(insn.opcode)
    return insn.mnemonic == "nop" and opcode[:1] == b"\x0f" and 0x18 <= opcode[1] <= 0x1F


def required_extension(insn: capstone.CsInsn) -> str | None:
    """The newest extension `insn` needs, or None for the i386/i486/P5 base set."""
    mnemonic = insn.mnemonic
    if mnemonic in _FIXED:
        return _FIXED[mnemonic]
    registers = _register_extension(insn)
    uses_mmx_only = registers == MMX
    if mnemonic in _SSE_ON_MMX and uses_mmx_only:
        return SSE
    if mnemonic in _SSE2_ON_MMX and uses_mmx_only:
        return SSE2
    if mnemonic in _SSSE3_MNEMONICS:
        return SSSE3
    if mnemonic in _P6_MNEMONICS or _is_long_nop(insn):
        return P6
    candidates = [_GROUP_EXTENSION[group] for group in insn.groups if group in _GROUP_EXTENSION]
    if registers is not None:
        candidates.append(registers)
    return _latest(candidates)


def new_disassembler() -> capstone.Cs:
    """A 32-bit x86 capstone decoder with operand details; SKIPDATA steps over bytes that do not decode."""
    decoder = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)
    decoder.detail = True
    decoder.skipdata = True
    return decoder


def scan(decoder: capstone.Cs, code: bytes, address: int, cpu: str) -> tuple[list[Instruction], int]:
    """Every instruction in `code` (loaded at `address`) that `cpu` does not have, and how many were decoded."""
    allowed = CPU_FEATURES[cpu]
    findings: list[Instruction] = []
    decoded = 0
    for insn in decoder.disasm(code, address):
        if insn.id == 0:  # a SKIPDATA pseudo-instruction (.byte): not code capstone can decode
            continue
        decoded += 1
        extension = required_extension(insn)
        if extension is not None and extension not in allowed:
            text = f"{insn.mnemonic} {insn.op_str}".strip()
            findings.append(Instruction(insn.address, insn.size, text, extension))
    return findings, decoded
