"""Load an ELF or PE executable into what the audit needs: code regions, function symbols, imports, PE header.

pyelftools reads ELF; pefile reads PE. pefile does not read the COFF symbol table that MinGW leaves in an
unstripped PE, so that table (18-byte records plus a string table, PE/COFF spec section 5.4) is read here: it gives
names to addresses and tells which object file (`.file` record) each function came from, just as STT_FILE does in
an ELF symbol table. Anything that does not parse raises AuditInputError (one line, exit 2).
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pefile
from elftools.common.exceptions import ELFError
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from harness.core.errors import HarnessError

ELF_MAGIC = b"\x7fELF"
MZ_MAGIC = b"MZ"
IMAGE_FILE_MACHINE_I386 = 0x14C
IMAGE_SCN_MEM_EXECUTE = 0x20000000
IMAGE_SCN_CNT_CODE = 0x00000020
COFF_SYMBOL_SIZE = 18
COFF_C_EXT = 2
COFF_C_STAT = 3
COFF_C_FILE = 103
COFF_FUNCTION_TYPE = 0x20


class AuditInputError(HarnessError):
    """The file cannot be read or is not an x86 ELF/PE executable (exit code 2, as for usage errors)."""

    exit_code = 2


@dataclass(frozen=True)
class Function:
    """A named code range; `source_file` is the object's source name when the symbol table records it."""

    name: str
    start: int
    end: int  # exclusive; for COFF symbols (no sizes) the next symbol's start or the section end
    source_file: str | None
    is_global: bool


@dataclass(frozen=True)
class CodeRegion:
    """Bytes of one executable section at its load address."""

    name: str
    address: int
    data: bytes


@dataclass(frozen=True)
class Import:
    dll: str
    name: str | None  # None: imported by ordinal
    ordinal: int | None
    slot: int | None = None  # the address of its import address table entry (what `call dword ptr [slot]` reads)


@dataclass
class PeHeader:
    machine: int
    subsystem_version: tuple[int, int]
    os_version: tuple[int, int]
    heap_reserve: int
    subsystem: int


@dataclass
class Binary:
    """An executable's code and what is known about it."""

    path: Path
    kind: str  # "ELF" or "PE"
    regions: list[CodeRegion]
    functions: list[Function] = field(default_factory=list)
    imports: list[Import] = field(default_factory=list)
    pe: PeHeader | None = None
    entry: int | None = None  # the entry point's address (PE: ImageBase + AddressOfEntryPoint)
    sections: list[CodeRegion] = field(default_factory=list)  # PE: every section's bytes (code and data)

    def __post_init__(self) -> None:
        self.functions.sort(key=lambda f: f.start)
        self._starts = [f.start for f in self.functions]

    def locate(self, address: int) -> str:
        """`function+0xOFF` for an address, or `section+0xOFF` when no symbol covers it."""
        index = bisect.bisect_right(self._starts, address) - 1
        if index >= 0:
            function = self.functions[index]
            if function.start <= address < function.end:
                return f"{function.name}+{address - function.start:#x}"
        for region in self.regions:
            if region.address <= address < region.address + len(region.data):
                return f"{region.name}+{address - region.address:#x}"
        return "?"

    def slice(self, start: int, end: int) -> bytes:
        """The code bytes of [start, end) (a function), from whichever region holds them."""
        for region in self.regions:
            if region.address <= start < region.address + len(region.data):
                return region.data[start - region.address:end - region.address]
        return b""

    def read(self, address: int, size: int) -> bytes:
        """Up to `size` bytes of the image at `address`, from whichever section holds it (b"" when none does)."""
        for section in self.sections or self.regions:
            if section.address <= address < section.address + len(section.data):
                return section.data[address - section.address:address - section.address + size]
        return b""

    def import_slot(self, dll: str, name: str) -> int | None:
        """The import address table entry of `dll!name` (DLL case-insensitive), None when not imported."""
        return next((item.slot for item in self.imports if item.dll.upper() == dll.upper() and item.name == name),
                    None)


def load(path: Path) -> Binary:
    """Read `path` as an i386 ELF or PE; AuditInputError for anything else."""
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as error:
        raise AuditInputError(f"cannot read {path}: {error.strerror or error}") from None
    if magic == ELF_MAGIC:
        return _load_elf(path)
    if magic[:2] == MZ_MAGIC:
        return _load_pe(path)
    raise AuditInputError(f"{path} is neither an ELF nor a PE executable (starts with {magic.hex() or 'nothing'})")


def _load_elf(path: Path) -> Binary:
    try:
        with path.open("rb") as handle:
            elf = ELFFile(handle)
            if elf["e_machine"] != "EM_386" or elf.elfclass != 32:
                raise AuditInputError(f"{path} is an ELF for {elf['e_machine']} ({elf.elfclass}-bit), not i386")
            regions = [
                CodeRegion(section.name, section["sh_addr"], section.data())
                for section in elf.iter_sections()
                if section["sh_flags"] & SH_FLAGS.SHF_EXECINSTR and section["sh_type"] == "SHT_PROGBITS"
            ]
            functions = _elf_functions(elf)
    except (ELFError, struct.error, ValueError, OSError) as error:
        raise AuditInputError(f"{path} is not a readable ELF file: {error}") from None
    if not regions:
        raise AuditInputError(f"{path} has no executable sections")
    return Binary(path, "ELF", regions, functions)


