# watcom.mk - build llama98.exe (Win32 console, Windows 95/98/NT 4.0 and
# later) with OpenWatcom's wmake and wcl386, for the nightly CI job.
#
#   wmake -f ports\llama98\watcom.mk SRC=ports\llama98
#
# Objects and llama98.exe go to the current directory; sources are read
# from SRC.  Written from the OpenWatcom documentation:
#   -bt=nt        build target Win32      -l=nt / system nt  link for Win32
#   -za           ANSI C89, no extensions  -wx -we           all warnings, as errors
#   -6r -fp6      Pentium Pro/II code, register calls, P6 x87 instructions
#   -ox -s        full optimisation, no stack-overflow checks
#   runtime console=4.0   PE subsystem version 4.0 (Windows 98 refuses newer)
# llama98.c, timer.c, sysmem.c and bpetool.c include <io.h>/<windows.h>,
# which need the Watcom extensions, so they are built without -za (still
# -wx -we); so is qdot_mmx_wat.c, the MMX kernels in _asm blocks (qdot.c is
# the C89 alternative).  Every other file is ANSI C89 (-za).
#
# wmake cannot include the GNU make list of the sources (sources.mk, which
# gcc.mk and mingw.mk share), so OBJS below lists them again: a new source
# goes into both, with its rule here (tests/port/test_sources_lists.py checks
# the lists agree).  forward.c takes the same flags as the rest (gcc.mk's
# -fexcess-precision=fast is a GCC option).

SRC = .
CC = wcl386
WARN = -wx -we -zq
TARGET = -bt=nt -6r -fp6 -ox -s
CFLAGS = $(TARGET) $(WARN) -i=$(SRC)
STRICT = -za

OBJS = llama98.obj header.obj weights.obj forward.obj report.obj wfile.obj sysmem.obj tokenizer.obj bpe.obj unicode_tables.obj sampler.obj timer.obj u64.obj util.obj crc32.obj qdot_mmx.obj qdot_mmx_wat.obj

all: llama98.exe .SYMBOLIC

llama98.exe: $(OBJS)
	wlink option quiet system nt runtime console=4.0 name $@ file { $(OBJS) }

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
	wlink option quiet system nt runtime console=4.0 name $@ file { bpetool.obj bpe.obj unicode_tables.obj util.obj crc32.obj }

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

crc32.obj: $(SRC)/crc32.c
	$(CC) -c $(STRICT) $(CFLAGS) -fo=$@ $[@

clean: .SYMBOLIC
	rm -f *.obj llama98.exe bpetool.exe
