// SPDX-License-Identifier: GPL-2.0
/*
 * crashtest.c - a kernel module that provokes, at load, one kind of report
 * the kernel prints on its console, so that the harness's Linux crash parser
 * is tested on real console logs (fixtures/logs/linux/captured-*.log).
 * Written for the harness's tests and never shipped.
 *
 *   insmod crashtest.ko mode=<mode> [seconds=N] [panic=0|1]
 *
 * mode        what the module does in its own noinline function
 * ----------  -------------------------------------------------------------
 * warn        WARN_ON(1) in crashtest_warn(); the load completes
 * bug         BUG() in crashtest_bug()
 * null        a read through a NULL struct pointer in crashtest_null_deref()
 * gpf         a read through the non-canonical 0xdead000000000100 in crashtest_gpf()
 * divide      an integer division by a zero it cannot see in crashtest_divide()
 * softlockup  kernel.watchdog_thresh=1, then crashtest_spin() spins with
 *             preemption off for `seconds` (the watchdog reports after 2 s)
 * rcu         the RCU stall timeout set to 3 s, then crashtest_rcu_reader()
 *             holds a grace period up for `seconds`: an RCU reader that
 *             call_rcu()s and lets the CPU go (cond_resched) while it reads
 * hung        kernel.hung_task_timeout_secs=1, then crashtest_hang() sleeps
 *             uninterruptibly (D state) for `seconds`
 * panic       panic() with a message, from crashtest_panic()
 * atomic      crashtest_sleep_atomic() sleeps with preemption off (scheduling
 *             while atomic); the load completes
 * list        crashtest_list_double_add() adds an entry to a list twice
 *             (CONFIG_DEBUG_LIST with BUG_ON_DATA_CORRUPTION: kernel BUG)
 * stackprot   crashtest_smash() writes past a local array over the stack canary
 *             (CONFIG_STACKPROTECTOR: a panic when it returns)
 * overflow    crashtest_recurse() calls itself until the stack's guard page
 *             (CONFIG_VMAP_STACK)
 * refcount    crashtest_get_zero_count() increments a refcount_t that is 0 (the
 *             refcount WARNING); the load completes
 *
 * panic=1 (the default) also sets kernel.softlockup_panic, kernel.hung_task_panic
 * or kernel.panic_on_rcu_stall for the modes above, so that, as with the
 * guest's oops=panic for faults, the report stops the machine.
 *
 * Debian's kernel has no UBSAN, KASAN, kmemleak or lockdep (PROVE_LOCKING):
 * those reports cannot be provoked on it, and there are no modes for them.
 *
 * The module prints only its own words ("crashtest: provoking <mode>",
 * "crashtest: done"); every report on the console is the kernel's.
 * The sysctls are written through /proc/sys and /sys like an administrator
 * would (the kernel exports no other way to a module).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bug.h>
#include <linux/delay.h>
#include <linux/fs.h>
#include <linux/jiffies.h>
#include <linux/list.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/preempt.h>
#include <linux/rcupdate.h>
#include <linux/refcount.h>
#include <linux/sched.h>
#include <linux/string.h>

static char *mode = "warn";
module_param(mode, charp, 0444);
MODULE_PARM_DESC(mode, "What to provoke at load: warn, bug, null, gpf, divide, softlockup, rcu, hung, panic, "
		 "atomic, list, stackprot, overflow, refcount");

static unsigned int seconds = 8;
module_param(seconds, uint, 0444);
MODULE_PARM_DESC(seconds, "How long softlockup/rcu spin and hung sleeps (default 8)");

static bool panic_on = true;
module_param_named(panic, panic_on, bool, 0444);
MODULE_PARM_DESC(panic, "softlockup/rcu/hung: set the kernel's panic-on-report sysctl too (default 1)");

struct crashtest_victim {
	long pad[4];
	long field;
};

/* Keeps the compiler from seeing through the bad pointers and the zero divisor. */
static struct crashtest_victim *volatile crashtest_null;
static struct crashtest_victim *volatile crashtest_noncanonical =
	(struct crashtest_victim *)0xdead000000000100UL;
static volatile int crashtest_zero;
static volatile int crashtest_dividend = 4096;

/* Write `value` to a /proc/sys or /sys file; 0 or a negative errno. */
static int crashtest_set(const char *path, const char *value)
{
	struct file *file;
	loff_t pos = 0;
	ssize_t written;

	file = filp_open(path, O_WRONLY, 0);
	if (IS_ERR(file)) {
		pr_err("cannot open %s: %ld\n", path, PTR_ERR(file));
		return PTR_ERR(file);
	}
	written = kernel_write(file, value, strlen(value), &pos);
	filp_close(file, NULL);
	if (written < 0) {
		pr_err("cannot write %s to %s: %zd\n", value, path, written);
		return written;
	}
	pr_notice("%s = %s\n", path, value);
	return 0;
}

static noinline void crashtest_warn(void)
{
	WARN_ON(1);
}

static noinline void crashtest_bug(void)
{
	BUG();
}

static noinline long crashtest_null_deref(void)
{
	return READ_ONCE(crashtest_null->field);
}

static noinline long crashtest_gpf(void)
{
	return READ_ONCE(crashtest_noncanonical->field);
}