def _elf_functions(elf: ELFFile) -> list[Function]:
    """FUNC symbols with their source file: in .symtab each object's STT_FILE precedes its LOCAL symbols; GLOBAL
    symbols come after all locals, so their file is unknown (None)."""
    symtab = elf.get_section_by_name(".symtab")
    if not isinstance(symtab, SymbolTableSection):
        return []
    functions: list[Function] = []
    current_file: str | None = None
    for symbol in symtab.iter_symbols():
        kind = symbol["st_info"]["type"]
        bind = symbol["st_info"]["bind"]
        if kind == "STT_FILE":
            current_file = symbol.name
            continue
        if kind not in ("STT_FUNC", "STT_GNU_IFUNC") or symbol["st_shndx"] == "SHN_UNDEF" or not symbol.name:
            continue
        start = symbol["st_value"]
        size = symbol["st_size"] or 1
        is_global = bind != "STB_LOCAL"
        functions.append(Function(symbol.name, start, start + size, None if is_global else current_file, is_global))
    return functions


def _load_pe(path: Path) -> Binary:
    try:
        pe = pefile.PE(str(path), fast_load=True)
        pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"]])
    except (pefile.PEFormatError, struct.error, ValueError, OSError) as error:
        raise AuditInputError(f"{path} is not a readable PE file: {error}") from None
    try:
        header = pe.OPTIONAL_HEADER
        if pe.FILE_HEADER.Machine != IMAGE_FILE_MACHINE_I386:
            raise AuditInputError(f"{path} is a PE for machine {pe.FILE_HEADER.Machine:#x}, not i386 (0x14c)")
        base = header.ImageBase
        regions = []
        sections = []
        for section in pe.sections:
            name = section.Name.rstrip(b"\0").decode("latin-1")
            data = section.get_data()[: max(section.Misc_VirtualSize, 0) or None]
            sections.append(CodeRegion(name, base + section.VirtualAddress, data))
            if section.Characteristics & (IMAGE_SCN_MEM_EXECUTE | IMAGE_SCN_CNT_CODE):
                regions.append(sections[-1])
        imports = [
            Import(
                entry.dll.decode("latin-1"),
                item.name.decode("latin-1") if item.name else None,
                None if item.name else item.ordinal,
                item.address,
            )
            for entry in getattr(pe, "DIRECTORY_ENTRY_IMPORT", [])
            for item in entry.imports
        ]
        pe_header = PeHeader(
            machine=pe.FILE_HEADER.Machine,
            subsystem_version=(header.MajorSubsystemVersion, header.MinorSubsystemVersion),
            os_version=(header.MajorOperatingSystemVersion, header.MinorOperatingSystemVersion),
            heap_reserve=header.SizeOfHeapReserve,
            subsystem=header.Subsystem,
        )
        entry_point = base + header.AddressOfEntryPoint
        functions = _coff_functions(pe, path.read_bytes(), regions)
    except AttributeError as error:
        raise AuditInputError(f"{path} is a truncated or damaged PE file ({error})") from None
    finally:
        pe.close()
    if not regions:
        raise AuditInputError(f"{path} has no executable sections")
    return Binary(path, "PE", regions, functions, imports, pe_header, entry_point, sections)


def _coff_functions(pe: pefile.PE, raw: bytes, regions: list[CodeRegion]) -> list[Function]:
    """Symbols in executable sections from the COFF symbol table (empty when stripped, as OpenWatcom builds are)."""
    table = pe.FILE_HEADER.PointerToSymbolTable
    count = pe.FILE_HEADER.NumberOfSymbols
    if not table or not count or table + count * COFF_SYMBOL_SIZE > len(raw):
        return []
    strings_at = table + count * COFF_SYMBOL_SIZE
    base = pe.OPTIONAL_HEADER.ImageBase
    sections = pe.sections
    executable = {
        index + 1
        for index, section in enumerate(sections)
        if section.Characteristics & (IMAGE_SCN_MEM_EXECUTE | IMAGE_SCN_CNT_CODE)
    }
    entries: list[tuple[int, str, str | None, bool, int]] = []
    current_file: str | None = None
    index = 0
    while index < count:
        record = raw[table + index * COFF_SYMBOL_SIZE: table + (index + 1) * COFF_SYMBOL_SIZE]
        short_name, value, section_number, symbol_type, storage, aux = struct.unpack("<8sIhHBB", record)
        if short_name[:4] == b"\0\0\0\0":
            offset = struct.unpack("<I", short_name[4:])[0]
            end = raw.find(b"\0", strings_at + offset)
            name = raw[strings_at + offset: end].decode("latin-1")
        else:
            name = short_name.rstrip(b"\0").decode("latin-1")
        if storage == COFF_C_FILE:
            aux_bytes = raw[table + (index + 1) * COFF_SYMBOL_SIZE: table + (index + 1 + aux) * COFF_SYMBOL_SIZE]
            current_file = aux_bytes.split(b"\0", 1)[0].decode("latin-1") or None
        elif (
            storage in (COFF_C_EXT, COFF_C_STAT)
            and section_number in executable
            and not name.startswith(".")
            and (symbol_type & 0x30 == COFF_FUNCTION_TYPE or storage == COFF_C_EXT)
        ):
            address = base + sections[section_number - 1].VirtualAddress + value
            entries.append((address, name, current_file, storage == COFF_C_EXT, section_number))
        index += 1 + aux
    entries.sort()
    starts = sorted({entry[0] for entry in entries})
    region_end = {r.address: r.address + len(r.data) for r in regions}
    functions: list[Function] = []
    for address, name, source, is_global, _section in entries:
        following = bisect.bisect_right(starts, address)
        section_end = next((stop for start, stop in region_end.items() if start <= address < stop), address + 1)
        end = min(starts[following], section_end) if following < len(starts) else section_end
        functions.append(Function(name.removeprefix("_"), address, end, source, is_global))
    return functions
