// SPDX-License-Identifier: GPL-2.0
/*
 * acme_guard.c - a stand-in for a driver vendor's boot-start kernel module,
 * written for the harness's tests and never shipped.  It shares nothing with
 * the sample sensor (drivers/linux, drivers/common): its own parameters,
 * content directory, content format ("ACMR" rule files, see README.md), console
 * lines and its own crash.
 *
 * At load it reads every regular file of acme_dir in name order, checks each
 * one (magic, version, length, checksum, pattern lengths) and applies the
 * rules of the files it accepts.  Console lines, at KERN_ERR so that they
 * reach a `quiet loglevel=4` console:
 *
 *   acme_guard: <file>: refused: <reason> (<details>)
 *   acme_guard: armed (<n> rules from <m> files, <k> refused)
 *
 * The vendor bug: a rule's action byte is used as an index into the action
 * table without a check.  Codes 3..255 are reserved slots holding NULL, so a
 * rule with such an action makes acme_apply_rule() write through a NULL
 * pointer: an Oops in this module's own function, every time.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/errno.h>
#include <linux/fs.h>
#include <linux/kernel.h>
#include <linux/kernel_read_file.h>
#include <linux/list.h>
#include <linux/list_sort.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/vmalloc.h>

#define ACME_MAGIC "ACMR"
#define ACME_VERSION 1
#define ACME_MAX_FILE (1u << 20)
#define ACME_PATTERN_MAX 16

/* --------------------------------------------------------------- format */

/* Little-endian, no padding.  checksum: FNV-1a 32 of every byte after the header. */
struct acme_header {
	char magic[4];		/* "ACMR" */
	__le16 version;		/* ACME_VERSION */
	__le16 rule_count;
	__le32 checksum;
	__le32 reserved;	/* written as 0, not checked */
} __packed;

struct acme_rule {
	__le32 id;
	u8 action;		/* 0 allow, 1 deny, 2 audit */
	u8 pattern_len;		/* 1..ACME_PATTERN_MAX */
	__le16 reserved;
	char pattern[ACME_PATTERN_MAX];
} __packed;

static_assert(sizeof(struct acme_header) == 16);
static_assert(sizeof(struct acme_rule) == 24);

/* ----------------------------------------------------------- parameters */

static char *acme_dir = "/var/lib/acme";
module_param(acme_dir, charp, 0444);
MODULE_PARM_DESC(acme_dir, "Directory of the rule files, read in name order at load (default /var/lib/acme)");

static unsigned int max_rules = 4096;
module_param(max_rules, uint, 0444);
MODULE_PARM_DESC(max_rules, "Rules a single file may hold; bigger files are refused (default 4096)");

/* ---------------------------------------------------------------- state */

struct acme_action {
	const char *name;
	unsigned int rules;	/* rules applied with this action */
};

static struct acme_action acme_allow = { .name = "allow" };
static struct acme_action acme_deny = { .name = "deny" };
static struct acme_action acme_audit = { .name = "audit" };

/* Indexed by a rule's action byte; 3..255 are reserved for later versions. */
static struct acme_action *acme_actions[256] = {
	[0] = &acme_allow,
	[1] = &acme_deny,
	[2] = &acme_audit,
};

static unsigned int acme_rules_applied;

/* ------------------------------------------------------ directory scan */

struct acme_name {
	struct list_head node;
	char name[];		/* NUL-terminated */
};

struct acme_scan {
	struct dir_context ctx;
	struct list_head names;	/* struct acme_name */
	int error;
};

static void acme_free_names(struct list_head *names)
{
	struct acme_name *n, *tmp;

	list_for_each_entry_safe(n, tmp, names, node) {
		list_del(&n->node);
		kfree(n);
	}
}

static bool acme_scan_actor(struct dir_context *ctx, const char *name,
			    int namelen, loff_t offset, u64 ino,
			    unsigned int d_type)
{
	struct acme_scan *scan = container_of(ctx, struct acme_scan, ctx);
	struct acme_name *n;

	if ((namelen == 1 && name[0] == '.') ||
	    (namelen == 2 && name[0] == '.' && name[1] == '.'))
		return true;
	n = kmalloc(sizeof(*n) + namelen + 1, GFP_KERNEL);
	if (!n) {
		scan->error = -ENOMEM;
		return false;
	}
	memcpy(n->name, name, namelen);
	n->name[namelen] = '\0';
	list_add_tail(&n->node, &scan->names);
	return true;
}

