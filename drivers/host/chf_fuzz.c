/*
 * chf_fuzz.c - libFuzzer target for the content interpreter.
 *
 * Each input is placed like a driver places a channel file (ending in front
 * of a guard page) and evaluated against the synthetic named-pipe event with
 * poisoned guard slots, so the vulnerable build crashes here on the same
 * inputs that crash the kernel.  The hardened build must never crash.
 *
 * Checksum fix-up: a random mutation almost never keeps the CRC-32 right, and
 * both builds reject a CRC mismatch before anything interesting happens.  So,
 * as is usual for checksummed formats, the target rewrites the header's crc32
 * over the body bytes present before loading (define CHF_FUZZ_KEEP_CRC to
 * fuzz the raw bytes instead).  A reproducer the fuzzer saves is therefore
 * the pre-fix-up input: run `harness content fix-crc` on it, or feed it to
 * this target again, to replay it.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../common/chf_interp.h"
#include "guarded.h"

#define MAX_INPUT (1u << 20)

static void *fz_alloc(uint32_t size, void *ctx)
{
	(void)ctx;
	return malloc(size);
}

static void fz_free(void *ptr, void *ctx)
{
	(void)ctx;
	free(ptr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct chf_env env = { fz_alloc, fz_free, NULL };
	static struct guarded_region region;
	static void *poison;
	static struct chf_value values[CHF_INPUTS];
	static const struct chf_value *slots[CHF_INPUT_SLOTS];
	struct chf_content content;
	struct chf_result res;
	struct chf_eval eval;
	uint8_t *buf;

	if (!region.base) {
		if (guarded_map(&region, MAX_INPUT) != 0)
			abort();
		poison = guarded_poison_page();
		if (!poison)
			abort();
		chf_synthetic_event(values);
		chf_slots_init(slots, values, (const struct chf_value *)poison);
	}
	if (size > MAX_INPUT)
		return 0;
	buf = guarded_place(&region, data, size);
#ifndef CHF_FUZZ_KEEP_CRC
	if (size >= CHF_HEADER_SIZE) {
		uint32_t crc = chf_crc32(buf + CHF_HEADER_SIZE,
					 (uint32_t)(size - CHF_HEADER_SIZE));

		buf[20] = (uint8_t)crc;
		buf[21] = (uint8_t)(crc >> 8);
		buf[22] = (uint8_t)(crc >> 16);
		buf[23] = (uint8_t)(crc >> 24);
	}
#endif
	if (chf_load(&env, buf, (uint32_t)size, &content, &res) == CHF_LOADED) {
		chf_evaluate(&content, slots, &eval);
		chf_unload(&env, &content);
	}
	return 0;
}
