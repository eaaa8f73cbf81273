# sources.mk - the sources of llama98 and bpetool, written once for the GNU
# make builds: gcc.mk and mingw.mk include it after setting QDOT.
#
# Each name is a NAME.c in SRC, built to NAME.o.  watcom.mk cannot include a
# GNU make file and keeps its own OBJS list (with the MMX kernel, QDOT=mmx,
# and qdot_mmx_wat for qdot_mmx_gcc); a new source goes into both, which
# tests/port/test_sources_lists.py checks.  forward.c, the forward pass, is
# the one file the including makefiles compile with FASTFP.

# QDOT picks the integer dot products of the quantized matmuls (qdot.h):
# mmx, the MMX kernels (qdot_mmx.c and GCC's inline assembly,
# qdot_mmx_gcc.c), or c, the portable C89 ones (qdot.c).
ifeq ($(QDOT),mmx)
QDOT_NAME = qdot_mmx qdot_mmx_gcc
else ifeq ($(QDOT),c)
QDOT_NAME = qdot
else
$(error unknown QDOT '$(QDOT)': use c or mmx)
endif

# llama98
NAMES = llama98 header weights forward report wfile sysmem tokenizer bpe unicode_tables sampler timer u64 util crc32 $(QDOT_NAME)

# bpetool: the test driver of the byte-level BPE tokenizer (bpe.c, which
# llama98 also links).
BPE_NAMES = bpetool bpe unicode_tables util crc32
