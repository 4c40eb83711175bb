/*
 * chf_interp.c - content interpreter for channel files (see chf_interp.h).
 *
 * No OS calls and no libc: the same file is compiled into the host checker,
 * the fuzz target, the Linux kernel module and the Windows minifilter.
 */
#include "chf_interp.h"

#ifndef NULL
#define NULL ((void *)0)
#endif

/* ------------------------------------------------------------------ bytes */

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

CHF_NOINLINE void chf_compile_pattern(uint8_t *dst, const uint8_t *payload,
				      uint32_t len)
{
	uint32_t i;

	for (i = 0; i < len; i++)
		dst[i] = payload[i];
}

static int bytes_equal(const uint8_t *a, const uint8_t *b, uint32_t n)
{
	uint32_t i;

	for (i = 0; i < n; i++)
		if (a[i] != b[i])
			return 0;
	return 1;
}

/* CRC-32 (IEEE 802.3, reflected, as zlib.crc32). */
CHF_NOINLINE uint32_t chf_crc32(const uint8_t *p, uint32_t n)
{
	uint32_t crc = 0xFFFFFFFFu;
	uint32_t i;
	int bit;

	for (i = 0; i < n; i++) {
		crc ^= p[i];
		for (bit = 0; bit < 8; bit++)
			crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
	}
	return ~crc;
}

/* ------------------------------------------------------------ reason text */

struct text {
	char *buf;
	uint32_t cap;
	uint32_t len;
};

static void put_str(struct text *t, const char *s)
{
	while (*s && t->len + 1 < t->cap)
		t->buf[t->len++] = *s++;
	t->buf[t->len] = '\0';
}

