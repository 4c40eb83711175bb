#define _DEFAULT_SOURCE
#include "guarded.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static size_t page_size(void)
{
	long p = sysconf(_SC_PAGESIZE);

	return p > 0 ? (size_t)p : 4096u;
}

int guarded_map(struct guarded_region *r, size_t capacity)
{
	size_t page = page_size();
	size_t mapped = (capacity + page - 1) / page * page;
	void *base;

	if (mapped == 0)
		mapped = page;
	base = mmap(NULL, mapped + page, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		return -1;
	r->base = base;
	r->mapped = mapped;
	r->total = mapped + page;
	r->guard = r->base + mapped;
	if (mprotect(r->guard, page, PROT_NONE) != 0) {
		munmap(base, r->total);
		return -1;
	}
	return 0;
}

void guarded_unmap(struct guarded_region *r)
{
	if (r->base)
		munmap(r->base, r->total);
	r->base = NULL;
}

uint8_t *guarded_place(struct guarded_region *r, const void *data, size_t n)
{
	uint8_t *dst = r->guard - n;

	if (n > r->mapped)
		return NULL;
	if (n)
		memcpy(dst, data, n);
	return dst;
}

void *guarded_poison_page(void)
{
	void *p = mmap(NULL, page_size(), PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}
