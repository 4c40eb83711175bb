// SPDX-License-Identifier: GPL-2.0
/*
 * harness_sensor.c - the sample boot-start "security sensor" of the test
 * harness, as a Linux kernel module.
 *
 * It is loaded from the initramfs (insmod harness_sensor.ko content_dir=DIR),
 * loads every channel file of its channel from DIR (highest sequence last)
 * with the shared content interpreter (../common/chf_interp.c), then evaluates
 * one synthetic named-pipe event against the loaded content, as the real
 * sensor did on every boot.  Writing 1 to
 * /sys/module/harness_sensor/parameters/reload repeats both steps on a
 * running machine (an online content update).
 *
 * Contract: shared/spec/channel-file-v1.md.  The same source gives two
 * builds, chosen with -DCHF_HARDENED=0 (vulnerable) or 1 (hardened).  The
 * driver adds no crash of its own: it only gives the interpreter what the
 * spec asks for, so that the vulnerable build's bad reads fault every time:
 *  - each file's bytes end exactly at the end of a vmalloc area, which is
 *    followed by an unmapped guard page;
 *  - the input guard slots (20 and up) hold a pointer into the guard page
 *    behind a one-page vmalloc area that lives as long as the module.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/errno.h>
#include <linux/fs.h>
#include <linux/kernel.h>
#include <linux/kernel_read_file.h>
#include <linux/list.h>
#include <linux/list_sort.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/vmalloc.h>

#include "chf_interp.h"

/* Bigger channel files are rejected before anything is read. */
#define SENSOR_MAX_FILE_SIZE (16u << 20)

/* "C-" + 8 digits + "-" + 8 digits + "-" + 8 digits + ".sys" */
#define SENSOR_NAME_LEN 32
#define SENSOR_MAX_CHANNEL 99999999u

/* ------------------------------------------------------------ parameters */

static char *content_dir;
module_param(content_dir, charp, 0444);
MODULE_PARM_DESC(content_dir, "Directory holding the channel files (C-<channel>-<variant>-<sequence>.sys)");

static unsigned int channel = 291;
module_param(channel, uint, 0444);
MODULE_PARM_DESC(channel, "Channel whose files the sensor loads (default 291)");

static int sensor_reload_set(const char *val, const struct kernel_param *kp);

static const struct kernel_param_ops sensor_reload_ops = {
	.set = sensor_reload_set,
};
module_param_cb(reload, &sensor_reload_ops, NULL, 0200);
MODULE_PARM_DESC(reload, "Write 1 to re-read the content directory and evaluate the synthetic event again (write-only)");

static int sensor_build_get(char *buffer, const struct kernel_param *kp)
{
	return scnprintf(buffer, PAGE_SIZE, "%s\n", CHF_BUILD_NAME);
}

static int sensor_build_set(const char *val, const struct kernel_param *kp)
{
	/* The build is chosen at compile time. */
	return -EPERM;
}

static const struct kernel_param_ops sensor_build_ops = {
	.set = sensor_build_set,
	.get = sensor_build_get,
};
module_param_cb(build, &sensor_build_ops, NULL, 0444);
MODULE_PARM_DESC(build, "Interpreter build, \"vulnerable\" or \"hardened\" (read-only)");

/* ----------------------------------------------------------------- state */

/* One channel file of the content directory. */
struct sensor_file {
	struct list_head node;
	u32 variant;
	u32 sequence;
	bool has_content;		/* content holds a loaded file */
	struct chf_content content;
	char name[SENSOR_NAME_LEN + 1];
};

enum sensor_state {
	SENSOR_STARTING,	/* parameters parsed, init not finished */
	SENSOR_RUNNING,
	SENSOR_STOPPED,		/* module exit has freed the content */
};

/* sensor_lock protects everything below it. */
static DEFINE_MUTEX(sensor_lock);
static enum sensor_state sensor_state = SENSOR_STARTING;
static LIST_HEAD(sensor_files);	/* in load order */
static void *guard_area;		/* one page; the page behind it is the guard */
static struct chf_value event_values[CHF_INPUTS];
static const struct chf_value *event_slots[CHF_INPUT_SLOTS];

