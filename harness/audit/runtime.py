"""Imports a known C runtime links into every program but calls only on Windows versions that implement them.

OpenWatcom's Win32 start-up (bld/clib/startup/c/mainwnt.c, __NTInit) fills _LpwPgmName with
__lib_GetModuleFileNameW (bld/clib/libwin32/c/getmodfn.c), which calls GetModuleFileNameW only when
HIWORD(GetVersion()) < 0x8000 (NT) and GetModuleFileNameA plus MultiByteToWideChar on Windows 95/98. So every
OpenWatcom .exe imports a function that is a stub on Windows 98 SE and never calls it there.
fixtures/win98_curated.yaml lists such imports under `runtime_guarded` (the runtime, how its start-up is
recognised, and per DLL and function the guard and the evidence); the generated list carries them unchanged.

The audit accepts such a stub only on evidence read from the binary itself:
1. The binary is the runtime's: its PE entry point holds the runtime's start-up (for OpenWatcom, cstrtwnt.asm's
   `jmp __NTMain` and `dd ___begtext` followed by the run-time copyright message), not merely a string somewhere.
2. Every reference to the import is the runtime's guarded call. The 4 bytes of the import's address table slot
   are searched for in every section, code and data; any match counts as a reference, so bytes that merely look
   like the address make the audit fail, never pass. Each match must be
   - `call dword ptr [slot]` reached only from the guard's "implemented" side: for `getversion-nt`, the NT side
     of `call dword ptr [GetVersion]; shr eax, 0x10; cmp ax, 0x8000; jb/jae`, with no branch or call between
     that side's first instruction and the call; for `jb`, the Windows 9x side between the branch and the NT side
     must end in `ret` or `jmp` (no fall-through into the NT side) and none of its branches may land there; or
   - the linker's import thunk `jmp dword ptr [slot]` that nothing uses. wlink ends the code section with a table
     of such jumps, one per import and no other (a `jmp dword ptr [slot]` outside such a table, e.g. a program's
     own tail call, is a plain reference). Unused: no `call`/`jmp`/`jcc` rel32 from any code byte outside the
     table lands in it, and its address appears nowhere in the image. Code reaches a thunk only through a 32-bit
     fixup: the thunk is a linker-made symbol external to every object file, and OpenWatcom's compiler and
     assembler emit calls and jumps to external symbols as rel32.
   and at least one such guarded call must exist (the runtime's, as the evidence describes).
A call of the program's own (an OpenWatcom program calling GetModuleFileNameW itself) is a second reference that
no guard covers, so the finding stays; a MinGW binary's entry point is not OpenWatcom's start-up, so the entry
never applies to it. An OpenWatcom PE has no symbol table, so harness/audit/scope.py cannot tell the runtime's
functions from the port's by name; the guard is checked in the machine code instead. Jumps into the middle of
the guarded block are not searched for: the block lies inside one function of the runtime (getmodfn.c, whose only
path to the call is the test), and compiled C cannot jump into another function's body.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

import capstone
from capstone import x86_const

from harness.audit.binary import Binary, CodeRegion

GUARD_WINDOW = 32  # bytes decoded from a GetVersion call: the call, the shift, the compare and the branch
STRAIGHT_MAX = 12  # instructions from the guard's NT side to the call (argument pushes and moves)
_BRANCH32 = re.compile(rb"[\xe8\xe9]|\x0f[\x80-\x8f]")
_CONTROL = (capstone.CS_GRP_JUMP, capstone.CS_GRP_CALL, capstone.CS_GRP_RET, capstone.CS_GRP_INT,
            capstone.CS_GRP_IRET)


@dataclass(frozen=True)
class StartUp:
    """The bytes at a runtime's entry point: `opcode`, then `text` at offset `text_at`."""

    opcode: int
    text_at: int
    text: bytes
    evidence: str


@dataclass(frozen=True)
class GuardedImport:
    guard: str     # a key of GUARDS
    evidence: str  # keys of the list's `sources` first, then the runtime source file and the guard


@dataclass(frozen=True)
class Runtime:
    key: str
    name: str
    start_up: StartUp
    imports: dict[str, dict[str, GuardedImport]]  # upper-case DLL -> function -> guard


@dataclass(frozen=True)
class GuardVerdict:
    """Whether the runtime's guard covers every reference to the import, and what was found either way."""

    accepted: bool
    text: str


# --- the guards -----------------------------------------------------------------------------------------------

def _decoder() -> capstone.Cs:
    decoder = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)
    decoder.detail = True
    return decoder


def _occurrences(data: bytes, needle: bytes) -> list[int]:
    found = []
    at = data.find(needle)
    while at >= 0:
        found.append(at)
        at = data.find(needle, at + 1)
    return found


