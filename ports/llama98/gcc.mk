# gcc.mk - build llama98 with GCC (GNU make).
#
#   make -f gcc.mk [TARGET=native|native-asan|tiny686] [QDOT=c|mmx] [SRC=dir] [OUT=path]
#
# Run it from any directory: objects and the binary go to the current
# directory (or OUT), the sources are read from SRC (default: the directory
# of this file), so a checkout is never written to.  The sources are listed
# in sources.mk (shared with mingw.mk).
#
# Only the command line changes the build: every variable has a plain
# default here, which make lets a command-line VAR=value override but not an
# exported environment variable (OUT, QDOT, DEFINES, CFLAGS, ...).
#
#   native       gcc -O2, for tests on the host
#   native-asan  AddressSanitizer + UBSan, aborting on the first report
#   tiny686      gcc -m32 -march=pentium2 -O2 -static, for the i386 guest
#
# QDOT picks the integer dot products of the quantized matmuls (qdot.h):
# mmx (qdot_mmx.c, the default for tiny686) or c (qdot.c, portable C89,
# the default for the x86-64 targets and the only choice there).
#
# forward.c (the forward pass), and only it, is built with
# -fexcess-precision=fast (FASTFP) on the x87 target: with -std=c89 GCC
# otherwise spills every float to memory to round it, which costs a third of
# the instructions per token; the values that must round do it explicitly
# (round_float).  Reading the header and placing the weights (header.c,
# weights.c) and sampler.c keep strict rounding: sampling decisions compare
# float sums.
# LLAMA98_FLOAT_LIBM: glibc has expf/cosf/sinf/powf, use them as llama2.c
# does (fmath.h says why).

# := and first: the directory of this file, before any include changes MAKEFILE_LIST.
SRC := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
TARGET = native
CC = gcc
STRICT = -std=c89 -pedantic-errors -Wall -Wextra -Wdeclaration-after-statement -Werror
# DEFINES: extra -D flags from the harness (the test variants of variants.h); empty for real builds.
DEFINES =

ifeq ($(TARGET),native)
ARCH =
OPT = -O2
FASTFP =
LDFLAGS =
QDOT_DEFAULT = c
else ifeq ($(TARGET),native-asan)
ARCH =
OPT = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
FASTFP =
LDFLAGS = -fsanitize=address,undefined
QDOT_DEFAULT = c
else ifeq ($(TARGET),tiny686)
ARCH = -m32 -march=pentium2
OPT = -O2
FASTFP = -fexcess-precision=fast
LDFLAGS = -static
QDOT_DEFAULT = mmx
else
$(error unknown TARGET '$(TARGET)': use native, native-asan or tiny686)
endif

# The target's choice unless the command line says QDOT=.
QDOT = $(QDOT_DEFAULT)
include $(SRC)/sources.mk

OUT = llama98
OBJS = $(addsuffix .o,$(NAMES))
HEADERS = $(wildcard $(SRC)/*.h)
CFLAGS = $(STRICT) $(ARCH) $(OPT) -DLLAMA98_FLOAT_LIBM $(DEFINES)

all: $(OUT)

# bpetool: `make -f gcc.mk bpetool`.
BPE_OBJS = $(addsuffix .o,$(BPE_NAMES))

bpetool: $(BPE_OBJS)
	$(CC) $(ARCH) $(OPT) -o $@ $(BPE_OBJS) $(LDFLAGS)

$(OUT): $(OBJS)
	$(CC) $(ARCH) $(OPT) -o $@ $(OBJS) $(LDFLAGS) -lm

forward.o: $(SRC)/forward.c $(HEADERS)
	$(CC) $(CFLAGS) $(FASTFP) -c -o $@ $<

%.o: $(SRC)/%.c $(HEADERS)
	$(CC) $(CFLAGS) -c -o $@ $<

# The flags this build compiles with, for the harness's records of what a figure was measured with.
print-cflags:
	@echo "$(CC) $(CFLAGS) (forward.c adds: $(FASTFP); link: $(LDFLAGS))"

clean:
	rm -f $(OBJS) $(OUT) $(BPE_OBJS) bpetool

.PHONY: all clean print-cflags