static noinline int crashtest_divide(void)
{
	return crashtest_dividend / crashtest_zero;
}

static noinline void crashtest_spin(unsigned int secs)
{
	unsigned long end = jiffies + secs * HZ;

	preempt_disable();
	while (time_before(jiffies, end))
		cpu_relax();
	preempt_enable();
}

static noinline void crashtest_hang(unsigned int secs)
{
	/* msleep sleeps in TASK_UNINTERRUPTIBLE: insmod shows as D state. */
	msleep(secs * 1000);
	/* Something after the sleep: a tail call would leave this function out of the stack. */
	pr_notice("woke after %u s\n", secs);
}

static struct rcu_head crashtest_rcu_head;

static void crashtest_rcu_done(struct rcu_head *head)
{
}

/*
 * A preempted RCU reader holds up the grace period that call_rcu() asked for;
 * cond_resched() lets the grace-period kthread run on a one-CPU guest.
 */
static noinline void crashtest_rcu_reader(unsigned int secs)
{
	unsigned long end = jiffies + secs * HZ;

	rcu_read_lock();
	call_rcu(&crashtest_rcu_head, crashtest_rcu_done);
	while (time_before(jiffies, end))
		cond_resched();
	rcu_read_unlock();
	rcu_barrier();  /* the callback has run before the module can go */
}

static noinline void crashtest_panic(void)
{
	panic("crashtest: panic requested by mode=panic");
}

static noinline void crashtest_sleep_atomic(void)
{
	preempt_disable();
	schedule_timeout_uninterruptible(1);
	preempt_enable();
}

static noinline void crashtest_list_double_add(void)
{
	static LIST_HEAD(crashtest_list);
	static struct list_head entry;

	list_add(&entry, &crashtest_list);
	list_add(&entry, &crashtest_list);
}

static volatile size_t crashtest_smash_len = 64;

static noinline void crashtest_smash(void)
{
	char buf[16];
	volatile char *p = buf;
	size_t i;

	/* Byte by byte through a volatile pointer: FORTIFY_SOURCE does not see it. */
	for (i = 0; i < crashtest_smash_len; i++)
		p[i] = 0x41;
}

static volatile unsigned int crashtest_depth_limit = 1u << 20;

static noinline unsigned int crashtest_recurse(unsigned int depth)
{
	volatile char frame[512];

	frame[0] = depth;
	if (depth >= crashtest_depth_limit)
		return frame[0];
	return crashtest_recurse(depth + 1) + frame[0];
}

static noinline void crashtest_get_zero_count(void)
{
	refcount_t count = REFCOUNT_INIT(0);

	refcount_inc(&count);
}

static int __init crashtest_init(void)
{
	pr_notice("provoking %s\n", mode);
	if (!strcmp(mode, "warn")) {
		crashtest_warn();
	} else if (!strcmp(mode, "bug")) {
		crashtest_bug();
	} else if (!strcmp(mode, "null")) {
		pr_notice("read %ld\n", crashtest_null_deref());
	} else if (!strcmp(mode, "gpf")) {
		pr_notice("read %ld\n", crashtest_gpf());
	} else if (!strcmp(mode, "divide")) {
		pr_notice("quotient %d\n", crashtest_divide());
	} else if (!strcmp(mode, "softlockup")) {
		if (panic_on)
			crashtest_set("/proc/sys/kernel/softlockup_panic", "1");
		crashtest_set("/proc/sys/kernel/watchdog_thresh", "1");
		crashtest_spin(seconds);
	} else if (!strcmp(mode, "rcu")) {
		if (panic_on)
			crashtest_set("/proc/sys/kernel/panic_on_rcu_stall", "1");
		crashtest_set("/sys/module/rcupdate/parameters/rcu_cpu_stall_timeout", "3");
		crashtest_rcu_reader(seconds);
	} else if (!strcmp(mode, "hung")) {
		if (panic_on)
			crashtest_set("/proc/sys/kernel/hung_task_panic", "1");
		crashtest_set("/proc/sys/kernel/hung_task_timeout_secs", "1");
		crashtest_hang(seconds);
	} else if (!strcmp(mode, "panic")) {
		crashtest_panic();
	} else if (!strcmp(mode, "atomic")) {
		crashtest_sleep_atomic();
	} else if (!strcmp(mode, "list")) {
		crashtest_list_double_add();
	} else if (!strcmp(mode, "stackprot")) {
		crashtest_smash();
	} else if (!strcmp(mode, "overflow")) {
		pr_notice("depth %u\n", crashtest_recurse(0));
	} else if (!strcmp(mode, "refcount")) {
		crashtest_get_zero_count();
	} else {
		pr_err("unknown mode=%s: warn, bug, null, gpf, divide, softlockup, rcu, hung, panic, "
		       "atomic, list, stackprot, overflow, refcount\n", mode);
		return -EINVAL;
	}
	pr_notice("done\n");
	return 0;
}

static void __exit crashtest_exit(void)
{
}

module_init(crashtest_init);
module_exit(crashtest_exit);

MODULE_DESCRIPTION("Provokes one kind of kernel report at load, for the harness's crash parser tests");
MODULE_LICENSE("GPL");