def getversion_nt(binary: Binary, slot: int) -> tuple[dict[int, str], str]:
    """`call dword ptr [slot]` instructions that run only when GetVersion() reports NT (bit 31 clear), each with
    how: {call address: "runs only when GetVersion() (called at ...) reports NT"}; and what the guard is."""
    what = "HIWORD(GetVersion()) < 0x8000, i.e. Windows NT"
    version = binary.import_slot("KERNEL32.DLL", "GetVersion")
    if version is None:
        return {}, what
    decoder = _decoder()
    expected = [("call", f"dword ptr [{version:#x}]"), ("shr", "eax, 0x10"), ("cmp", "ax, 0x8000")]
    target = ("call", f"dword ptr [{slot:#x}]")
    guarded: dict[int, str] = {}
    for region in binary.regions:
        for at in _occurrences(region.data, b"\xff\x15" + struct.pack("<I", version)):
            head = list(decoder.disasm(region.data[at:at + GUARD_WINDOW], region.address + at, 4))
            if len(head) < 4 or [(i.mnemonic, i.op_str) for i in head[:3]] != expected:
                continue
            branch = head[3]
            after = branch.address + branch.size
            if branch.mnemonic == "jb":  # taken when the high word is below 0x8000: NT
                nt, win9x = int(branch.op_str, 16), after
            elif branch.mnemonic == "jae":  # taken on Windows 95/98 and Win32s: NT falls through
                nt, win9x = after, int(branch.op_str, 16)
            else:
                continue
            start = nt - region.address
            if not 0 <= start < len(region.data) or (branch.mnemonic == "jb" and nt <= after):
                continue
            call = None
            for instruction in decoder.disasm(region.data[start:start + 8 * STRAIGHT_MAX], nt, STRAIGHT_MAX):
                if (instruction.mnemonic, instruction.op_str) == target:
                    call = instruction.address
                    break
                if any(instruction.group(group) for group in _CONTROL):
                    break
            if call is None or nt <= win9x <= call:
                continue
            if branch.mnemonic == "jae" or _leaves_before(decoder, region, after, nt, call):
                guarded[call] = (f"its call at {call:#x} runs only when GetVersion() (called at "
                                 f"{head[0].address:#x}) reports NT")
    return guarded, what


def _leaves_before(decoder: capstone.Cs, region: CodeRegion, start: int, nt: int, call: int) -> bool:
    """The Windows 9x side of a `jb` guard, [start, nt), cannot reach the NT side [nt, call]: decoded linearly it
    ends exactly at `nt` with a `ret` or `jmp` (no fall-through), and none of its branches or calls targets the
    NT side."""
    last = None
    code = region.data[start - region.address:nt - region.address]
    for instruction in decoder.disasm(code, start):
        last = instruction
        if any(instruction.group(group) for group in _CONTROL) and instruction.operands:
            operand = instruction.operands[0]
            if operand.type == x86_const.X86_OP_IMM and nt <= operand.imm <= call:
                return False
    return (last is not None and last.address + last.size == nt
            and (last.group(capstone.CS_GRP_RET) or last.mnemonic == "jmp"))


GUARDS: dict[str, Callable[[Binary, int], tuple[dict[int, str], str]]] = {"getversion-nt": getversion_nt}


# --- the runtime and the references ---------------------------------------------------------------------------

def runtime_of(binary: Binary, runtimes: dict[str, Runtime]) -> Runtime | None:
    """The runtime whose start-up sits at the binary's entry point, if any."""
    if binary.entry is None:
        return None
    for runtime in runtimes.values():
        start_up = runtime.start_up
        head = binary.read(binary.entry, start_up.text_at + len(start_up.text))
        if head[:1] == bytes([start_up.opcode]) and head[start_up.text_at:] == start_up.text:
            return runtime
    return None


def _image_occurrences(binary: Binary, value: int) -> list[int]:
    """Addresses in any section (code or data) where the 4 bytes of `value` appear."""
    needle = struct.pack("<I", value)
    sections = binary.sections or binary.regions
    return [section.address + at for section in sections for at in _occurrences(section.data, needle)]


def _thunk_table(binary: Binary, thunk: int) -> tuple[int, int] | None:
    """[start, end) of the linker's import thunk table that holds `thunk`: a run of 6-byte `jmp dword ptr [slot]`
    entries, one for each of the binary's imports and no other. None when the jump at `thunk` is not in such a
    table (a program's own `jmp dword ptr [slot]`, e.g. a tail call, is not)."""
    slots = {item.slot for item in binary.imports if item.slot is not None}

    def slot_at(address: int) -> int | None:
        data = binary.read(address, 6)
        if len(data) == 6 and data[:2] == b"\xff\x25" and binary.slice(address, address + 6):
            value: int = struct.unpack("<I", data[2:])[0]
            return value if value in slots else None
        return None

    start, end = thunk, thunk
    while slot_at(start - 6) is not None:
        start -= 6
    while slot_at(end) is not None:
        end += 6
    table = [slot_at(address) for address in range(start, end, 6)]
    return (start, end) if len(table) == len(slots) and set(table) == slots else None


