/*
 * chf_check.c - run the sensor's content interpreter on one channel file on
 * the host and report what it does, as one JSON object on stdout.
 *
 *   chf-check-vulnerable FILE
 *   chf-check-hardened FILE
 *
 * The interpreter runs in a child process with the file's bytes ending at a
 * page boundary in front of a PROT_NONE guard page and with the input guard
 * slots pointing at a PROT_NONE page, exactly as the drivers place them.  A
 * vulnerable read past the buffer or of the poisoned slot is a real SIGSEGV
 * in the child; the parent reports it as outcome "crash" with the faulting
 * address and where it lies.
 *
 * Exit status: 0 when an outcome was reported (loaded, rejected, crash,
 * timeout), 2 when the file could not be read (message on stderr).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include "../common/chf_interp.h"
#include "guarded.h"

/* Largest channel file the harness accepts (the drivers use the same cap). */
#define MAX_FILE_SIZE (16u * 1024u * 1024u)
#define CHILD_SECONDS 20u

enum stage { STAGE_START = 0, STAGE_LOAD, STAGE_EVALUATE, STAGE_DONE };

/* Written by the child into shared memory, read by the parent. */
struct report {
	volatile int stage;
	volatile int signo;
	volatile uintptr_t fault_addr;
	volatile uintptr_t fault_ip; /* instruction pointer at the fault, 0 if unknown */
	struct chf_result res;
	struct chf_eval eval;
	uint32_t instances;
	uintptr_t guard_lo, guard_hi;
	uintptr_t poison_lo, poison_hi;
	uintptr_t buf_lo;
};

static struct report *shared;

static void *host_alloc(uint32_t size, void *ctx)
{
	(void)ctx;
	return malloc(size);
}

static void host_free(void *ptr, void *ctx)
{
	(void)ctx;
	free(ptr);
}

static void on_fault(int signo, siginfo_t *info, void *uctx)
{
	shared->signo = signo;
#if defined(__x86_64__)
	shared->fault_ip = (uintptr_t)((ucontext_t *)uctx)->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
	shared->fault_ip = (uintptr_t)((ucontext_t *)uctx)->uc_mcontext.pc;
#else
	(void)uctx;
#endif
	shared->fault_addr = (uintptr_t)info->si_addr;
	signal(signo, SIG_DFL);
	raise(signo);
}

static void install_fault_handler(void)
{
	static uint8_t altstack[64 * 1024];
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack) };
	struct sigaction sa;

	sigaltstack(&ss, NULL);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
}