static void put_uint(struct text *t, uint64_t v, unsigned base)
{
	char digits[24];
	int n = 0;

	if (base == 16)
		put_str(t, "0x");
	do {
		unsigned d = (unsigned)(v % base);

		digits[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
		v /= base;
	} while (v && n < (int)sizeof(digits));
	while (n > 0 && t->len + 1 < t->cap)
		t->buf[t->len++] = digits[--n];
	t->buf[t->len] = '\0';
}

static const char *const reason_names[CHF_REASON_COUNT] = {
	[CHF_OK] = "ok",
	[CHF_EMPTY_FILE] = "empty-file",
	[CHF_TRUNCATED_HEADER] = "truncated-header",
	[CHF_BAD_MAGIC] = "bad-magic",
	[CHF_BAD_VERSION] = "bad-version",
	[CHF_BODY_LEN_MISMATCH] = "body-len-mismatch",
	[CHF_BAD_CRC] = "bad-crc",
	[CHF_FIELD_COUNT] = "field-count",
	[CHF_TRUNCATED_INSTANCE] = "truncated-instance",
	[CHF_CRITERIA_COUNT] = "criteria-count",
	[CHF_BAD_KIND] = "bad-kind",
	[CHF_WILDCARD_PAYLOAD] = "wildcard-payload",
	[CHF_PAYLOAD_PAST_BODY] = "payload-past-body",
	[CHF_TRAILING_BYTES] = "trailing-bytes",
	[CHF_OUT_OF_MEMORY] = "out-of-memory",
};

const char *chf_reason_name(enum chf_reason reason)
{
	if ((unsigned)reason >= CHF_REASON_COUNT)
		return "unknown";
	return reason_names[reason];
}

/* Start a rejection: records code and offset, returns the text cursor. */
static struct text reject(struct chf_result *res, enum chf_reason reason,
			  uint32_t offset)
{
	struct text t;

	res->status = reason == CHF_OUT_OF_MEMORY ? CHF_NO_MEMORY : CHF_REJECTED;
	res->reason = reason;
	res->offset = offset;
	t.buf = res->text;
	t.cap = sizeof(res->text);
	t.len = 0;
	res->text[0] = '\0';
	return t;
}

/* ---------------------------------------------------------------- loading */

#if CHF_HARDENED
static void put_where(struct text *t, uint32_t instance, uint32_t criterion,
		      int with_criterion)
{
	put_str(t, "instance ");
	put_uint(t, instance, 10);
	if (with_criterion) {
		put_str(t, " criterion ");
		put_uint(t, criterion, 10);
	}
}

/*
 * Walk the body with every bound checked, before anything is allocated.
 * Returns 0 when the body is well-formed, else fills res.
 */
static int validate_body(const uint8_t *buf, uint32_t size,
			 const struct chf_header *h, struct chf_result *res)
{
	uint32_t off = CHF_HEADER_SIZE;
	uint32_t n, c;
	struct text t;

	for (n = 0; n < h->instances; n++) {
		uint8_t criteria;

		if (size - off < 5) {
			t = reject(res, CHF_TRUNCATED_INSTANCE, off);
			res->instance = n;
			put_where(&t, n, 0, 0);
			put_str(&t, " header at offset ");
			put_uint(&t, off, 10);
			put_str(&t, " runs past the end of the body");
			return -1;
		}
		criteria = buf[off + 4];
		if (criteria != h->fields) {
			t = reject(res, CHF_CRITERIA_COUNT, off + 4);
			res->instance = n;
			put_where(&t, n, 0, 0);
			put_str(&t, " declares ");
			put_uint(&t, criteria, 10);
			put_str(&t, " criteria, header fields is ");
			put_uint(&t, h->fields, 10);
			return -1;
		}
		off += 5;
		for (c = 0; c < criteria; c++) {
			uint8_t kind;
			uint16_t len;

			if (size - off < 3) {
				t = reject(res, CHF_TRUNCATED_INSTANCE, off);
				res->instance = n;
				res->criterion = c;
				put_where(&t, n, c, 1);
				put_str(&t, " at offset ");
				put_uint(&t, off, 10);
				put_str(&t, " runs past the end of the body");
				return -1;
			}
			kind = buf[off];
			len = rd16(buf + off + 1);
			if (kind > CHF_KIND_PREFIX) {
				t = reject(res, CHF_BAD_KIND, off);
				res->instance = n;
				res->criterion = c;
				put_where(&t, n, c, 1);
				put_str(&t, ": unknown kind ");
				put_uint(&t, kind, 10);
				return -1;
			}
			if (kind == CHF_KIND_WILDCARD && len != 0) {
				t = reject(res, CHF_WILDCARD_PAYLOAD, off + 1);
				res->instance = n;
				res->criterion = c;
				put_where(&t, n, c, 1);
				put_str(&t, ": wildcard with len ");
				put_uint(&t, len, 10);
				return -1;
			}
			off += 3;
			if (size - off < len) {
				t = reject(res, CHF_PAYLOAD_PAST_BODY, off - 2);
				res->instance = n;
				res->criterion = c;
				put_where(&t, n, c, 1);
				put_str(&t, ": payload len ");
				put_uint(&t, len, 10);
				put_str(&t, " at offset ");
				put_uint(&t, off, 10);
				put_str(&t, " ends past the body (");
				put_uint(&t, size - off, 10);
				put_str(&t, " bytes left)");
				return -1;
			}
			off += len;
		}
	}
	if (off != size) {
		t = reject(res, CHF_TRAILING_BYTES, off);
		put_uint(&t, size - off, 10);
		put_str(&t, " bytes after the last instance, at offset ");
		put_uint(&t, off, 10);
		return -1;
	}
	return 0;
}
#endif

static void free_instance(const struct chf_env *env, struct chf_instance *inst)
{
	uint32_t c;

	for (c = 0; c < inst->criteria; c++)
		if (inst->crit[c].pattern)
			env->free(inst->crit[c].pattern, env->ctx);
	env->free(inst, env->ctx);
}

void chf_unload(const struct chf_env *env, struct chf_content *content)
{
	struct chf_instance *inst = content->first;

	while (inst) {
		struct chf_instance *next = inst->next;

		free_instance(env, inst);
		inst = next;
	}
	content->first = NULL;
	content->instance_count = 0;
}

/*
 * Build the instance list and compile (copy) every payload.  In the hardened
 * build the body was validated first; in the vulnerable build every count and
 * length is trusted, so a lie in the file reads past the buffer.
 */
static enum chf_status build_instances(const struct chf_env *env,
				       const uint8_t *buf,
				       struct chf_content *out,
				       struct chf_result *res)
{
	const uint8_t *p = buf + CHF_HEADER_SIZE;
	struct chf_instance **tail = &out->first;
	uint32_t n, c;

	for (n = 0; n < out->header.instances; n++) {
		uint8_t criteria = p[4];
		uint32_t bytes = (uint32_t)sizeof(struct chf_instance) +
				 (uint32_t)criteria * (uint32_t)sizeof(struct chf_criterion);
		struct chf_instance *inst = env->alloc(bytes, env->ctx);

		if (!inst)
			goto no_memory;
		inst->id = rd32(p);
		inst->criteria = criteria;
		inst->crit = (struct chf_criterion *)(inst + 1);
		inst->next = NULL;
		for (c = 0; c < criteria; c++)
			inst->crit[c].pattern = NULL;
		*tail = inst;
		tail = &inst->next;
		out->instance_count++;
		p += 5;
		for (c = 0; c < criteria; c++) {
			struct chf_criterion *cr = &inst->crit[c];

			cr->kind = p[0];
			cr->len = rd16(p + 1);
			p += 3;
			/* "Compile" the pattern: every payload byte is read. */
			cr->pattern = env->alloc(cr->len ? cr->len : 1u, env->ctx);
			if (!cr->pattern)
				goto no_memory;
			chf_compile_pattern(cr->pattern, p, cr->len);
			p += cr->len;
		}
	}
	return CHF_LOADED;

no_memory:
	chf_unload(env, out);
	{
		struct text t = reject(res, CHF_OUT_OF_MEMORY, (uint32_t)(p - buf));

		put_str(&t, "out of memory while building instance ");
		put_uint(&t, n, 10);
	}
	return CHF_NO_MEMORY;
}

enum chf_status chf_load(const struct chf_env *env, const uint8_t *buf,
			 uint32_t size, struct chf_content *out,
			 struct chf_result *res)
{
	struct chf_header *h = &out->header;
	struct text t;
	uint32_t crc;

	out->first = NULL;
	out->instance_count = 0;
	res->status = CHF_LOADED;
	res->reason = CHF_OK;
	res->offset = res->instance = res->criterion = 0;
	res->text[0] = '\0';

	if (size == 0) {
		t = reject(res, CHF_EMPTY_FILE, 0);
		put_str(&t, "empty file");
		return res->status;
	}
	if (size < CHF_HEADER_SIZE) {
		t = reject(res, CHF_TRUNCATED_HEADER, size);
		put_str(&t, "truncated header: ");
		put_uint(&t, size, 10);
		put_str(&t, " of 24 bytes");
		return res->status;
	}
	if (!bytes_equal(buf, (const uint8_t *)CHF_MAGIC, 4)) {
		t = reject(res, CHF_BAD_MAGIC, 0);
		put_str(&t, "bad magic ");
		put_uint(&t, rd32(buf), 16);
		put_str(&t, " (want CHF1)");
		return res->status;
	}
	h->version = rd16(buf + 4);
	h->channel = rd16(buf + 6);
	h->template_type = rd16(buf + 8);
	h->fields = rd16(buf + 10);
	h->instances = rd32(buf + 12);
	h->body_len = rd32(buf + 16);
	h->crc32 = rd32(buf + 20);
	if (h->version != CHF_VERSION) {
		t = reject(res, CHF_BAD_VERSION, 4);
		put_str(&t, "bad version ");
		put_uint(&t, h->version, 10);
		put_str(&t, " (want 1)");
		return res->status;
	}
#if CHF_HARDENED
	if (h->body_len != size - CHF_HEADER_SIZE) {
		t = reject(res, CHF_BODY_LEN_MISMATCH, 16);
		put_str(&t, "body_len ");
		put_uint(&t, h->body_len, 10);
		put_str(&t, " but the file holds ");
		put_uint(&t, size - CHF_HEADER_SIZE, 10);
		put_str(&t, " body bytes");
		return res->status;
	}
#endif
	/* The vulnerable build trusts body_len here: a larger one reads past
	 * the end of the buffer. */
	crc = chf_crc32(buf + CHF_HEADER_SIZE, h->body_len);
	if (crc != h->crc32) {
		t = reject(res, CHF_BAD_CRC, 20);
		put_str(&t, "crc mismatch: header ");
		put_uint(&t, h->crc32, 16);
		put_str(&t, ", body ");
		put_uint(&t, crc, 16);
		return res->status;
	}
#if CHF_HARDENED
	if (h->fields != CHF_INPUTS) {
		t = reject(res, CHF_FIELD_COUNT, 10);
		put_str(&t, "template declares ");
		put_uint(&t, h->fields, 10);
		put_str(&t, " input fields, sensor supplies ");
		put_uint(&t, CHF_INPUTS, 10);
		return res->status;
	}
	if (validate_body(buf, size, h, res))
		return res->status;
#endif
	return build_instances(env, buf, out, res);
}

/* ------------------------------------------------------------- evaluation */

void chf_slots_init(const struct chf_value *slots[CHF_INPUT_SLOTS],
		    const struct chf_value values[CHF_INPUTS],
		    const struct chf_value *poison)
{
	uint32_t i;

	for (i = 0; i < CHF_INPUT_SLOTS; i++)
		slots[i] = i < CHF_INPUTS ? &values[i] : poison;
}

CHF_NOINLINE int chf_match_criterion(const struct chf_criterion *cr,
				     const struct chf_value *v)
{
	/* Reading v->len is where a poisoned slot faults. */
	uint32_t have = v->len;

	if (cr->kind == CHF_KIND_PREFIX)
		return have >= cr->len && bytes_equal(v->data, cr->pattern, cr->len);
	return have == cr->len && bytes_equal(v->data, cr->pattern, cr->len);
}

void chf_evaluate(const struct chf_content *content,
		  const struct chf_value *const slots[CHF_INPUT_SLOTS],
		  struct chf_eval *out)
{
	const struct chf_instance *inst;

	out->instances = out->matched = out->criteria = out->out_of_bounds = 0;
	for (inst = content->first; inst; inst = inst->next) {
		int all = 1;
		uint32_t i;

		out->instances++;
		/* Every criterion is evaluated: no stop at the first mismatch. */
		for (i = 0; i < inst->criteria; i++) {
			const struct chf_criterion *cr = &inst->crit[i];

			out->criteria++;
			if (cr->kind == CHF_KIND_WILDCARD)
				continue;
#if CHF_HARDENED
			if (i >= CHF_INPUTS) {
				out->out_of_bounds++;
				all = 0;
				continue;
			}
#endif
			if (!chf_match_criterion(cr, slots[i]))
				all = 0;
		}
		if (all)
			out->matched++;
	}
}

/* --------------------------------------------------------- synthetic event */

static const char *const synthetic_attributes[CHF_INPUTS] = {
	"\\Device\\NamedPipe\\harness-synthetic", /* pipe name */
	"\\??\\C:\\Windows\\System32\\services.exe", /* creator image */
	"services.exe",	/* creator image file name */
	"NT AUTHORITY\\SYSTEM", /* creator user */
	"S-1-5-18",	/* creator SID */
	"0",		/* creator session */
	"672",		/* creator process id */
	"4",		/* creator parent process id */
	"System",	/* parent image file name */
	"GENERIC_READ|GENERIC_WRITE", /* desired access */
	"FILE_PIPE_MESSAGE_TYPE", /* pipe type */
	"FILE_PIPE_MESSAGE_MODE", /* read mode */
	"FILE_PIPE_QUEUE_OPERATION", /* completion mode */
	"255",		/* max instances */
	"4096",		/* inbound quota */
	"4096",		/* outbound quota */
	"FILE_CREATE",	/* disposition */
	"local",	/* remote or local */
	"SYSTEM",	/* integrity level */
	"boot",		/* phase: boot or runtime */
};

void chf_synthetic_event(struct chf_value values[CHF_INPUTS])
{
	uint32_t i;

	for (i = 0; i < CHF_INPUTS; i++) {
		const char *s = synthetic_attributes[i];
		uint32_t n = 0;

		while (s[n])
			n++;
		values[i].len = n;
		values[i].data = (const uint8_t *)s;
	}
}