def _thunk_users(binary: Binary, table: tuple[int, int], thunk: int) -> list[int]:
    """Where a thunk is used: rel32 calls and jumps into it from outside its table, and its address as data."""
    users = _image_occurrences(binary, thunk)
    for region in binary.regions:
        data = region.data
        for match in _BRANCH32.finditer(data):
            at = region.address + match.start()
            end = match.end() + 4
            if table[0] <= at < table[1] or end > len(data):
                continue
            destination = region.address + end + struct.unpack("<i", data[match.end():end])[0]
            if thunk <= destination < thunk + 6:
                users.append(at)
    return sorted(users)


def guard_verdict(binary: Binary, runtimes: dict[str, Runtime], dll: str, name: str) -> GuardVerdict | None:
    """None when no runtime entry applies (the binary is no listed runtime's, or its runtime does not guard
    `dll!name`); else whether the guard covers every reference to the import, with the evidence."""
    runtime = runtime_of(binary, runtimes)
    if runtime is None:
        return None
    guarded = runtime.imports.get(dll.upper(), {}).get(name)
    slot = binary.import_slot(dll, name)
    if guarded is None or slot is None:
        return None
    calls, what = GUARDS[guarded.guard](binary, slot)
    accepted_by: list[str] = []
    problems: list[str] = []
    for reference in _image_occurrences(binary, slot):
        opcode = binary.read(reference - 2, 2)
        if opcode == b"\xff\x15" and reference - 2 in calls:
            accepted_by.append(calls[reference - 2])
        elif opcode == b"\xff\x25" and (table := _thunk_table(binary, reference - 2)) is not None:
            users = _thunk_users(binary, table, reference - 2)
            if users:
                problems.append(f"its import thunk at {reference - 2:#x} is used at "
                                + ", ".join(f"{user:#x}" for user in users))
        else:
            problems.append(f"its slot is referenced at {reference:#x} outside the guard ({what})")
    if not accepted_by:
        problems.append(f"no call guarded by {what} was found")
    if problems:
        return GuardVerdict(False, f"the {runtime.name} calls it only behind a guard, but not every use is that "
                                   "call: " + "; ".join(problems))
    return GuardVerdict(True, f"guarded by the {runtime.name} ({guarded.evidence}): " + "; ".join(accepted_by))


# --- the list's `runtime_guarded` section ---------------------------------------------------------------------

def _mapping(value: object, what: str) -> dict[str, object]:
    if not isinstance(value, dict) or not value:
        raise ValueError(f"runtime_guarded: {what} is not a non-empty mapping")
    return {str(key): item for key, item in value.items()}


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"runtime_guarded: {what} is not a non-empty text")
    return value


def parse_runtimes(value: object) -> dict[str, Runtime]:
    """The `runtime_guarded` section (of the curated or the generated list); ValueError names what is wrong."""
    if value is None:
        return {}
    runtimes: dict[str, Runtime] = {}
    for key, entry in _mapping(value, "the section").items():
        fields = _mapping(entry, key)
        start = _mapping(fields.get("start_up"), f"{key}.start_up")
        opcode, text_at = start.get("opcode"), start.get("text_at")
        if not isinstance(opcode, str) or not re.fullmatch(r"[0-9a-f]{2}", opcode):
            raise ValueError(f"runtime_guarded: {key}.start_up.opcode is not one byte in hex (e.g. e9)")
        if not isinstance(text_at, int) or text_at < 1:
            raise ValueError(f"runtime_guarded: {key}.start_up.text_at is not a positive offset")
        start_up = StartUp(int(opcode, 16), text_at, _text(start.get("text"), f"{key}.start_up.text").encode("latin-1"),
                           _text(start.get("evidence"), f"{key}.start_up.evidence"))
        imports: dict[str, dict[str, GuardedImport]] = {}
        for dll, names in _mapping(fields.get("imports"), f"{key}.imports").items():
            for name, item in _mapping(names, f"{key}.imports.{dll}").items():
                spec = _mapping(item, f"{key}.imports.{dll}.{name}")
                guard = spec.get("guard")
                if guard not in GUARDS:
                    raise ValueError(f"runtime_guarded: {key}.imports.{dll}.{name}.guard {guard!r} is none of the "
                                     f"guards the audit recognises ({', '.join(GUARDS)})")
                evidence = _text(spec.get("evidence"), f"{key}.imports.{dll}.{name}.evidence")
                imports.setdefault(dll.upper(), {})[name] = GuardedImport(str(guard), evidence)
        runtimes[key] = Runtime(key, _text(fields.get("name"), f"{key}.name"), start_up, imports)
    return runtimes


def runtimes_document(runtimes: dict[str, Runtime]) -> dict[str, object]:
    """The section as the generated list writes it (parse_runtimes reads it back unchanged)."""
    return {
        runtime.key: {
            "name": runtime.name,
            "start_up": {"opcode": f"{runtime.start_up.opcode:02x}", "text_at": runtime.start_up.text_at,
                         "text": runtime.start_up.text.decode("latin-1"), "evidence": runtime.start_up.evidence},
            "imports": {dll: {name: {"guard": item.guard, "evidence": item.evidence}
                              for name, item in sorted(names.items())}
                        for dll, names in sorted(runtime.imports.items())},
        }
        for runtime in runtimes.values()
    }
