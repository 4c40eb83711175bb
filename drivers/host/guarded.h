/*
 * guarded.h - user-space stand-ins for the drivers' memory placement.
 *
 * The kernel drivers place a channel file's bytes so that they end at a page
 * boundary in front of an unmapped guard page, and fill the input guard slots
 * with a pointer that faults when read.  The host build does the same with
 * mmap/mprotect, so the vulnerable interpreter faults here exactly where it
 * would fault in a kernel: not a simulation, the same C code and a real SIGSEGV.
 */
#ifndef HARNESS_GUARDED_H
#define HARNESS_GUARDED_H

#include <stddef.h>
#include <stdint.h>

struct guarded_region {
	uint8_t *base;  /* start of the mapping */
	size_t mapped;  /* readable bytes before the guard page */
	size_t total;   /* mapped + one guard page */
	uint8_t *guard; /* first byte of the guard page */
};

/* Map a region able to hold `capacity` bytes, followed by a PROT_NONE page. */
int guarded_map(struct guarded_region *r, size_t capacity);
void guarded_unmap(struct guarded_region *r);

/* Copy data so that its last byte is the last byte before the guard page. */
uint8_t *guarded_place(struct guarded_region *r, const void *data, size_t n);

/* One PROT_NONE page: reading it faults.  Returns NULL on failure. */
void *guarded_poison_page(void);


#endif
