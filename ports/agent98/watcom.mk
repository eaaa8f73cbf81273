# watcom.mk - build agent98.exe (Win32 console, Windows 95/98/NT 4.0 and
# later) with OpenWatcom's wmake and wcl386, for the nightly CI job and
# `llama98-harness build --target watcom-win32 --program agent98`.
#
#   wmake -h -f ports/agent98/watcom.mk SRC=ports/agent98
#
# The objects and agent98.exe go to the current directory; the source is
# read from SRC, and u64.c and crc32.c (shared with the llama98 port) from
# SHARED (default SRC/../llama98).  OS is nt, the only system agent98 is
# for (the harness passes llama98's OS and QDOT to both makefiles); DEFINES:
# extra -d flags from the harness, empty for real builds.  From the
# OpenWatcom documentation:
#   -bt=nt        build target Win32 (links with system nt)
#   -wx -we       all warnings, treated as errors
#   -6r           Pentium Pro/II code, register calling convention
#   -ox -s        full optimisation, no stack-overflow checks
#   runtime console=4.0   PE subsystem version 4.0 (Windows 98 refuses newer)
# agent98.c includes <windows.h>, which needs the Watcom extensions, so it is
# built without -za (ANSI only; the MinGW build enforces C89 with gcc's
# -std=c89 -pedantic-errors).  The program imports only KERNEL32.DLL (the
# Watcom C runtime is linked statically); USER32's ExitWindowsEx is looked up
# at run time.

SRC = .
SHARED = $(SRC)/../llama98
OS = nt
DEFINES =
CC = wcl386
WARN = -wx -we -zq
TARGET = -bt=nt -6r -ox -s
CFLAGS = $(TARGET) $(WARN) -i=$(SRC) -i=$(SHARED) $(DEFINES)

!ifneq OS nt
!error agent98 is a Win32 program: OS must be nt, not $(OS)
!endif
STRICT = -za

OBJS = agent98.obj u64.obj crc32.obj

all: agent98.exe .SYMBOLIC

agent98.exe: $(OBJS)
	wlink option quiet system nt runtime console=4.0 name $@ file { $(OBJS) }

agent98.obj: $(SRC)/agent98.c
	$(CC) -c $(CFLAGS) -fo=$@ $[@

u64.obj: $(SHARED)/u64.c
	$(CC) -c $(STRICT) $(CFLAGS) -fo=$@ $[@

crc32.obj: $(SHARED)/crc32.c
	$(CC) -c $(STRICT) $(CFLAGS) -fo=$@ $[@

clean: .SYMBOLIC
	rm -f *.obj agent98.exe