static int acme_cmp_names(void *priv, const struct list_head *a,
			  const struct list_head *b)
{
	return strcmp(list_entry(a, struct acme_name, node)->name,
		      list_entry(b, struct acme_name, node)->name);
}

/* Every entry of dir but . and .., sorted by name, onto names. */
static int acme_list_dir(const char *dir, struct list_head *names)
{
	struct acme_scan scan = {
		.ctx.actor = acme_scan_actor,
		.names = LIST_HEAD_INIT(scan.names),
	};
	struct file *file;
	int err;

	file = filp_open(dir, O_RDONLY | O_DIRECTORY, 0);
	if (IS_ERR(file))
		return PTR_ERR(file);
	err = iterate_dir(file, &scan.ctx);
	filp_close(file, NULL);
	if (!err)
		err = scan.error;
	if (err) {
		acme_free_names(&scan.names);
		return err;
	}
	list_sort(NULL, &scan.names, acme_cmp_names);
	list_splice_tail(&scan.names, names);
	return 0;
}

/* ------------------------------------------------------------ checking */

static u32 acme_fnv1a(const u8 *data, size_t len)
{
	u32 hash = 0x811c9dc5;

	while (len--) {
		hash ^= *data++;
		hash *= 0x01000193;
	}
	return hash;
}

/*
 * Check a whole file.  Returns NULL when it may be applied, else the reason
 * it is refused, written into why (size len).
 */
static const char *acme_check(const u8 *data, size_t size, char *why, size_t len)
{
	const struct acme_header *hdr = (const void *)data;
	const struct acme_rule *rules;
	size_t expected;
	u32 count, sum, i;

	if (size < sizeof(*hdr)) {
		snprintf(why, len, "truncated (%zu bytes, the header alone is %zu)",
			 size, sizeof(*hdr));
		return why;
	}
	if (memcmp(hdr->magic, ACME_MAGIC, 4)) {
		snprintf(why, len, "bad magic (%*phN, expected %*phN \"" ACME_MAGIC "\")",
			 4, hdr->magic, 4, ACME_MAGIC);
		return why;
	}
	if (le16_to_cpu(hdr->version) != ACME_VERSION) {
		snprintf(why, len, "bad version (%u, this driver reads version %u)",
			 le16_to_cpu(hdr->version), ACME_VERSION);
		return why;
	}
	count = le16_to_cpu(hdr->rule_count);
	if (count > max_rules) {
		snprintf(why, len, "too many rules (%u, max_rules is %u)", count,
			 max_rules);
		return why;
	}
	expected = sizeof(*hdr) + (size_t)count * sizeof(struct acme_rule);
	if (size != expected) {
		snprintf(why, len, "bad length (%zu bytes, %u rules need %zu)",
			 size, count, expected);
		return why;
	}
	sum = acme_fnv1a(data + sizeof(*hdr), size - sizeof(*hdr));
	if (sum != le32_to_cpu(hdr->checksum)) {
		snprintf(why, len, "bad checksum (header %08x, rules %08x)",
			 le32_to_cpu(hdr->checksum), sum);
		return why;
	}
	rules = (const void *)(data + sizeof(*hdr));
	for (i = 0; i < count; i++) {
		if (rules[i].pattern_len == 0 ||
		    rules[i].pattern_len > ACME_PATTERN_MAX) {
			snprintf(why, len, "bad rule (rule %u, id %u: pattern length %u, not 1..%u)",
				 i, le32_to_cpu(rules[i].id), rules[i].pattern_len,
				 ACME_PATTERN_MAX);
			return why;
		}
		/* The action byte is not checked: acme_apply_rule() trusts it. */
	}
	return NULL;
}

/* ------------------------------------------------------------- applying */

/*
 * Neither inlined nor cloned by GCC's interprocedural optimisations (which
 * would rename it acme_apply_rule.isra.0): a crash here is reported under
 * this function's own name.
 */
