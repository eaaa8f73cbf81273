/* qdot_mmx_wat.c - the MMX kernels of qdot_mmx.h in OpenWatcom _asm
 * blocks.  Compiled only by OpenWatcom (watcom.mk); any other compiler sees
 * an empty unit.  The portable C89 path, qdot.c, gives the same integer
 * sums and stays tested. */
#include "qdot_mmx.h"

#if defined(__WATCOMC__)

long mmx_block_sum_x256(const short *x, const signed char *w, int blocks)
{
    long sum;
    long s32 = 0; /* set by movd in the _asm block, which OpenWatcom does not see (W200) */
    _asm {
        mov esi, w
        mov edi, x
        mov ecx, blocks
        pxor mm7, mm7
    next16:
        pxor mm0, mm0
        pxor mm1, mm1
        punpcklbw mm0, [esi]
        punpcklbw mm1, [esi + 4]
        pmaddwd mm0, [edi]
        pmaddwd mm1, [edi + 8]
        paddd mm7, mm0
        paddd mm7, mm1
        pxor mm0, mm0
        pxor mm1, mm1
        punpcklbw mm0, [esi + 8]
        punpcklbw mm1, [esi + 12]
        pmaddwd mm0, [edi + 16]
        pmaddwd mm1, [edi + 24]
        paddd mm7, mm0
        paddd mm7, mm1
        add esi, 16
        add edi, 32
        dec ecx
        jnz next16
        movq mm0, mm7
        psrlq mm0, 32
        paddd mm7, mm0
        movd s32, mm7
        emms
    }
    sum = s32;
    return sum;
}

void mmx_row_groups_x256(const short *x, const signed char *w, int groups, int group, long *sums)
{
    long s32 = 0; /* set by movd in the _asm block, which OpenWatcom does not see (W200) */
    int g;
    for (g = 0; g < groups; g++) {
        const short *xg = x + (long)g * group;
        const signed char *wg = w + (long)g * group;
        int blocks = group / 16;
        _asm {
            mov esi, wg
            mov edi, xg
            mov ecx, blocks
            pxor mm7, mm7
        next16:
            pxor mm0, mm0
            pxor mm1, mm1
            punpcklbw mm0, [esi]
            punpcklbw mm1, [esi + 4]
            pmaddwd mm0, [edi]
            pmaddwd mm1, [edi + 8]
            paddd mm7, mm0
            paddd mm7, mm1
            pxor mm0, mm0
            pxor mm1, mm1
            punpcklbw mm0, [esi + 8]
            punpcklbw mm1, [esi + 12]
            pmaddwd mm0, [edi + 16]
            pmaddwd mm1, [edi + 24]
            paddd mm7, mm0
            paddd mm7, mm1
            add esi, 16
            add edi, 32
            dec ecx
            jnz next16
            movq mm0, mm7
            psrlq mm0, 32
            paddd mm7, mm0
            psrad mm7, 8
            movd s32, mm7
            emms
        }
        sums[g] = s32;
    }
}

long mmx_t2_quads(const short *x, const unsigned char *packed, int quads)
{
    long sum;
    long s32 = 0; /* set by movd in the _asm block, which OpenWatcom does not see (W200) */
    short *table = &qdot_t2_lanes[0][0];
    _asm {
        mov esi, packed
        mov edi, x
        mov ecx, quads
        mov edx, table
        pxor mm7, mm7
    next8:
        movzx eax, byte ptr [esi]
        movzx ebx, byte ptr [esi + 1]
        movq mm0, [edx + eax * 8]
        movq mm1, [edx + ebx * 8]
        pmaddwd mm0, [edi]
        pmaddwd mm1, [edi + 8]
        paddd mm7, mm0
        paddd mm7, mm1
        movzx eax, byte ptr [esi + 2]
        movzx ebx, byte ptr [esi + 3]
        movq mm0, [edx + eax * 8]
        movq mm1, [edx + ebx * 8]
        pmaddwd mm0, [edi + 16]
        pmaddwd mm1, [edi + 24]
        paddd mm7, mm0
        paddd mm7, mm1
        movzx eax, byte ptr [esi + 4]
        movzx ebx, byte ptr [esi + 5]
        movq mm0, [edx + eax * 8]
        movq mm1, [edx + ebx * 8]
        pmaddwd mm0, [edi + 32]
        pmaddwd mm1, [edi + 40]
        paddd mm7, mm0
        paddd mm7, mm1
        movzx eax, byte ptr [esi + 6]
        movzx ebx, byte ptr [esi + 7]
        movq mm0, [edx + eax * 8]
        movq mm1, [edx + ebx * 8]
        pmaddwd mm0, [edi + 48]
        pmaddwd mm1, [edi + 56]
        paddd mm7, mm0
        paddd mm7, mm1
        add esi, 8
        add edi, 64
        dec ecx
        jnz next8
        movq mm0, mm7
        psrlq mm0, 32
        paddd mm7, mm0
        movd s32, mm7
        emms
    }
    sum = s32;
    return sum;
}

#else
typedef int qdot_mmx_wat_needs_openwatcom; /* C89 forbids an empty unit */
#endif
