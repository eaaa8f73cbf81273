# mingw.mk - build agent98.exe, the serial command agent for Windows 98, with
# MinGW-w64 (GNU make).
#
#   make -f mingw.mk [SRC=dir] [OUT=path] [CC=i686-w64-mingw32-gcc]
#
# The object and the binary go to the current directory (or OUT); the source
# is read from SRC (default: the directory of this file).
# - the same strict C89 flags as the llama98 port, for a Pentium II;
# - subsystem and OS version 4.0, so Windows 95/98/NT4 accept the PE header;
# - libgcc linked statically, so the program imports only KERNEL32.dll and
#   msvcrt.dll (checked by tests/test_agent98.py with objdump -p);
# - __USE_MINGW_ANSI_STDIO=0: printf comes from msvcrt.dll itself.

SRC ?= $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
CC = i686-w64-mingw32-gcc
STRICT = -std=c89 -pedantic-errors -Wall -Wextra -Wdeclaration-after-statement -Werror
ARCH = -march=pentium2
OPT = -O2
DEFS = -D__USE_MINGW_ANSI_STDIO=0
LDFLAGS = -static-libgcc -mconsole \
	-Wl,--major-subsystem-version,4,--minor-subsystem-version,0 \
	-Wl,--major-os-version,4,--minor-os-version,0

OUT ?= agent98.exe
CFLAGS = $(STRICT) $(ARCH) $(OPT) $(DEFS)

all: $(OUT)

$(OUT): agent98.o
	$(CC) $(ARCH) $(OPT) -o $@ agent98.o $(LDFLAGS)

agent98.o: $(SRC)/agent98.c
	$(CC) $(CFLAGS) -c -o $@ $<

clean:
	rm -f agent98.o $(OUT)

.PHONY: all clean
