# gcc.mk - build llama98 with GCC (GNU make).
#
#   make -f gcc.mk [TARGET=native|native-asan|tiny686] [QDOT=c|mmx] [SRC=dir] [OUT=path]
#
# Run it from any directory: objects and the binary go to the current
# directory (or OUT), the sources are read from SRC (default: the directory
# of this file), so a checkout is never written to.
#
#   native       gcc -O2, for tests on the host
#   native-asan  AddressSanitizer + UBSan, aborting on the first report
#   tiny686      gcc -m32 -march=pentium2 -O2 -static, for the i386 guest
#
# QDOT picks the integer dot products of the quantized matmuls (qdot.h):
# mmx (qdot_mmx.c, the default for tiny686) or c (qdot.c, portable C89,
# the default for the x86-64 targets and the only choice there).
#
# model.c (the forward pass) is built with -fexcess-precision=fast on the
# x87 target: with -std=c89 GCC otherwise spills every float to memory to
# round it, which costs a third of the instructions per token.  sampler.c
# keeps strict rounding because sampling decisions compare float sums.
# LLAMA98_FLOAT_LIBM: glibc has expf/cosf/sinf/powf, use them as llama2.c
# does (fmath.h says why).

SRC ?= $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
TARGET ?= native
CC = gcc
STRICT = -std=c89 -pedantic-errors -Wall -Wextra -Wdeclaration-after-statement -Werror

ifeq ($(TARGET),native)
ARCH =
OPT = -O2
FASTFP =
LDFLAGS =
else ifeq ($(TARGET),native-asan)
ARCH =
OPT = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
FASTFP =
LDFLAGS = -fsanitize=address,undefined
else ifeq ($(TARGET),tiny686)
ARCH = -m32 -march=pentium2
OPT = -O2
FASTFP = -fexcess-precision=fast
LDFLAGS = -static
QDOT ?= mmx
else
$(error unknown TARGET '$(TARGET)': use native, native-asan or tiny686)
endif

QDOT ?= c
ifeq ($(QDOT),mmx)
QDOT_NAME = qdot_mmx qdot_mmx_gcc
else ifeq ($(QDOT),c)
QDOT_NAME = qdot
else
$(error unknown QDOT '$(QDOT)': use c or mmx)
endif

OUT ?= llama98
NAMES = llama98 model wfile sysmem tokenizer bpe unicode_tables sampler timer u64 util crc32 $(QDOT_NAME)
OBJS = $(addsuffix .o,$(NAMES))
HEADERS = $(wildcard $(SRC)/*.h)
# DEFINES: extra -D flags from the harness (test variants such as LLAMA98_FORK_STYLE); empty for real builds.
CFLAGS = $(STRICT) $(ARCH) $(OPT) -DLLAMA98_FLOAT_LIBM $(DEFINES)

all: $(OUT)

# bpetool: the test driver of the byte-level BPE tokenizer (bpe.c, which
# llama98 also links): `make -f gcc.mk bpetool`.
BPE_NAMES = bpetool bpe unicode_tables util crc32
BPE_OBJS = $(addsuffix .o,$(BPE_NAMES))

bpetool: $(BPE_OBJS)
	$(CC) $(ARCH) $(OPT) -o $@ $(BPE_OBJS) $(LDFLAGS)

$(OUT): $(OBJS)
	$(CC) $(ARCH) $(OPT) -o $@ $(OBJS) $(LDFLAGS) -lm

model.o: $(SRC)/model.c $(HEADERS)
	$(CC) $(CFLAGS) $(FASTFP) -c -o $@ $<

%.o: $(SRC)/%.c $(HEADERS)
	$(CC) $(CFLAGS) -c -o $@ $<

# The flags this build compiles with, for the harness's records of what a figure was measured with.
print-cflags:
	@echo "$(CC) $(CFLAGS) (model.c adds: $(FASTFP); link: $(LDFLAGS))"

clean:
	rm -f $(OBJS) $(OUT) $(BPE_OBJS) bpetool

.PHONY: all clean print-cflags
