# watcom.mk - build llama98 with OpenWatcom's wmake and wcl386: llama98.exe
# (Win32 console, Windows 95/98/NT 4.0 and later) for the nightly CI job and
# `llama98-harness build --target watcom-win32`, or llama98 (i386 Linux, a
# static ELF the tiny686 guest runs) for `--target watcom-tiny686`.
#
#   wmake -h -f ports/llama98/watcom.mk SRC=ports/llama98 [OS=nt|linux] [QDOT=mmx|c]
#
# Objects and the binary go to the current directory; sources are read
# from SRC.  Written from the OpenWatcom documentation:
#   -bt=nt        build target Win32      system nt      link for Win32
#   -bt=linux     build target i386 Linux system linux   link a static ELF
#   -za           ANSI C89, no extensions  -wx -we       all warnings, as errors
#   -6r -fp6      Pentium Pro/II code, register calls, P6 x87 instructions
#   -ox -s        full optimisation, no stack-overflow checks
#   runtime console=4.0   PE subsystem version 4.0 (Windows 98 refuses newer)
# OS picks the system (nt, the default, or linux); both take the same
# compiler flags, so the Linux binary runs the code OpenWatcom generates for
# Windows 98 in the tiny686 guest.  QDOT picks the integer dot products
# (qdot.h): mmx, the default (qdot_mmx.c with the _asm kernels of
# qdot_mmx_wat.c), or c (qdot.c, portable C89).  DEFINES: extra -d flags
# from the harness (test variants); empty for real builds.
# llama98.c, timer.c, sysmem.c and bpetool.c include <io.h>/<windows.h> on
# Win32, which need the Watcom extensions, so they are built without -za
# (still -wx -we); so is qdot_mmx_wat.c, the MMX kernels in _asm blocks.
# Every other file is ANSI C89 (-za).
#
# wmake cannot include the GNU make list of the sources (sources.mk, which
# gcc.mk and mingw.mk share), so OBJS below lists them again (with QDOT=mmx):
# a new source goes into both, with its rule here
# (tests/port/test_sources_lists.py checks the lists agree).  forward.c takes
# the same flags as the rest (gcc.mk's -fexcess-precision=fast is a GCC
# option).  Every macro has a plain default here: only the command line
# overrides it, never the environment.

SRC = .
OS = nt
QDOT = mmx
DEFINES =
CC = wcl386
WARN = -wx -we -zq
TARGET = -bt=$(OS) -6r -fp6 -ox -s
CFLAGS = $(TARGET) $(WARN) -i=$(SRC) $(DEFINES)
STRICT = -za

OBJS = llama98.obj header.obj weights.obj forward.obj report.obj wfile.obj sysmem.obj tokenizer.obj bpe.obj unicode_tables.obj sampler.obj timer.obj u64.obj util.obj crc32.obj qdot_mmx.obj qdot_mmx_wat.obj

!ifeq OS nt
EXE = llama98.exe
BPETOOL = bpetool.exe
SYSTEM = system nt runtime console=4.0
!else ifeq OS linux
EXE = llama98
BPETOOL = bpetool
SYSTEM = system linux
!else
!error unknown OS $(OS): use nt or linux
!endif

!ifeq QDOT mmx
LINK_OBJS = $(OBJS)
!else ifeq QDOT c
LINK_OBJS = $(OBJS:qdot_mmx.obj qdot_mmx_wat.obj=qdot.obj)
!else
!error unknown QDOT $(QDOT): use mmx or c
!endif

all: $(EXE) .SYMBOLIC

$(EXE): $(LINK_OBJS)
	wlink option quiet $(SYSTEM) name $@ file { $(LINK_OBJS) }

# The compiler command and flags, for `llama98-harness build` (compile_flags).
print-cflags: .SYMBOLIC
	@echo "$(CC) $(CFLAGS) (ANSI C89 files add: $(STRICT); link: wlink $(SYSTEM))"

llama98.obj: $(SRC)/llama98.c
	$(CC) -c $(CFLAGS) -fo=$@ $[@

timer.obj: $(SRC)/timer.c
	$(CC) -c $(CFLAGS) -fo=$@ $[@

sysmem.obj: $(SRC)/sysmem.c
	$(CC) -c $(CFLAGS) -fo=$@ $[@

wfile.obj: $(SRC)/wfile.c
	$(CC) -c $(STRICT) $(CFLAGS) -fo=$@ $[@

header.obj: $(SRC)/header.c
	$(CC) -c $(STRICT) $(CFLAGS) -fo=$@ $[@

weights.obj: $(SRC)/weights.c
	$(CC) -c $(STRICT) $(CFLAGS) -fo=$@ $[@

forward.obj: $(SRC)/forward.c
	$(CC) -c $(STRICT) $(CFLAGS) -fo=$@ $[@

report.obj: $(SRC)/report.c
	$(CC) -c $(STRICT) $(CFLAGS) -fo=$@ $[@

tokenizer.obj: $(SRC)/tokenizer.c
	$(CC) -c $(STRICT) $(CFLAGS) -fo=$@ $[@

sampler.obj: $(SRC)/sampler.c
	$(CC) -c $(STRICT) $(CFLAGS) -fo=$@ $[@

u64.obj: $(SRC)/u64.c
	$(CC) -c $(STRICT) $(CFLAGS) -fo=$@ $[@

util.obj: $(SRC)/util.c
	$(CC) -c $(STRICT) $(CFLAGS) -fo=$@ $[@

# bpetool.exe: the test driver of the byte-level BPE tokenizer (bpe.c).
bpetool.exe: bpetool.obj bpe.obj unicode_tables.obj util.obj crc32.obj
	wlink option quiet $(SYSTEM) name $(BPETOOL) file { bpetool.obj bpe.obj unicode_tables.obj util.obj crc32.obj }

bpetool.obj: $(SRC)/bpetool.c
	$(CC) -c $(CFLAGS) -fo=$@ $[@

bpe.obj: $(SRC)/bpe.c
	$(CC) -c $(STRICT) $(CFLAGS) -fo=$@ $[@

unicode_tables.obj: $(SRC)/unicode_tables.c
	$(CC) -c $(STRICT) $(CFLAGS) -fo=$@ $[@

qdot_mmx.obj: $(SRC)/qdot_mmx.c
	$(CC) -c $(STRICT) $(CFLAGS) -fo=$@ $[@

qdot_mmx_wat.obj: $(SRC)/qdot_mmx_wat.c
	$(CC) -c $(CFLAGS) -fo=$@ $[@

qdot.obj: $(SRC)/qdot.c
	$(CC) -c $(STRICT) $(CFLAGS) -fo=$@ $[@

crc32.obj: $(SRC)/crc32.c
	$(CC) -c $(STRICT) $(CFLAGS) -fo=$@ $[@

clean: .SYMBOLIC
	rm -f *.obj llama98.exe llama98 bpetool.exe bpetool
