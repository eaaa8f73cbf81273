# mingw.mk - build agent98.exe, the serial command agent for Windows 98, with
# MinGW-w64 (GNU make).
#
#   make -f mingw.mk [SRC=dir] [OUT=path] [CC=i686-w64-mingw32-gcc]
#
# The objects and the binary go to the current directory (or OUT); the source
# is read from SRC (default: the directory of this file), and the 64-bit
# helpers and the CRC-32 from SHARED (default: SRC/../llama98), the llama98
# port's own u64.c and crc32.c, so both programs use one copy.
# - the same strict C89 flags as the llama98 port, for a Pentium II;
# - subsystem and OS version 4.0, so Windows 95/98/NT4 accept the PE header;
# - libgcc linked statically, so the program imports only KERNEL32.dll and
#   msvcrt.dll (checked by tests/port/test_agent98.py with objdump -p);
# - __USE_MINGW_ANSI_STDIO=0: printf comes from msvcrt.dll itself.
# Only the command line changes the build: the defaults below are plain
# assignments, which an exported environment variable (OUT, SHARED, CFLAGS,
# ...) does not override.  Three objects, one makefile per compiler: the
# list is not shared with watcom.mk (wmake cannot include a GNU make file).

# := and first: the directory of this file, before any include changes MAKEFILE_LIST.
SRC := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
CC = i686-w64-mingw32-gcc
STRICT = -std=c89 -pedantic-errors -Wall -Wextra -Wdeclaration-after-statement -Werror
ARCH = -march=pentium2
OPT = -O2
DEFS = -D__USE_MINGW_ANSI_STDIO=0
LDFLAGS = -static-libgcc -mconsole \
	-Wl,--major-subsystem-version,4,--minor-subsystem-version,0 \
	-Wl,--major-os-version,4,--minor-os-version,0

SHARED = $(SRC)/../llama98
OUT = agent98.exe
OBJS = agent98.o u64.o crc32.o
CFLAGS = $(STRICT) $(ARCH) $(OPT) $(DEFS) -I$(SHARED)

all: $(OUT)

$(OUT): $(OBJS)
	$(CC) $(ARCH) $(OPT) -o $@ $(OBJS) $(LDFLAGS)

agent98.o: $(SRC)/agent98.c $(SHARED)/u64.h $(SHARED)/crc32.h
	$(CC) $(CFLAGS) -c -o $@ $<

%.o: $(SHARED)/%.c $(SHARED)/%.h
	$(CC) $(CFLAGS) -c -o $@ $<

clean:
	rm -f $(OBJS) $(OUT)

.PHONY: all clean