static void *sensor_alloc(uint32_t size, void *ctx)
{
	return kvmalloc(size, GFP_KERNEL);
}

static void sensor_free(void *ptr, void *ctx)
{
	kvfree(ptr);
}

static const struct chf_env sensor_env = {
	.alloc = sensor_alloc,
	.free = sensor_free,
};

static void sensor_free_files(struct list_head *files)
{
	struct sensor_file *f, *tmp;

	list_for_each_entry_safe(f, tmp, files, node) {
		if (f->has_content)
			chf_unload(&sensor_env, &f->content);
		list_del(&f->node);
		kfree(f);
	}
}

/* -------------------------------------------------------- directory scan */

static bool sensor_parse_digits(const char *s, u32 *out)
{
	u32 v = 0;
	int i;

	for (i = 0; i < 8; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* C-<channel:8 digits>-<variant:8 digits>-<sequence:8 digits>.sys */
static bool sensor_parse_name(const char *name, int len, u32 *chan,
			      u32 *variant, u32 *sequence)
{
	return len == SENSOR_NAME_LEN && name[0] == 'C' && name[1] == '-' &&
	       sensor_parse_digits(name + 2, chan) && name[10] == '-' &&
	       sensor_parse_digits(name + 11, variant) && name[19] == '-' &&
	       sensor_parse_digits(name + 20, sequence) &&
	       !memcmp(name + 28, ".sys", 4);
}

struct sensor_scan {
	struct dir_context ctx;
	struct list_head found;	/* struct sensor_file */
	int error;
};

static bool sensor_scan_actor(struct dir_context *ctx, const char *name,
			      int namelen, loff_t offset, u64 ino,
			      unsigned int d_type)
{
	struct sensor_scan *scan = container_of(ctx, struct sensor_scan, ctx);
	struct sensor_file *f;
	u32 chan, variant, sequence;

	if ((namelen == 1 && name[0] == '.') ||
	    (namelen == 2 && name[0] == '.' && name[1] == '.'))
		return true;
	if (!sensor_parse_name(name, namelen, &chan, &variant, &sequence) ||
	    chan != channel) {
		pr_notice("%*pE: ignored (not a channel %u file)\n", namelen,
			  name, channel);
		return true;
	}
	f = kzalloc(sizeof(*f), GFP_KERNEL);
	if (!f) {
		scan->error = -ENOMEM;
		return false;
	}
	f->variant = variant;
	f->sequence = sequence;
	memcpy(f->name, name, SENSOR_NAME_LEN);
	list_add_tail(&f->node, &scan->found);
	return true;
}

/* Highest sequence last; for equal sequences, highest variant last. */
static int sensor_cmp_files(void *priv, const struct list_head *a,
			    const struct list_head *b)
{
	const struct sensor_file *fa = list_entry(a, struct sensor_file, node);
	const struct sensor_file *fb = list_entry(b, struct sensor_file, node);

	if (fa->sequence != fb->sequence)
		return fa->sequence < fb->sequence ? -1 : 1;
	if (fa->variant != fb->variant)
		return fa->variant < fb->variant ? -1 : 1;
	return strcmp(fa->name, fb->name);
}

/*
 * Put the channel files of dir on found, in load order.  Names of other
 * files are reported as ignored.  Returns 0 or a negative errno.
 */
static int sensor_list_dir(const char *dir, struct list_head *found)
{
	struct sensor_scan scan = {
		.ctx.actor = sensor_scan_actor,
		.found = LIST_HEAD_INIT(scan.found),
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
		sensor_free_files(&scan.found);
		return err;
	}
	list_sort(NULL, &scan.found, sensor_cmp_files);
	list_splice_tail(&scan.found, found);
	return 0;
}

/* ---------------------------------------------------------- file loading */

/* Verdict on one file: the interpreter's, or the driver's own refusal. */
struct sensor_outcome {
	struct chf_result res;
	const char *reason;	/* short stable name, shown in [brackets] */
};

static __printf(3, 4) void sensor_refuse(struct sensor_outcome *out,
					 const char *reason,
					 const char *fmt, ...)
{
	va_list args;

	out->res.status = CHF_REJECTED;
	out->reason = reason;
	va_start(args, fmt);
	vscnprintf(out->res.text, sizeof(out->res.text), fmt, args);
	va_end(args);
}

/*
 * Read dir/f->name into a vmalloc area so that its bytes end exactly at the
 * end of the area (the unmapped guard page follows), then hand them to the
 * interpreter.  On success f->content holds the file's content.
 */
static void sensor_load_file(const char *dir, struct sensor_file *f,
			     struct sensor_outcome *out)
{
	struct file *file;
	size_t area_size, file_size = 0;
	void *area, *data;
	loff_t size;
	ssize_t got;
	char *path;

	path = kasprintf(GFP_KERNEL, "%s/%s", dir, f->name);
	if (!path) {
		sensor_refuse(out, "out-of-memory", "out of memory for the path");
		return;
	}
	file = filp_open(path, O_RDONLY, 0);
	kfree(path);
	if (IS_ERR(file)) {
		sensor_refuse(out, "open-failed", "cannot open the file (error %ld)",
			      PTR_ERR(file));
		return;
	}
	if (!S_ISREG(file_inode(file)->i_mode)) {
		sensor_refuse(out, "not-regular-file", "not a regular file");
		goto out_close;
	}
	size = i_size_read(file_inode(file));
	if (size < 0 || size > SENSOR_MAX_FILE_SIZE) {
		sensor_refuse(out, "too-large",
			      "file is %lld bytes, the limit is %u bytes",
			      (long long)size, SENSOR_MAX_FILE_SIZE);
		goto out_close;
	}
	/* An empty file still gets a page, so data points at the guard page. */
	area_size = max_t(size_t, round_up(size, PAGE_SIZE), PAGE_SIZE);
	area = vmalloc(area_size);
	if (!area) {
		sensor_refuse(out, "out-of-memory",
			      "out of memory for a %zu-byte buffer", area_size);
		goto out_close;
	}
	data = area + area_size - size;
	if (size) {
		got = kernel_read_file(file, 0, &data, size, &file_size,
				       READING_UNKNOWN);
		if (got < 0) {
			sensor_refuse(out, "read-error",
				      "cannot read the file (error %zd)", got);
			goto out_free;
		}
		if (got != size || file_size != size) {
			sensor_refuse(out, "read-error",
				      "file changed size while being read (%lld, then %zu bytes)",
				      (long long)size, file_size);
			goto out_free;
		}
	}
	/* An empty file is rejected by chf_load without reading. */
	chf_load(&sensor_env, data, (u32)size, &f->content, &out->res);
	out->reason = chf_reason_name(out->res.reason);
	f->has_content = out->res.status == CHF_LOADED;
out_free:
	vfree(area);
out_close:
	filp_close(file, NULL);
}

/* Hardened build: give f the content its name had before this reload. */
static bool sensor_keep_last_good(struct sensor_file *f)
{
	struct sensor_file *old;

	list_for_each_entry(old, &sensor_files, node) {
		if (old->has_content && !strcmp(old->name, f->name)) {
			f->content = old->content;
			f->has_content = true;
			old->has_content = false;
			return true;
		}
	}
	return false;
}

/* Evaluate the synthetic named-pipe event against every loaded file. */
static void sensor_evaluate(void)
{
	const struct sensor_file *f;
	u32 instances = 0, matched = 0;
	struct chf_eval ev;

	list_for_each_entry(f, &sensor_files, node) {
		if (!f->has_content)
			continue;
		chf_evaluate(&f->content, event_slots, &ev);
		instances += ev.instances;
		matched += ev.matched;
	}
	pr_notice("named-pipe event: %u instances evaluated, %u matched\n",
		  instances, matched);
}

/* (Re)load the content and evaluate the event.  Called with sensor_lock. */
static void sensor_refresh(bool reload)
{
	unsigned int files = 0, loaded = 0, rejected = 0;
	struct sensor_outcome out;
	struct sensor_file *f;
	LIST_HEAD(fresh);
	bool kept;
	int err;

	if (!content_dir || !*content_dir)
		err = -EINVAL;
	else
		err = sensor_list_dir(content_dir, &fresh);

	if (err) {
		bool keep = CHF_HARDENED && !list_empty(&sensor_files);

		if (!content_dir || !*content_dir)
			pr_err("no content_dir given; %s\n",
			       keep ? "keeping last good content" :
				      "running with no content");
		else
			pr_err("%s: cannot read the content directory (error %d); %s\n",
			       content_dir, err,
			       keep ? "keeping last good content" :
				      "running with no content");
		if (!keep)
			sensor_free_files(&sensor_files);
	} else {
		list_for_each_entry(f, &fresh, node) {
			memset(&out, 0, sizeof(out));
			files++;
			sensor_load_file(content_dir, f, &out);
			if (f->has_content) {
				loaded++;
				pr_notice("%s: loaded (%u instances)\n", f->name,
					  f->content.instance_count);
				continue;
			}
			rejected++;
			kept = CHF_HARDENED && sensor_keep_last_good(f);
			pr_err("%s: rejected: %s [%s]%s\n", f->name,
			       out.res.text, out.reason,
			       kept ? "; keeping last good content" : "");
		}
		/* Files that disappeared or lost their content are dropped. */
		sensor_free_files(&sensor_files);
		list_splice_tail(&fresh, &sensor_files);
	}

	sensor_evaluate();

	/* The marker starts the message: no pr_fmt prefix. */
	printk(KERN_NOTICE "HARNESS-SENSOR-%s build=%s files=%u loaded=%u rejected=%u\n",
	       reload ? "RELOADED" : "LOADED", CHF_BUILD_NAME, files, loaded,
	       rejected);
}

/* Called with the module's parameter lock held (sysfs write or insmod). */
static int sensor_reload_set(const char *val, const struct kernel_param *kp)
{
	bool go;
	int ret;

	ret = kstrtobool(val, &go);
	if (ret || !go)
		return ret;

	mutex_lock(&sensor_lock);
	switch (sensor_state) {
	case SENSOR_STARTING:
		/* Given to insmod: init is about to load the content anyway. */
		break;
	case SENSOR_RUNNING:
		sensor_refresh(true);
		break;
	case SENSOR_STOPPED:
		ret = -ENODEV;
		break;
	}
	mutex_unlock(&sensor_lock);
	return ret;
}

/* -------------------------------------------------------- init and exit */

static int __init sensor_init(void)
{
	if (channel > SENSOR_MAX_CHANNEL) {
		pr_err("channel %u does not fit the 8-digit file name\n",
		       channel);
		return -EINVAL;
	}
	/* The page behind a vmalloc area is unmapped: reading it faults. */
	guard_area = vmalloc(PAGE_SIZE);
	if (!guard_area)
		return -ENOMEM;
	chf_synthetic_event(event_values);
	chf_slots_init(event_slots, event_values,
		       (const struct chf_value *)(guard_area + PAGE_SIZE));

	mutex_lock(&sensor_lock);
	sensor_refresh(false);
	sensor_state = SENSOR_RUNNING;
	mutex_unlock(&sensor_lock);
	return 0;
}

static void __exit sensor_exit(void)
{
	mutex_lock(&sensor_lock);
	sensor_state = SENSOR_STOPPED;
	sensor_free_files(&sensor_files);
	mutex_unlock(&sensor_lock);
	vfree(guard_area);
	pr_notice("unloaded\n");
}

module_init(sensor_init);
module_exit(sensor_exit);

MODULE_LICENSE("GPL");	/* kernel_read_file() is EXPORT_SYMBOL_GPL */
MODULE_DESCRIPTION("Test-harness sample boot-start sensor: loads channel files and evaluates a synthetic named-pipe event (" CHF_BUILD_NAME " build)");
MODULE_INFO(sensor_build, CHF_BUILD_NAME);