static __attribute__((__noipa__)) void acme_apply_rule(const struct acme_rule *rule)
{
	struct acme_action *action = acme_actions[rule->action];

	action->rules++;
	acme_rules_applied++;
}

/* ------------------------------------------------------------- loading */

/*
 * Read, check and apply dir/name.  Returns the rules applied (>= 0), or -1
 * when the file was refused (the line is printed here), or -2 when it is not
 * a regular file (skipped).
 */
static int acme_load_file(const char *dir, const char *name)
{
	const struct acme_rule *rules;
	char why[128];
	const char *refused = NULL;
	void *buf = NULL;
	size_t file_size = 0;
	struct file *file;
	ssize_t got;
	loff_t size;
	char *path;
	u32 count, i;

	path = kasprintf(GFP_KERNEL, "%s/%s", dir, name);
	if (!path) {
		pr_err("%s: refused: out of memory\n", name);
		return -1;
	}
	file = filp_open(path, O_RDONLY, 0);
	kfree(path);
	if (IS_ERR(file)) {
		pr_err("%s: refused: cannot open (error %ld)\n", name, PTR_ERR(file));
		return -1;
	}
	if (!S_ISREG(file_inode(file)->i_mode)) {
		filp_close(file, NULL);
		pr_info("%s: skipped (not a regular file)\n", name);
		return -2;
	}
	size = i_size_read(file_inode(file));
	if (size > ACME_MAX_FILE) {
		snprintf(why, sizeof(why), "too large (%lld bytes, the limit is %u)",
			 (long long)size, ACME_MAX_FILE);
		refused = why;
	} else if (size < (loff_t)sizeof(struct acme_header)) {
		/* kernel_read_file() refuses empty files: say what is wrong here. */
		refused = acme_check(NULL, size, why, sizeof(why));
	} else {
		got = kernel_read_file(file, 0, &buf, ACME_MAX_FILE, &file_size,
				       READING_UNKNOWN);
		if (got < 0) {
			snprintf(why, sizeof(why), "cannot read (error %zd)", got);
			refused = why;
		} else {
			refused = acme_check(buf, got, why, sizeof(why));
		}
	}
	filp_close(file, NULL);
	if (refused) {
		vfree(buf);
		pr_err("%s: refused: %s\n", name, refused);
		return -1;
	}
	count = le16_to_cpu(((const struct acme_header *)buf)->rule_count);
	rules = buf + sizeof(struct acme_header);
	for (i = 0; i < count; i++)
		acme_apply_rule(&rules[i]);
	vfree(buf);
	pr_info("%s: %u rules\n", name, count);
	return count;
}

static int __init acme_init(void)
{
	unsigned int files = 0, refused = 0, rules = 0;
	struct acme_name *n;
	LIST_HEAD(names);
	int err, ret;

	if (!acme_dir || !*acme_dir) {
		pr_err("armed (no acme_dir given: no rules)\n");
		return 0;
	}
	err = acme_list_dir(acme_dir, &names);
	if (err) {
		pr_err("armed (cannot open %s: error %d; no rules)\n", acme_dir, err);
		return 0;
	}
	list_for_each_entry(n, &names, node) {
		ret = acme_load_file(acme_dir, n->name);
		if (ret == -2)
			continue;
		files++;
		if (ret < 0)
			refused++;
		else
			rules += ret;
	}
	acme_free_names(&names);
	if (!files)
		pr_err("armed (no rule files in %s)\n", acme_dir);
	else
		pr_err("armed (%u rules from %u files, %u refused)\n", rules,
		       files, refused);
	pr_info("actions: allow %u, deny %u, audit %u\n", acme_allow.rules,
		acme_deny.rules, acme_audit.rules);
	return 0;
}

static void __exit acme_exit(void)
{
	pr_info("disarmed (%u rules had been applied)\n", acme_rules_applied);
}

module_init(acme_init);
module_exit(acme_exit);

MODULE_LICENSE("GPL");	/* kernel_read_file() is EXPORT_SYMBOL_GPL */
MODULE_AUTHOR("harness tests (stand-in for a vendor driver)");
MODULE_DESCRIPTION("ACME Guard: a test stand-in for a vendor's boot-start driver; reads ACMR rule files");
