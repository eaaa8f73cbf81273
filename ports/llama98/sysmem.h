/* sysmem.h - how much memory the machine can give this run, for the
 * default memory budget (-M): the port keeps a model resident when it fits
 * and streams it from disk otherwise. */
#ifndef LLAMA98_SYSMEM_H
#define LLAMA98_SYSMEM_H

/* Bytes of physical memory a new allocation can use without paging, or a
 * negative value when the system does not say (then nothing is streamed
 * unless -M asks). */
double sysmem_available(void);

#endif
