# mingw.mk - build llama98.exe, a Win32 console program for Windows 98, with
# MinGW-w64 (GNU make).
#
#   make -f mingw.mk [QDOT=mmx|c] [SRC=dir] [OUT=path] [CC=i686-w64-mingw32-gcc]
#
# Objects and the binary go to the current directory (or OUT); sources are
# read from SRC (default: the directory of this file) and listed in
# sources.mk (shared with gcc.mk).  Only the command line changes the build:
# the defaults below are plain assignments, which an exported environment
# variable (OUT, QDOT, DEFINES, CFLAGS, ...) does not override.
# - subsystem and OS version 4.0, so Windows 95/98/NT4 accept the PE header;
# - libgcc linked statically, so the program imports only KERNEL32.dll and
#   msvcrt.dll (checked by tests/unit/port/test_build.py);
# - __USE_MINGW_ANSI_STDIO=0: printf and its %f formatting come from
#   msvcrt.dll itself, the C library the program meets on Windows 98, not
#   from MinGW's static replacement (the default with -std=c89, kept explicit);
# - forward.c, the forward pass, and only it with -fexcess-precision=fast
#   (FASTFP) for the x87 (see gcc.mk);
# - QDOT=mmx (default): the MMX dot products of qdot_mmx.c; QDOT=c: qdot.c.

# := and first: the directory of this file, before any include changes MAKEFILE_LIST.
SRC := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
CC = i686-w64-mingw32-gcc
STRICT = -std=c89 -pedantic-errors -Wall -Wextra -Wdeclaration-after-statement -Werror
ARCH = -march=pentium2
OPT = -O2
DEFS = -D__USE_MINGW_ANSI_STDIO=0
# DEFINES: extra -D flags from the harness (the test variants of variants.h); empty for real builds.
DEFINES =
FASTFP = -fexcess-precision=fast
LDFLAGS = -static-libgcc -mconsole \
	-Wl,--major-subsystem-version,4,--minor-subsystem-version,0 \
	-Wl,--major-os-version,4,--minor-os-version,0

QDOT = mmx
include $(SRC)/sources.mk

OUT = llama98.exe
OBJS = $(addsuffix .o,$(NAMES))
HEADERS = $(wildcard $(SRC)/*.h)
CFLAGS = $(STRICT) $(ARCH) $(OPT) $(DEFS) $(DEFINES)

all: $(OUT)

# bpetool: `make -f mingw.mk bpetool.exe`.
BPE_OBJS = $(addsuffix .o,$(BPE_NAMES))

bpetool.exe: $(BPE_OBJS)
	$(CC) $(ARCH) $(OPT) -o $@ $(BPE_OBJS) $(LDFLAGS)

$(OUT): $(OBJS)
	$(CC) $(ARCH) $(OPT) -o $@ $(OBJS) $(LDFLAGS)

forward.o: $(SRC)/forward.c $(HEADERS)
	$(CC) $(CFLAGS) $(FASTFP) -c -o $@ $<

%.o: $(SRC)/%.c $(HEADERS)
	$(CC) $(CFLAGS) -c -o $@ $<

# The flags this build compiles with, for the harness's records of what a figure was measured with.
print-cflags:
	@echo "$(CC) $(CFLAGS) (forward.c adds: $(FASTFP); link: $(LDFLAGS))"

clean:
	rm -f $(OBJS) $(OUT) $(BPE_OBJS) bpetool.exe

.PHONY: all clean print-cflags