/* The child: place, load, evaluate.  Never returns. */
static void run_child(const uint8_t *data, size_t size)
{
	static const struct chf_env env = { host_alloc, host_free, NULL };
	struct guarded_region region;
	struct chf_value values[CHF_INPUTS];
	const struct chf_value *slots[CHF_INPUT_SLOTS];
	struct chf_content content;
	uint8_t *buf;
	void *poison;
	long page = sysconf(_SC_PAGESIZE);

	struct rlimit no_core = { 0, 0 };

	setrlimit(RLIMIT_CORE, &no_core); /* the crash is expected: no core file */
	alarm(CHILD_SECONDS);
	install_fault_handler();
	poison = guarded_poison_page();
	if (!poison || guarded_map(&region, size) != 0)
		_exit(3);
	buf = guarded_place(&region, data, size);
	shared->guard_lo = (uintptr_t)region.guard;
	shared->guard_hi = (uintptr_t)region.guard + (uintptr_t)page;
	shared->poison_lo = (uintptr_t)poison;
	shared->poison_hi = (uintptr_t)poison + (uintptr_t)page;
	shared->buf_lo = (uintptr_t)buf;

	shared->stage = STAGE_LOAD;
	if (chf_load(&env, buf, (uint32_t)size, &content, &shared->res) != CHF_LOADED) {
		shared->stage = STAGE_DONE;
		_exit(0);
	}
	shared->instances = content.instance_count;

	shared->stage = STAGE_EVALUATE;
	chf_synthetic_event(values);
	chf_slots_init(slots, values, (const struct chf_value *)poison);
	chf_evaluate(&content, slots, &shared->eval);
	chf_unload(&env, &content);
	shared->stage = STAGE_DONE;
	_exit(0);
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static const char *stage_name(int stage)
{
	switch (stage) {
	case STAGE_LOAD: return "load";
	case STAGE_EVALUATE: return "evaluate";
	case STAGE_DONE: return "done";
	default: return "start";
	}
}

/* Where the faulting address lies, in the words a driver engineer uses. */
static const char *fault_region(const struct report *r)
{
	uintptr_t a = r->fault_addr;

	if (a >= r->guard_lo && a < r->guard_hi)
		return "guard page after the content buffer";
	if (a >= r->poison_lo && a < r->poison_hi)
		return "poisoned input slot";
	return "unmapped memory";
}

/* Name of the function holding the faulting instruction (needs -rdynamic). */
static const char *fault_function(const struct report *r)
{
	Dl_info info;

	if (r->fault_ip && dladdr((void *)r->fault_ip, &info) && info.dli_sname)
		return info.dli_sname;
	return "unknown";
}

static void print_report(const char *path, size_t size, int status)
{
	const struct report *r = shared;
	char reason[256];
	const char *outcome;

	printf("{\"build\": \"%s\", \"file\": ", CHF_BUILD_NAME);
	json_str(path);
	printf(", \"size\": %zu", size);

	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
		outcome = "timeout";
		snprintf(reason, sizeof(reason),
			 "interpreter still running after %u s during %s",
			 CHILD_SECONDS, stage_name(r->stage));
	} else if (WIFSIGNALED(status) || r->signo) {
		int sig = r->signo ? r->signo : WTERMSIG(status);

		outcome = "crash";
		snprintf(reason, sizeof(reason),
			 "%s reading 0x%lx (%s) in %s during %s", strsignal(sig),
			 (unsigned long)r->fault_addr, fault_region(r),
			 fault_function(r), stage_name(r->stage));
	} else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
		   r->stage != STAGE_DONE) {
		fprintf(stderr, "chf-check: %s: interpreter child failed (status %d)\n",
			path, status);
		exit(2);
	} else if (r->res.status != CHF_LOADED) {
		outcome = "rejected";
		snprintf(reason, sizeof(reason), "%s", r->res.text);
	} else {
		outcome = "loaded";
		snprintf(reason, sizeof(reason),
			 "%u instances loaded; named-pipe event: %u evaluated, %u matched",
			 r->instances, r->eval.instances, r->eval.matched);
	}

	printf(", \"outcome\": \"%s\", \"reason\": ", outcome);
	json_str(reason);
	/* Where the outcome was decided: a rejection at load, a clean run after
	 * the event was evaluated, a crash wherever it happened. */
	printf(", \"stage\": \"%s\"", !strcmp(outcome, "rejected") ? "load" :
	       !strcmp(outcome, "loaded") ? "evaluate" : stage_name(r->stage));
	if (!strcmp(outcome, "rejected")) {
		printf(", \"reason_code\": \"%s\", \"offset\": %u",
		       chf_reason_name(r->res.reason), r->res.offset);
	} else {
		printf(", \"reason_code\": null, \"offset\": null");
	}
	if (!strcmp(outcome, "crash")) {
		int sig = r->signo ? r->signo : WTERMSIG(status);

		printf(", \"crash\": {\"signal\": \"%s\", \"address\": \"0x%lx\", "
		       "\"region\": \"%s\", \"function\": \"%s\", \"stage\": \"%s\"",
		       sig == SIGBUS ? "SIGBUS" : sig == SIGSEGV ? "SIGSEGV" : "other",
		       (unsigned long)r->fault_addr, fault_region(r),
		       fault_function(r), stage_name(r->stage));
		if (r->fault_addr >= r->guard_lo && r->fault_addr < r->guard_hi)
			printf(", \"buffer_offset\": %lu",
			       (unsigned long)(r->fault_addr - r->buf_lo));
		printf("}");
	} else {
		printf(", \"crash\": null");
	}
	if (!strcmp(outcome, "loaded"))
		printf(", \"instances\": %u, \"event\": {\"instances\": %u, "
		       "\"matched\": %u, \"criteria\": %u, \"out_of_bounds\": %u}",
		       r->instances, r->eval.instances, r->eval.matched,
		       r->eval.criteria, r->eval.out_of_bounds);
	printf("}\n");
}

static uint8_t *read_file(const char *path, size_t *size)
{
	struct stat st;
	uint8_t *data;
	size_t got = 0;
	int fd = open(path, O_RDONLY);

	if (fd < 0) {
		fprintf(stderr, "chf-check: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		fprintf(stderr, "chf-check: %s: not a regular file\n", path);
		exit(2);
	}
	if ((uint64_t)st.st_size > MAX_FILE_SIZE) {
		fprintf(stderr, "chf-check: %s: %lld bytes, larger than the %u-byte "
			"limit for a channel file\n", path, (long long)st.st_size,
			MAX_FILE_SIZE);
		exit(2);
	}
	data = malloc(st.st_size ? (size_t)st.st_size : 1u);
	if (!data) {
		fprintf(stderr, "chf-check: %s: out of memory\n", path);
		exit(2);
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, data + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "chf-check: %s: read failed: %s\n", path,
				n < 0 ? strerror(errno) : "file shrank while reading");
			exit(2);
		}
		got += (size_t)n;
	}
	close(fd);
	*size = got;
	return data;
}

int main(int argc, char **argv)
{
	size_t size;
	uint8_t *data;
	pid_t pid;
	int status;

	if (argc != 2 || argv[1][0] == '\0') {
		fprintf(stderr, "usage: %s FILE\n", argv[0]);
		return 2;
	}
	data = read_file(argv[1], &size);
	shared = mmap(NULL, sizeof(*shared), PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED) {
		perror("chf-check: mmap");
		return 2;
	}
	memset(shared, 0, sizeof(*shared));
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		perror("chf-check: fork");
		return 2;
	}
	if (pid == 0)
		run_child(data, size);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			perror("chf-check: waitpid");
			return 2;
		}
	}
	print_report(argv[1], size, status);
	return 0;
}
