/*
 * chf_interp.h - the sample sensor's content interpreter for channel files.
 *
 * Contract: shared/spec/channel-file-v1.md.  One source, two builds chosen at
 * compile time:
 *
 *   CHF_HARDENED=0  "vulnerable" (models sensor 7.11): checks header, magic,
 *                   version and CRC; trusts body_len, every len and the field
 *                   count; copies every payload while loading; evaluates
 *                   criterion i against input slot i for every i < criteria.
 *   CHF_HARDENED=1  "hardened" (models the fix): validates everything, rejects
 *                   a field count other than CHF_INPUTS, bounds-checks every
 *                   input index at run time, never crashes.
 *
 * Portable C: no OS calls, no libc.  The embedding (host program, Linux
 * module, Windows minifilter) provides memory through struct chf_env and
 * decides where the file's bytes live (the drivers place them so that they
 * end at a page boundary in front of an unmapped guard page).
 */
#ifndef CHF_INTERP_H
#define CHF_INTERP_H

#ifdef __KERNEL__
#include <linux/types.h>
#else
/* Freestanding headers: available to user space and to the Windows kernel
 * build alike (gcc and MSVC ship them with the compiler). */
#include <stddef.h>
#include <stdint.h>
#endif

#ifndef CHF_HARDENED
#error "define CHF_HARDENED to 0 (vulnerable build) or 1 (hardened build)"
#endif

#if CHF_HARDENED
#define CHF_BUILD_NAME "hardened"
#else
#define CHF_BUILD_NAME "vulnerable"
#endif

/* Keep the function that reads an input slot out of line, so a crash report
 * names it (chf_match_criterion) rather than the function it was inlined in. */
#if defined(_MSC_VER)
#define CHF_NOINLINE __declspec(noinline)
#else
#define CHF_NOINLINE __attribute__((__noinline__))
#endif

#define CHF_HEADER_SIZE 24u
#define CHF_MAGIC "CHF1"
#define CHF_VERSION 1u
#define CHF_TEMPLATE_NAMED_PIPE 1u

/* Input values the sensor supplies for one named-pipe event. */
#define CHF_INPUTS 20u
/*
 * Size of the input slot table.  Slots CHF_INPUTS and above are guard slots
 * holding a poisoned pointer, so that the vulnerable build's read of input 21
 * (index 20) - or of any index up to the 255 an instance can declare -
 * dereferences the poison and faults deterministically, instead of reading
 * whatever happens to lie behind a 20-entry array.
 */
#define CHF_INPUT_SLOTS 256u

enum chf_kind {
	CHF_KIND_WILDCARD = 0,
	CHF_KIND_EXACT = 1,
	CHF_KIND_PREFIX = 2,
};

enum chf_status {
	CHF_LOADED = 0,
	CHF_REJECTED = 1,
	CHF_NO_MEMORY = 2,
};

/* Why a file was rejected; stable codes shared with the Python toolkit. */
enum chf_reason {
	CHF_OK = 0,
	CHF_EMPTY_FILE,
	CHF_TRUNCATED_HEADER,
	CHF_BAD_MAGIC,
	CHF_BAD_VERSION,
	CHF_BODY_LEN_MISMATCH,	/* 24 + body_len != file size */
	CHF_BAD_CRC,
	CHF_FIELD_COUNT,	/* header fields != inputs the sensor supplies */
	CHF_TRUNCATED_INSTANCE, /* an instance or criterion header past the body */
	CHF_CRITERIA_COUNT,	/* instance criteria != header fields */
	CHF_BAD_KIND,
	CHF_WILDCARD_PAYLOAD,	/* wildcard with len != 0 */
	CHF_PAYLOAD_PAST_BODY,
	CHF_TRAILING_BYTES,	/* body holds bytes after the last instance */
	CHF_OUT_OF_MEMORY,
	CHF_REASON_COUNT
};

/* One input value of an event (a named-pipe attribute). */
struct chf_value {
	uint32_t len;
	const uint8_t *data;
};

struct chf_criterion {
	uint8_t kind;
	uint16_t len;
	uint8_t *pattern; /* compiled copy of the payload, env-allocated */
};

struct chf_instance {
	uint32_t id;
	uint8_t criteria;
	struct chf_criterion *crit; /* criteria entries */
	struct chf_instance *next;
};

struct chf_header {
	uint16_t version;
	uint16_t channel;
	uint16_t template_type;
	uint16_t fields;
	uint32_t instances;
	uint32_t body_len;
	uint32_t crc32;
};

struct chf_content {
	struct chf_header header;
	uint32_t instance_count; /* instances actually built */
	struct chf_instance *first;
};

struct chf_result {
	enum chf_status status;
	enum chf_reason reason;
	uint32_t offset;   /* file offset the reason refers to */
	uint32_t instance; /* instance index, where it applies */
	uint32_t criterion;/* criterion index, where it applies */
	char text[128];    /* one-line human reason, NUL-terminated */
};

struct chf_env {
	void *(*alloc)(uint32_t size, void *ctx); /* returns NULL on failure */
	void (*free)(void *ptr, void *ctx);
	void *ctx;
};

/* Result of evaluating one event against the loaded content. */
struct chf_eval {
	uint32_t instances;	/* instances evaluated */
	uint32_t matched;	/* instances whose every criterion matched */
	uint32_t criteria;	/* criteria evaluated (wildcards included) */
	uint32_t out_of_bounds; /* hardened: criteria refused by the bounds check */
};

/*
 * Load one channel file from buf[0..size).  On CHF_LOADED, *out owns
 * env-allocated memory (free it with chf_unload) and no longer refers to buf.
 * On CHF_REJECTED, res->reason and res->text say why and *out is empty.
 */
enum chf_status chf_load(const struct chf_env *env, const uint8_t *buf,
			 uint32_t size, struct chf_content *out,
			 struct chf_result *res);

void chf_unload(const struct chf_env *env, struct chf_content *content);

/*
 * Fill the slot table: slots[0..CHF_INPUTS) point at values[], every later
 * slot holds `poison`, a pointer that must fault when read.
 */
void chf_slots_init(const struct chf_value *slots[CHF_INPUT_SLOTS],
		    const struct chf_value values[CHF_INPUTS],
		    const struct chf_value *poison);

/* Evaluate every criterion of every instance against one event. */
void chf_evaluate(const struct chf_content *content,
		  const struct chf_value *const slots[CHF_INPUT_SLOTS],
		  struct chf_eval *out);

/* The 20 attributes of the synthetic named-pipe event every platform uses. */
void chf_synthetic_event(struct chf_value values[CHF_INPUTS]);

/*
 * Match one criterion against one input value.  This is the function that
 * reads an input slot, so it is where the vulnerable build faults on field
 * 21; it is external and never inlined so every crash report names it.
 */
CHF_NOINLINE int chf_match_criterion(const struct chf_criterion *cr,
				     const struct chf_value *v);

/* CRC-32 (IEEE 802.3, reflected, as zlib.crc32) of p[0..n).  Out of line:
 * the vulnerable build's read past a lying body_len faults here. */
CHF_NOINLINE uint32_t chf_crc32(const uint8_t *p, uint32_t n);

/* Compile one criterion's pattern (a copy of its payload).  Out of line: the
 * vulnerable build's read past a lying len faults here. */
CHF_NOINLINE void chf_compile_pattern(uint8_t *dst, const uint8_t *payload,
				      uint32_t len);

/* Short stable name of a reason code, e.g. "bad-crc". */
const char *chf_reason_name(enum chf_reason reason);

#endif /* CHF_INTERP_H */
