/*
 * harnessflt.c - the sample boot-start security sensor for Windows: a file
 * system minifilter that loads channel files (shared/spec/channel-file-v1.md)
 * and evaluates their template instances against named-pipe events with the
 * portable interpreter in drivers/common/chf_interp.c.
 *
 * One source, two builds: -DCHF_HARDENED=0 (vulnerable, models sensor 7.11)
 * and -DCHF_HARDENED=1 (hardened).  Built here with mingw-w64 and
 * fltmgr_min.h; with the WDK it includes <fltKernel.h> instead.
 *
 * Life cycle
 *   DriverEntry       FltRegisterFilter + FltStartFiltering, then queues two
 *                     routines and takes a reference on its driver object so
 *                     that the image stays loaded until both have run:
 *   reinitialization  (IoRegisterDriverReinitialization: runs after DriverEntry
 *                     for a load after boot, after the boot drivers during
 *                     boot) asks IoGetBootDiskInformation, in a
 *                     reinitialization routine as documented, whether the boot
 *                     is over.  STATUS_TOO_LATE: started after boot (fltmc
 *                     load), no boot reinitialization will come, so the
 *                     content is read now.
 *   boot reinit       (IoRegisterBootDriverReinitialization: after the boot
 *                     devices have started) reads the content during boot,
 *                     when file systems are ready.  Only one of the two reads.
 *   content load      every C-00000291-<8 digits>-<8 digits>.sys in
 *                     \SystemRoot\System32\drivers\HarnessSensor\, in order
 *                     of sequence, then variant (highest sequence last).
 *                     Each file's bytes end at a page boundary followed by
 *                     an unmapped guard page, so a vulnerable read past the
 *                     end faults every time.  Then one synthetic named-pipe
 *                     event is evaluated and the HARNESS-SENSOR-LOADED marker
 *                     is printed.  Same rules and lines as the Linux module
 *                     (drivers/linux/harness_sensor.c, drivers/linux/README.md).
 *   pre-create        IRP_MJ_CREATE_NAMED_PIPE on the named-pipe file system:
 *                     the 20 synthetic attributes with slot 0 replaced by the
 *                     real pipe name, evaluated against the loaded content.
 *   unload            FltUnregisterFilter, then everything is freed.  A
 *                     mandatory unload while a routine is still queued marks
 *                     the driver unloaded; the routine then only drops the
 *                     driver-object reference (ObDereferenceObjectDeferDelete),
 *                     so no routine ever runs in an unloaded image.
 *
 * Input guard slots (chf_slots_init) point into a MmAllocateMappingAddress
 * reservation that is never mapped: a canonical kernel address that faults
 * when read, so the vulnerable read of input 21 bugchecks 0x50
 * PAGE_FAULT_IN_NONPAGED_AREA, as Channel File 291 did.
 *
 * Console lines (DbgPrintEx, component IHVDRIVER, level ERROR, so they pass
 * the default debug print filter) mirror the Linux module:
 *   harness_sensor: <name>: ignored (not a channel 291 file)
 *   harness_sensor: <file>: loaded (N instances)
 *   harness_sensor: <file>: rejected: <text> [<reason>]
 *   harness_sensor: named-pipe event: N instances evaluated, M matched
 *   HARNESS-SENSOR-LOADED build=<vulnerable|hardened> files=F loaded=L rejected=R
 */
#if defined(__MINGW32__)
#include "fltmgr_min.h"
#include "ntoskrnl_min.h"
#else
#include <fltKernel.h>
#endif

#include "chf_interp.h"

/* ------------------------------------------------------------- constants */

#define HS_PREFIX "harness_sensor: "
#define HS_CONTENT_DIR L"\\SystemRoot\\System32\\drivers\\HarnessSensor"
#define HS_CONTENT_DIR_A "\\SystemRoot\\System32\\drivers\\HarnessSensor"
#define HS_CHANNEL_NUMBER 291u
/* Same cap as the Linux module and the host checker: 16 MiB. */
#define HS_MAX_FILE_SIZE (16u * 1024u * 1024u)
#define HS_MAX_FILES 1024u
/* "C-00000291-00000000-00000032.sys" */
#define HS_NAME_LEN 32u
#define HS_PIPE_NAME_MAX 1024u
#define HS_DIR_BUFFER 16384u
/* The driver's own word for the host (see "Status key" above). */
#define HS_PARAMETERS L"\\Parameters"
#define HS_STATE_KEY L"State"
/* The reload port (see "Online reload" above). */
#define HS_PORT_NAME L"\\HarnessFltPort"
#define HS_VERDICT_LEN 200u

#define HS_TAG(a, b, c, d) \
	((ULONG)(a) | ((ULONG)(b) << 8) | ((ULONG)(c) << 16) | ((ULONG)(d) << 24))
#define HS_TAG_CONTENT HS_TAG('H', 's', 'C', 't') /* interpreter memory */
#define HS_TAG_WORK HS_TAG('H', 's', 'W', 'k')	  /* lists, events */
#define HS_TAG_GUARD HS_TAG('H', 's', 'G', 'd')	  /* guarded file bytes */
#define HS_TAG_POISON HS_TAG('H', 's', 'P', 'z')  /* never-mapped poison */

#define hs_log(...) DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_ERROR_LEVEL, __VA_ARGS__)

/* Non-paged, zeroed pool (ExAllocatePool2, Windows 10 2004 and later; it
 * replaces the deprecated ExAllocatePoolWithTag). */
#define hs_pool_alloc(size, tag) ExAllocatePool2(POOL_FLAG_NON_PAGED, (size), (tag))

/* ----------------------------------------------------------------- types */

/* One channel file of the content directory; the content set is a list of
 * these in load order (as sensor_files in the Linux module). */
struct hs_file {
	struct hs_file *next;
	ULONG variant;
	ULONG sequence;
	BOOLEAN is_directory;
	BOOLEAN has_content; /* content holds a loaded file */
	BOOLEAN kept;	     /* rejected, last good content kept (hardened reload) */
	struct chf_content content;
	char name[HS_NAME_LEN + 1];
	char verdict[HS_VERDICT_LEN]; /* a rejected file: "<text> [<reason>]" */
};

/* Why a file was refused: the interpreter's verdict or the driver's own. */
struct hs_outcome {
	const char *reason; /* short stable name, shown in [brackets] */
	char text[128];
	ULONG len;
};

/* A file's bytes, ending at a page boundary in front of an unmapped page. */
struct hs_guarded {
	PVOID base;  /* MmAllocateMappingAddress reservation: pages + 1 */
	PMDL mdl;    /* the pages mapped at base */
	PUCHAR data; /* first byte; data + size is the guard page */
	ULONG size;
	SIZE_T mapped; /* bytes backed by memory */
};

/* One named-pipe event: its values and the interpreter's slot table. */
struct hs_event {
	struct chf_value values[CHF_INPUTS];
	const struct chf_value *slots[CHF_INPUT_SLOTS];
	UCHAR pipe_name[HS_PIPE_NAME_MAX];
};

/*
 * Driver state.  The content set (files) is read by the pre-create callback
 * under the shared lock and replaced by the (single) content load pass under
 * the exclusive lock.  Only one load pass ever runs: from the
 * reinitialization routine (a load after boot) or from the boot
 * reinitialization routine (a boot start).
 */
static struct {
	PFLT_FILTER filter;
	ERESOURCE lock;	/* protects files and every has_content in it */
	BOOLEAN lock_ready;
	PVOID poison;	/* reserved, never mapped */
	struct hs_file *files;	/* the content set, in load order */
	volatile LONG instances; /* instances loaded, for a cheap early-out */
	PDRIVER_OBJECT driver;
	volatile LONG routines;	/* queued reinitialization routines not yet run */
	volatile LONG content_pending; /* the one content load has not run yet */
	volatile LONG unloaded;	/* a mandatory unload came first: do nothing */
	volatile LONG boot_reinit_ran;
	volatile LONG loading;	/* a load pass runs (1 from DriverEntry to the first) */
	ULONG generation;	/* load passes done: 1 = the boot's, more = reloads */
	UNICODE_STRING parameters; /* <service key>\Parameters, pool */
	PFLT_PORT port;		/* the reload port (server side) */
	PFLT_PORT client;	/* its one connection */
} g;

DRIVER_INITIALIZE DriverEntry;

/* ------------------------------------------------------ interpreter memory */

static void *hs_alloc(uint32_t size, void *ctx)
{
	UNREFERENCED_PARAMETER(ctx);
	return hs_pool_alloc(size, HS_TAG_CONTENT);
}

static void hs_free(void *ptr, void *ctx)
{
	UNREFERENCED_PARAMETER(ctx);
	ExFreePoolWithTag(ptr, HS_TAG_CONTENT);
}

static const struct chf_env hs_env = { hs_alloc, hs_free, NULL };

/* ------------------------------------------------------------------ lock */

static void hs_lock_shared(void)
{
	KeEnterCriticalRegion();
	ExAcquireResourceSharedLite(&g.lock, TRUE);
}

static void hs_lock_exclusive(void)
{
	KeEnterCriticalRegion();
	ExAcquireResourceExclusiveLite(&g.lock, TRUE);
}

static void hs_unlock(void)
{
	ExReleaseResourceLite(&g.lock);
	KeLeaveCriticalRegion();
}

/* --------------------------------------------------------- refusal texts */

static void hs_put_str(struct hs_outcome *o, const char *s)
{
	while (*s && o->len + 1 < sizeof(o->text))
		o->text[o->len++] = *s++;
	o->text[o->len] = '\0';
}

static void hs_put_dec(struct hs_outcome *o, ULONGLONG v)
{
	char digits[24];
	int n = 0;

	do {
		digits[n++] = (char)('0' + (int)(v % 10u));
		v /= 10u;
	} while (v && n < (int)sizeof(digits));
	while (n > 0 && o->len + 1 < sizeof(o->text))
		o->text[o->len++] = digits[--n];
	o->text[o->len] = '\0';
}

/* "0x%08lx", as NTSTATUS values are usually written. */
static void hs_put_status(struct hs_outcome *o, NTSTATUS status)
{
	static const char hex[] = "0123456789abcdef";
	ULONG v = (ULONG)status;
	int shift;

	hs_put_str(o, "0x");
	for (shift = 28; shift >= 0 && o->len + 1 < sizeof(o->text); shift -= 4)
		o->text[o->len++] = hex[(v >> shift) & 0xF];
	o->text[o->len] = '\0';
}

/* Start a refusal by the driver itself (before the interpreter sees it). */
static struct hs_outcome *hs_refuse(struct hs_outcome *o, const char *reason,
				    const char *text)
{
	o->reason = reason;
	o->len = 0;
	o->text[0] = '\0';
	hs_put_str(o, text);
	return o;
}

/* ------------------------------------------------------- guarded placement */

/*
 * Reserve pages + 1 pages of system address space, back only the first
 * `pages` with memory, and return a pointer such that data + size is the
 * first byte of the unbacked page.  Reading past the end therefore faults
 * (bugcheck 0x50), as Driver Verifier's special pool would make it.  An
 * empty file still gets a page, so data points at the guard page.
 */
static NTSTATUS hs_guarded_alloc(struct hs_guarded *gm, ULONG size)
{
	ULONG pages = size ? (ULONG)BYTES_TO_PAGES(size) : 1u;
	SIZE_T bytes = (SIZE_T)pages * PAGE_SIZE;
	PHYSICAL_ADDRESS low, high, skip;

	gm->mdl = NULL;
	gm->data = NULL;
	gm->size = size;
	gm->mapped = bytes;

	gm->base = MmAllocateMappingAddress(bytes + PAGE_SIZE, HS_TAG_GUARD);
	if (!gm->base)
		return STATUS_INSUFFICIENT_RESOURCES;

	low.QuadPart = 0;
	high.QuadPart = -1;
	skip.QuadPart = 0;
	gm->mdl = MmAllocatePagesForMdlEx(low, high, skip, bytes, MmCached,
					  MM_ALLOCATE_FULLY_REQUIRED);
	if (gm->mdl && (MmGetMdlByteCount(gm->mdl) != bytes ||
			!MmMapLockedPagesWithReservedMapping(gm->base, HS_TAG_GUARD,
							     gm->mdl, MmCached))) {
		MmFreePagesFromMdl(gm->mdl);
		ExFreePool(gm->mdl);
		gm->mdl = NULL;
	}
	if (!gm->mdl) {
		MmFreeMappingAddress(gm->base, HS_TAG_GUARD);
		gm->base = NULL;
		return STATUS_INSUFFICIENT_RESOURCES;
	}
	gm->data = (PUCHAR)gm->base + bytes - size;
	return STATUS_SUCCESS;
}

static void hs_guarded_free(struct hs_guarded *gm)
{
	if (gm->mdl) {
		MmUnmapReservedMapping(gm->base, HS_TAG_GUARD, gm->mdl);
		MmFreePagesFromMdl(gm->mdl);
		ExFreePool(gm->mdl);
		gm->mdl = NULL;
	}
	if (gm->base) {
		MmFreeMappingAddress(gm->base, HS_TAG_GUARD);
		gm->base = NULL;
	}
	gm->data = NULL;
}

/* ------------------------------------------------------------ file names */

static BOOLEAN hs_digits(const WCHAR *s, ULONG *value)
{
	ULONG i, v = 0;

	for (i = 0; i < 8; i++) {
		if (s[i] < L'0' || s[i] > L'9')
			return FALSE;
		v = v * 10u + (ULONG)(s[i] - L'0');
	}
	*value = v;
	return TRUE;
}

/* C-<channel:8 digits>-<variant:8 digits>-<sequence:8 digits>.sys, exactly
 * as the Linux module matches it (case included). */
static BOOLEAN hs_parse_name(const WCHAR *s, ULONG bytes, ULONG *channel,
			     ULONG *variant, ULONG *sequence)
{
	return bytes == HS_NAME_LEN * sizeof(WCHAR) && s[0] == L'C' && s[1] == L'-' &&
	       hs_digits(s + 2, channel) && s[10] == L'-' && hs_digits(s + 11, variant) &&
	       s[19] == L'-' && hs_digits(s + 20, sequence) && s[28] == L'.' &&
	       s[29] == L's' && s[30] == L'y' && s[31] == L's';
}

/* Load order: sequence, then variant, then name (highest sequence last). */
static int hs_file_cmp(const struct hs_file *a, const struct hs_file *b)
{
	ULONG i;

	if (a->sequence != b->sequence)
		return a->sequence < b->sequence ? -1 : 1;
	if (a->variant != b->variant)
		return a->variant < b->variant ? -1 : 1;
	for (i = 0; i < HS_NAME_LEN; i++)
		if (a->name[i] != b->name[i])
			return (UCHAR)a->name[i] < (UCHAR)b->name[i] ? -1 : 1;
	return 0;
}

/* UTF-16 to UTF-8 (unpaired surrogates become U+FFFD); truncates at cap. */
static ULONG hs_utf8(const WCHAR *s, ULONG chars, PUCHAR out, ULONG cap)
{
	ULONG i = 0, n = 0;

	while (i < chars) {
		ULONG c = s[i++];
		ULONG need;

		if (c >= 0xD800 && c <= 0xDBFF && i < chars && s[i] >= 0xDC00 &&
		    s[i] <= 0xDFFF)
			c = 0x10000 + ((c - 0xD800) << 10) + (ULONG)(s[i++] - 0xDC00);
		else if (c >= 0xD800 && c <= 0xDFFF)
			c = 0xFFFD;
		need = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
		if (n + need > cap)
			break;
		switch (need) {
		case 1:
			out[n++] = (UCHAR)c;
			break;
		case 2:
			out[n++] = (UCHAR)(0xC0 | (c >> 6));
			out[n++] = (UCHAR)(0x80 | (c & 0x3F));
			break;
		case 3:
			out[n++] = (UCHAR)(0xE0 | (c >> 12));
			out[n++] = (UCHAR)(0x80 | ((c >> 6) & 0x3F));
			out[n++] = (UCHAR)(0x80 | (c & 0x3F));
			break;
		default:
			out[n++] = (UCHAR)(0xF0 | (c >> 18));
			out[n++] = (UCHAR)(0x80 | ((c >> 12) & 0x3F));
			out[n++] = (UCHAR)(0x80 | ((c >> 6) & 0x3F));
			out[n++] = (UCHAR)(0x80 | (c & 0x3F));
			break;
		}
	}
	return n;
}

/* Printable form of a directory entry name for an "ignored" line: UTF-8,
 * control characters as '?', truncated to fit. */
static void hs_printable_name(const WCHAR *s, ULONG bytes, char *out, ULONG cap)
{
	ULONG n = hs_utf8(s, bytes / sizeof(WCHAR), (PUCHAR)out, cap - 1), i;

	for (i = 0; i < n; i++)
		if ((UCHAR)out[i] < 0x20 || out[i] == 0x7F)
			out[i] = '?';
	out[n] = '\0';
}

/* -------------------------------------------------------- content set */

static void hs_free_files(struct hs_file *files)
{
	while (files) {
		struct hs_file *next = files->next;

		if (files->has_content)
			chf_unload(&hs_env, &files->content);
		ExFreePoolWithTag(files, HS_TAG_WORK);
		files = next;
	}
}

static LONG hs_count_instances(const struct hs_file *files)
{
	LONG n = 0;

	for (; files; files = files->next)
		if (files->has_content)
			n += (LONG)files->content.instance_count;
	return n;
}

/* ---------------------------------------------------------- directory I/O */

static NTSTATUS hs_open_content_dir(HANDLE *dir)
{
	UNICODE_STRING path;
	OBJECT_ATTRIBUTES oa;
	IO_STATUS_BLOCK iosb;

	RtlInitUnicodeString(&path, HS_CONTENT_DIR);
	InitializeObjectAttributes(&oa, &path, OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE,
				   NULL, NULL);
	return ZwOpenFile(dir, FILE_LIST_DIRECTORY | SYNCHRONIZE, &oa, &iosb,
			  FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
			  FILE_DIRECTORY_FILE | FILE_SYNCHRONOUS_IO_NONALERT);
}

/* Add one directory entry: a channel file goes into *found in load order,
 * any other name is reported as ignored. */
static NTSTATUS hs_scan_entry(const FILE_DIRECTORY_INFORMATION *e,
			      struct hs_file **found, ULONG *count)
{
	struct hs_file *f, **pp;
	ULONG channel, variant, sequence, i;

	if ((e->FileNameLength == 2 && e->FileName[0] == L'.') ||
	    (e->FileNameLength == 4 && e->FileName[0] == L'.' && e->FileName[1] == L'.'))
		return STATUS_SUCCESS;
	if (!hs_parse_name(e->FileName, e->FileNameLength, &channel, &variant,
			   &sequence) ||
	    channel != HS_CHANNEL_NUMBER) {
		char shown[128];

		hs_printable_name(e->FileName, e->FileNameLength, shown, sizeof(shown));
		hs_log(HS_PREFIX "%s: ignored (not a channel %lu file)\n", shown,
		       (ULONG)HS_CHANNEL_NUMBER);
		return STATUS_SUCCESS;
	}
	if (*count == HS_MAX_FILES) {
		hs_log(HS_PREFIX "more than %lu channel files, ignoring the rest\n",
		       (ULONG)HS_MAX_FILES);
		return STATUS_NO_MORE_FILES;
	}
	f = hs_pool_alloc(sizeof(*f), HS_TAG_WORK);
	if (!f)
		return STATUS_INSUFFICIENT_RESOURCES;
	f->variant = variant;
	f->sequence = sequence;
	f->is_directory = (e->FileAttributes & FILE_ATTRIBUTE_DIRECTORY) != 0;
	f->has_content = FALSE;
	for (i = 0; i < HS_NAME_LEN; i++)
		f->name[i] = (char)e->FileName[i];
	f->name[HS_NAME_LEN] = '\0';
	for (pp = found; *pp && hs_file_cmp(*pp, f) <= 0; pp = &(*pp)->next)
		;
	f->next = *pp;
	*pp = f;
	(*count)++;
	return STATUS_SUCCESS;
}

/* The channel files of the open content directory, in load order. */
static NTSTATUS hs_list_dir(HANDLE dir, struct hs_file **found)
{
	PUCHAR buf;
	BOOLEAN restart = TRUE;
	ULONG count = 0;
	NTSTATUS status;

	*found = NULL;
	buf = hs_pool_alloc(HS_DIR_BUFFER, HS_TAG_WORK);
	if (!buf)
		return STATUS_INSUFFICIENT_RESOURCES;
	for (;;) {
		IO_STATUS_BLOCK iosb;
		PFILE_DIRECTORY_INFORMATION e;

		status = ZwQueryDirectoryFile(dir, NULL, NULL, NULL, &iosb, buf,
					      HS_DIR_BUFFER, FileDirectoryInformation,
					      FALSE, NULL, restart);
		restart = FALSE;
		if (!NT_SUCCESS(status))
			break;
		e = (PFILE_DIRECTORY_INFORMATION)buf;
		for (;;) {
			status = hs_scan_entry(e, found, &count);
			if (!NT_SUCCESS(status) || !e->NextEntryOffset)
				break;
			e = (PFILE_DIRECTORY_INFORMATION)((PUCHAR)e + e->NextEntryOffset);
		}
		if (!NT_SUCCESS(status))
			break;
	}
	ExFreePoolWithTag(buf, HS_TAG_WORK);
	if (status == STATUS_NO_MORE_FILES || status == STATUS_NO_SUCH_FILE)
		return STATUS_SUCCESS; /* the end of the listing (or the cap) */
	hs_free_files(*found);
	*found = NULL;
	return status;
}

/* ---------------------------------------------------------- file loading */

/*
 * Read f (relative to the open content directory) into guarded memory and
 * hand the bytes to the interpreter.  On success f->content holds the file's
 * content; otherwise out says why not.
 */
static void hs_load_file(HANDLE dir, struct hs_file *f, struct hs_outcome *out)
{
	WCHAR wname[HS_NAME_LEN];
	UNICODE_STRING name;
	OBJECT_ATTRIBUTES oa;
	IO_STATUS_BLOCK iosb;
	FILE_STANDARD_INFORMATION info;
	struct hs_guarded gm;
	struct chf_result res;
	HANDLE h;
	ULONG i, size, done;
	NTSTATUS status;

	if (f->is_directory) {
		hs_refuse(out, "not-regular-file", "not a regular file");
		return;
	}
	for (i = 0; i < HS_NAME_LEN; i++)
		wname[i] = (WCHAR)(UCHAR)f->name[i];
	name.Buffer = wname;
	name.Length = name.MaximumLength = (USHORT)sizeof(wname);
	InitializeObjectAttributes(&oa, &name, OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE,
				   dir, NULL);
	status = ZwOpenFile(&h, GENERIC_READ | SYNCHRONIZE, &oa, &iosb, FILE_SHARE_READ,
			    FILE_NON_DIRECTORY_FILE | FILE_SYNCHRONOUS_IO_NONALERT);
	if (!NT_SUCCESS(status)) {
		hs_put_status(hs_refuse(out, "open-failed", "cannot open the file (status "),
			      status);
		hs_put_str(out, ")");
		return;
	}
	status = ZwQueryInformationFile(h, &iosb, &info, sizeof(info),
					FileStandardInformation);
	if (!NT_SUCCESS(status)) {
		hs_put_status(hs_refuse(out, "read-error", "cannot read the file (status "),
			      status);
		hs_put_str(out, ")");
		goto out_close;
	}
	if (info.EndOfFile.QuadPart < 0 ||
	    (ULONGLONG)info.EndOfFile.QuadPart > HS_MAX_FILE_SIZE) {
		hs_refuse(out, "too-large", "file is ");
		hs_put_dec(out, (ULONGLONG)info.EndOfFile.QuadPart);
		hs_put_str(out, " bytes, the limit is ");
		hs_put_dec(out, HS_MAX_FILE_SIZE);
		hs_put_str(out, " bytes");
		goto out_close;
	}
	size = (ULONG)info.EndOfFile.QuadPart;
	if (!NT_SUCCESS(hs_guarded_alloc(&gm, size))) {
		hs_refuse(out, "out-of-memory", "out of memory for a ");
		hs_put_dec(out, gm.mapped);
		hs_put_str(out, "-byte buffer");
		goto out_close;
	}
	for (done = 0; done < size; done += (ULONG)iosb.Information) {
		LARGE_INTEGER offset;

		offset.QuadPart = done;
		status = ZwReadFile(h, NULL, NULL, NULL, &iosb, gm.data + done,
				    size - done, &offset, NULL);
		if (status == STATUS_END_OF_FILE || (NT_SUCCESS(status) && !iosb.Information)) {
			hs_refuse(out, "read-error", "file changed size while being read (");
			hs_put_dec(out, size);
			hs_put_str(out, ", then ");
			hs_put_dec(out, done);
			hs_put_str(out, " bytes)");
			goto out_free;
		}
		if (!NT_SUCCESS(status)) {
			hs_put_status(hs_refuse(out, "read-error",
						"cannot read the file (status "),
				      status);
			hs_put_str(out, ")");
			goto out_free;
		}
	}
	/* The vulnerable build may read past gm.data + size here and fault on
	 * the guard page: that is the modelled bug.  An empty file is rejected
	 * by chf_load without reading. */
	chf_load(&hs_env, gm.data, size, &f->content, &res);
	f->has_content = res.status == CHF_LOADED;
	if (!f->has_content) {
		hs_refuse(out, chf_reason_name(res.reason), res.text);
	}
out_free:
	hs_guarded_free(&gm);
out_close:
	ZwClose(h);
}

/* --------------------------------------------------------------- events */

static struct hs_event *hs_event_new(void)
{
	struct hs_event *ev =
		hs_pool_alloc(sizeof(*ev), HS_TAG_WORK);

	if (ev) {
		chf_synthetic_event(ev->values);
		chf_slots_init(ev->slots, ev->values, (const struct chf_value *)g.poison);
	}
	return ev;
}

/* Input 0 of a named-pipe event is the pipe name. */
static void hs_event_set_pipe_name(struct hs_event *ev, PCUNICODE_STRING name)
{
	ev->values[0].len = hs_utf8(name->Buffer, name->Length / sizeof(WCHAR),
				    ev->pipe_name, HS_PIPE_NAME_MAX);
	ev->values[0].data = ev->pipe_name;
}

/* Evaluate one event against every loaded file, in load order. */
static void hs_evaluate(const struct hs_event *ev, struct chf_eval *sum)
{
	const struct hs_file *f;

	sum->instances = sum->matched = sum->criteria = sum->out_of_bounds = 0;
	hs_lock_shared();
	for (f = g.files; f; f = f->next) {
		struct chf_eval one;

		if (!f->has_content)
			continue;
		chf_evaluate(&f->content, ev->slots, &one);
		sum->instances += one.instances;
		sum->matched += one.matched;
		sum->criteria += one.criteria;
		sum->out_of_bounds += one.out_of_bounds;
	}
	hs_unlock();
}

/* ----------------------------------------------------------- status key */

/*
 * The driver's own word, for a host without a kernel debugger: volatile
 * values under <service key>\Parameters\State (gone at every boot, so a
 * stale word from the last boot cannot be read as this one's):
 *   Status     REG_SZ        starting | loaded | empty
 *   Build      REG_SZ        vulnerable | hardened
 *   Loaded     REG_MULTI_SZ  "<file>" per loaded file, in load order
 *   Rejected   REG_MULTI_SZ  "<file>: <text> [<reason>]" per rejected file
 *                            ("; keeping last good content" when kept)
 *   Error      REG_SZ        why the content directory could not be read, or ""
 *   Instances  REG_DWORD     instances in force
 *   Generation REG_DWORD     load passes done (1: the boot's; more: reloads)
 *   Finished   REG_DWORD     1 once a load pass and its event evaluation ended
 * A failure to write is logged and otherwise ignored: the sensor runs on.
 */
static NTSTATUS hs_state_open(HANDLE *state)
{
	OBJECT_ATTRIBUTES oa;
	UNICODE_STRING name;
	HANDLE params;
	ULONG disposition;
	NTSTATUS status;

	if (!g.parameters.Buffer)
		return STATUS_DEVICE_NOT_READY;
	InitializeObjectAttributes(&oa, &g.parameters, OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE,
				   NULL, NULL);
	status = ZwCreateKey(&params, KEY_CREATE_SUB_KEY, &oa, 0, NULL,
			     REG_OPTION_NON_VOLATILE, &disposition);
	if (!NT_SUCCESS(status))
		return status;
	RtlInitUnicodeString(&name, HS_STATE_KEY);
	InitializeObjectAttributes(&oa, &name, OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE, params,
				   NULL);
	status = ZwCreateKey(state, KEY_SET_VALUE, &oa, 0, NULL, REG_OPTION_VOLATILE,
			     &disposition);
	ZwClose(params);
	return status;
}

/* Widen ASCII (bytes over 0x7F become '?') into out; returns chars written. */
static ULONG hs_widen(const char *s, PWCHAR out)
{
	ULONG n = 0;

	for (; *s; s++, n++)
		if (out)
			out[n] = (UCHAR)*s < 0x80 ? (WCHAR)(UCHAR)*s : L'?';
	return n;
}

/* Append s to the HS_VERDICT_LEN buffer dst at n (truncating); returns the new length. */
static ULONG hs_append(char *dst, ULONG n, const char *s)
{
	while (*s && n + 1 < HS_VERDICT_LEN)
		dst[n++] = *s++;
	dst[n] = '\0';
	return n;
}

static ULONG hs_strlen(const char *s)
{
	ULONG n = 0;

	while (s[n])
		n++;
	return n;
}

static NTSTATUS hs_set_value(HANDLE key, PCWSTR value, ULONG type, PVOID data, ULONG bytes)
{
	UNICODE_STRING name;

	RtlInitUnicodeString(&name, value);
	return ZwSetValueKey(key, &name, 0, type, data, bytes);
}

static NTSTATUS hs_set_dword(HANDLE key, PCWSTR value, ULONG v)
{
	return hs_set_value(key, value, REG_DWORD, &v, sizeof(v));
}

/* REG_SZ of an ASCII string (at most 255 characters). */
static NTSTATUS hs_set_sz(HANDLE key, PCWSTR value, const char *text)
{
	WCHAR buf[256];
	ULONG n = hs_strlen(text) < 255u ? hs_strlen(text) : 255u;
	ULONG i;

	for (i = 0; i < n; i++)
		buf[i] = (UCHAR)text[i] < 0x80 ? (WCHAR)(UCHAR)text[i] : L'?';
	buf[n] = L'\0';
	return hs_set_value(key, value, REG_SZ, buf, (n + 1) * sizeof(WCHAR));
}

/* REG_MULTI_SZ of the loaded (or the rejected) files of the content set. */
static NTSTATUS hs_set_files(HANDLE key, PCWSTR value, BOOLEAN rejected)
{
	const struct hs_file *f;
	ULONG chars = 1, n = 0;
	PWCHAR buf;
	NTSTATUS status;

	for (f = g.files; f; f = f->next)
		if (rejected ? !f->has_content || f->kept : f->has_content && !f->kept)
			chars += HS_NAME_LEN + 1 + (rejected ? 2 + hs_strlen(f->verdict) : 0);
	buf = hs_pool_alloc((chars + 1) * sizeof(WCHAR), HS_TAG_WORK);
	if (!buf)
		return STATUS_INSUFFICIENT_RESOURCES;
	for (f = g.files; f; f = f->next) {
		if (!(rejected ? !f->has_content || f->kept : f->has_content && !f->kept))
			continue;
		n += hs_widen(f->name, buf + n);
		if (rejected) {
			n += hs_widen(": ", buf + n);
			n += hs_widen(f->verdict, buf + n);
		}
		buf[n++] = L'\0';
	}
	buf[n++] = L'\0';
	if (n == 1)
		buf[n++] = L'\0'; /* an empty list: two terminators */
	status = hs_set_value(key, value, REG_MULTI_SZ, buf, n * sizeof(WCHAR));
	ExFreePoolWithTag(buf, HS_TAG_WORK);
	return status;
}

/* Write the state: `word` alone (full FALSE) or with the content set's
 * lists (full TRUE: call with the content lock held, shared at least). */
static void hs_status_write(const char *word, BOOLEAN full, BOOLEAN finished, const char *error)
{
	HANDLE key;
	NTSTATUS status = hs_state_open(&key);

	if (NT_SUCCESS(status)) {
		status = hs_set_sz(key, L"Status", word);
		if (NT_SUCCESS(status))
			status = hs_set_sz(key, L"Build", CHF_BUILD_NAME);
		if (NT_SUCCESS(status) && full) {
			status = hs_set_files(key, L"Loaded", FALSE);
			if (NT_SUCCESS(status))
				status = hs_set_files(key, L"Rejected", TRUE);
			if (NT_SUCCESS(status))
				status = hs_set_sz(key, L"Error", error ? error : "");
			if (NT_SUCCESS(status))
				status = hs_set_dword(key, L"Instances",
						      (ULONG)hs_count_instances(g.files));
			if (NT_SUCCESS(status))
				status = hs_set_dword(key, L"Generation", g.generation);
		}
		if (NT_SUCCESS(status))
			status = hs_set_dword(key, L"Finished", finished ? 1u : 0u);
		ZwClose(key);
	}
	if (!NT_SUCCESS(status))
		hs_log(HS_PREFIX "cannot write the status key (status 0x%08lx)\n", (ULONG)status);
}

/* Hardened build, on a reload: give the rejected file f the content its name
 * had before (in the set still in force), so a bad update of a file keeps
 * the last good instances.  Called with the lock held exclusive. */
static BOOLEAN hs_keep_last_good(struct hs_file *f)
{
#if CHF_HARDENED
	struct hs_file *old;
	ULONG i;

	for (old = g.files; old; old = old->next) {
		if (!old->has_content)
			continue;
		for (i = 0; i < HS_NAME_LEN && old->name[i] == f->name[i]; i++)
			;
		if (i < HS_NAME_LEN)
			continue;
		f->content = old->content;
		f->has_content = TRUE;
		f->kept = TRUE;
		old->has_content = FALSE;
		return TRUE;
	}
#else
	UNREFERENCED_PARAMETER(f);
#endif
	return FALSE;
}

/* -------------------------------------------------------------- loading */

/*
 * Load the content directory into the content set, then evaluate one
 * synthetic named-pipe event (so content that crashes the interpreter crashes
 * every boot), print the marker and write the status key.  `reload`: a
 * re-read asked through the port; the hardened build then keeps the last good
 * content of a file whose new bytes are rejected, and of every file when the
 * directory cannot be read.  PASSIVE_LEVEL; g.loading is held by the caller.
 */
static void hs_load_content(BOOLEAN reload)
{
	struct hs_file *fresh = NULL, *f, *old;
	ULONG files = 0, loaded = 0, rejected = 0;
	BOOLEAN keep_all = FALSE;
	struct hs_event *ev;
	struct hs_outcome dir_error;
	HANDLE dir;
	NTSTATUS status;

	dir_error.text[0] = '\0';
	status = hs_open_content_dir(&dir);
	if (NT_SUCCESS(status)) {
		status = hs_list_dir(dir, &fresh);
		if (!NT_SUCCESS(status))
			ZwClose(dir);
	}
	if (!NT_SUCCESS(status)) {
		keep_all = CHF_HARDENED && reload && g.files != NULL;
		hs_put_status(hs_refuse(&dir_error, "", "cannot read the content directory (status "),
			      status);
		hs_put_str(&dir_error, ")");
		hs_log(HS_PREFIX HS_CONTENT_DIR_A ": %s; %s\n", dir_error.text,
		       keep_all ? "keeping last good content" : "running with no content");
		fresh = NULL;
	} else {
		for (f = fresh; f; f = f->next) {
			struct hs_outcome out;
			BOOLEAN kept = FALSE;

			files++;
			hs_load_file(dir, f, &out);
			if (f->has_content) {
				loaded++;
				hs_log(HS_PREFIX "%s: loaded (%u instances)\n", f->name,
				       (unsigned)f->content.instance_count);
				continue;
			}
			rejected++;
			if (reload) {
				hs_lock_exclusive();
				kept = hs_keep_last_good(f);
				hs_unlock();
			}
			/* "<text> [<reason>]" for the status key (text is at most 127) */
			{
				ULONG n = 0;

				n = hs_append(f->verdict, n, out.text);
				n = hs_append(f->verdict, n, " [");
				n = hs_append(f->verdict, n, out.reason);
				n = hs_append(f->verdict, n, "]");
				if (kept)
					hs_append(f->verdict, n, "; keeping last good content");
			}
			hs_log(HS_PREFIX "%s: rejected: %s [%s]%s\n", f->name, out.text, out.reason,
			       kept ? "; keeping last good content" : "");
		}
		ZwClose(dir);
	}

	/* Replace the set (files whose content was kept took it with them);
	 * the hardened build keeps the whole set when the directory is gone. */
	hs_lock_exclusive();
	if (!keep_all) {
		old = g.files;
		g.files = fresh;
	} else {
		old = fresh;
	}
	InterlockedExchange(&g.instances, hs_count_instances(g.files));
	g.generation++;
	hs_unlock();
	hs_free_files(old);

	ev = hs_event_new();
	if (ev) {
		struct chf_eval sum;

		hs_evaluate(ev, &sum);
		ExFreePoolWithTag(ev, HS_TAG_WORK);
		hs_log(HS_PREFIX "named-pipe event: %u instances evaluated, %u matched\n",
		       (unsigned)sum.instances, (unsigned)sum.matched);
	} else {
		hs_log(HS_PREFIX "named-pipe event: not evaluated (out of memory)\n");
	}
	/* The marker starts the line: no prefix. */
	hs_log("HARNESS-SENSOR-%s build=%s files=%lu loaded=%lu rejected=%lu\n",
	       reload ? "RELOADED" : "LOADED", CHF_BUILD_NAME, files, loaded, rejected);
	hs_lock_shared();
	hs_status_write(g.instances ? "loaded" : "empty", TRUE, TRUE,
			dir_error.text[0] ? dir_error.text : NULL);
	hs_unlock();
}

/*
 * Run the content load once, unless a mandatory unload came first; then, as
 * the last queued routine, drop the reference DriverEntry took on the driver
 * object.  ObDereferenceObjectDeferDelete: if that is the last reference the
 * image is unloaded by a worker thread later, never under our feet while
 * this routine still runs in it.
 */
static void hs_routine_done(BOOLEAN load)
{
	if (load && !g.unloaded && InterlockedExchange(&g.content_pending, 0))
		hs_load_content(FALSE);
	if (load)
		InterlockedExchange(&g.loading, 0); /* reloads may come now */
	if (InterlockedDecrement(&g.routines) == 0)
		ObDereferenceObjectDeferDelete(g.driver);
}

/* Boot start: the boot devices have started, file systems are ready. */
static VOID NTAPI hs_boot_reinit(PDRIVER_OBJECT driver, PVOID context, ULONG count)
{
	UNREFERENCED_PARAMETER(driver);
	UNREFERENCED_PARAMETER(context);
	UNREFERENCED_PARAMETER(count);
	InterlockedExchange(&g.boot_reinit_ran, 1);
	hs_routine_done(TRUE);
}

/*
 * Runs after DriverEntry of a driver loaded after boot, and after all boot
 * drivers during boot.  IoGetBootDiskInformation belongs in a
 * reinitialization routine; STATUS_TOO_LATE means the boot is over, so the
 * boot reinitialization routine will never run and the content is read now.
 */
static VOID NTAPI hs_reinit(PDRIVER_OBJECT driver, PVOID context, ULONG count)
{
	BOOTDISK_INFORMATION boot_disk;
	BOOLEAN after_boot;

	UNREFERENCED_PARAMETER(driver);
	UNREFERENCED_PARAMETER(context);
	UNREFERENCED_PARAMETER(count);
	after_boot = IoGetBootDiskInformation(&boot_disk, sizeof(boot_disk)) == STATUS_TOO_LATE;
	/* After boot the boot queue has been run already: ours never will (unless
	 * it already ran, in whichever order Windows runs the two queues). */
	if (after_boot && !g.boot_reinit_ran)
		InterlockedDecrement(&g.routines);
	if (!g.unloaded && g.content_pending) {
		if (after_boot)
			hs_log(HS_PREFIX "started after boot (build=%s): reading content now\n",
			       CHF_BUILD_NAME);
		else
			hs_log(HS_PREFIX "boot start (build=%s): content is read once the boot devices have started\n",
			       CHF_BUILD_NAME);
	}
	hs_routine_done(after_boot);
}

/* ------------------------------------------------------------- the port */

/*
 * Online reload: a user-mode FilterConnectCommunicationPort to
 * \HarnessFltPort (administrators and SYSTEM: FltBuildDefaultSecurityDescriptor)
 * and any FilterSendMessage re-read the content directory in the caller's
 * thread.  The message's bytes are not read (nothing in them is needed, and a
 * user buffer would need a probe under __try), nothing is written back: the
 * answer is the status of the call and the status key.
 * STATUS_DEVICE_NOT_READY: the first load has not run yet; STATUS_DEVICE_BUSY:
 * another load pass is running.
 */
static NTSTATUS FLTAPI hs_port_connect(PFLT_PORT client, PVOID server_cookie, PVOID context,
				       ULONG context_size, PVOID *connection_cookie)
{
	UNREFERENCED_PARAMETER(server_cookie);
	UNREFERENCED_PARAMETER(context);
	UNREFERENCED_PARAMETER(context_size);
	g.client = client;
	*connection_cookie = NULL;
	return STATUS_SUCCESS;
}

static VOID FLTAPI hs_port_disconnect(PVOID connection_cookie)
{
	UNREFERENCED_PARAMETER(connection_cookie);
	FltCloseClientPort(g.filter, &g.client);
}

static NTSTATUS FLTAPI hs_port_message(PVOID cookie, PVOID input, ULONG input_size,
				       PVOID output, ULONG output_size, PULONG returned)
{
	UNREFERENCED_PARAMETER(cookie);
	UNREFERENCED_PARAMETER(input);
	UNREFERENCED_PARAMETER(input_size);
	UNREFERENCED_PARAMETER(output);
	UNREFERENCED_PARAMETER(output_size);
	*returned = 0;
	if (g.unloaded)
		return STATUS_DEVICE_NOT_READY;
	if (InterlockedCompareExchange(&g.loading, 1, 0) != 0)
		return g.content_pending ? STATUS_DEVICE_NOT_READY : STATUS_DEVICE_BUSY;
	hs_log(HS_PREFIX "reload requested (build=%s)\n", CHF_BUILD_NAME);
	hs_load_content(TRUE);
	InterlockedExchange(&g.loading, 0);
	return STATUS_SUCCESS;
}

static NTSTATUS hs_port_open(void)
{
	PSECURITY_DESCRIPTOR sd;
	OBJECT_ATTRIBUTES oa;
	UNICODE_STRING name;
	NTSTATUS status;

	status = FltBuildDefaultSecurityDescriptor(&sd, FLT_PORT_ALL_ACCESS);
	if (!NT_SUCCESS(status))
		return status;
	RtlInitUnicodeString(&name, HS_PORT_NAME);
	InitializeObjectAttributes(&oa, &name, OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE, NULL, sd);
	status = FltCreateCommunicationPort(g.filter, &g.port, &oa, NULL, hs_port_connect,
					    hs_port_disconnect, hs_port_message, 1);
	FltFreeSecurityDescriptor(sd);
	if (!NT_SUCCESS(status))
		g.port = NULL;
	return status;
}

static void hs_port_close(void)
{
	if (g.port) {
		FltCloseCommunicationPort(g.port);
		g.port = NULL;
	}
}

/* ------------------------------------------------------ FltMgr callbacks */

static FLT_PREOP_CALLBACK_STATUS FLTAPI
hs_pre_create_named_pipe(PFLT_CALLBACK_DATA data, PCFLT_RELATED_OBJECTS objects,
			 PVOID *completion_context)
{
	PFLT_FILE_NAME_INFORMATION info = NULL;
	struct hs_event *ev;
	struct chf_eval sum;

	UNREFERENCED_PARAMETER(objects);
	*completion_context = NULL;
	if (!g.instances) /* nothing loaded: nothing to evaluate */
		return FLT_PREOP_SUCCESS_NO_CALLBACK;
	ev = hs_event_new();
	if (!ev)
		return FLT_PREOP_SUCCESS_NO_CALLBACK;
	if (NT_SUCCESS(FltGetFileNameInformation(
		    data, FLT_FILE_NAME_OPENED | FLT_FILE_NAME_QUERY_DEFAULT, &info))) {
		hs_event_set_pipe_name(ev, &info->Name);
		FltReleaseFileNameInformation(info);
	} else if (data->Iopb->TargetFileObject &&
		   data->Iopb->TargetFileObject->FileName.Length) {
		/* Name relative to \Device\NamedPipe (or to a related file). */
		hs_event_set_pipe_name(ev, &data->Iopb->TargetFileObject->FileName);
	}
	hs_evaluate(ev, &sum);
	ExFreePoolWithTag(ev, HS_TAG_WORK);
	return FLT_PREOP_SUCCESS_NO_CALLBACK;
}

/* Attach only to the named-pipe file system: nothing else is filtered. */
static NTSTATUS FLTAPI hs_instance_setup(PCFLT_RELATED_OBJECTS objects,
					 FLT_INSTANCE_SETUP_FLAGS flags,
					 DEVICE_TYPE device_type,
					 FLT_FILESYSTEM_TYPE fs_type)
{
	UNREFERENCED_PARAMETER(objects);
	UNREFERENCED_PARAMETER(flags);
	UNREFERENCED_PARAMETER(device_type);
	return fs_type == FLT_FSTYPE_NPFS ? STATUS_SUCCESS : STATUS_FLT_DO_NOT_ATTACH;
}

static NTSTATUS FLTAPI hs_instance_query_teardown(PCFLT_RELATED_OBJECTS objects,
						  FLT_INSTANCE_QUERY_TEARDOWN_FLAGS flags)
{
	UNREFERENCED_PARAMETER(objects);
	UNREFERENCED_PARAMETER(flags);
	return STATUS_SUCCESS;
}

static void hs_cleanup(void)
{
	if (g.lock_ready) {
		struct hs_file *files;

		hs_lock_exclusive();
		files = g.files;
		g.files = NULL;
		InterlockedExchange(&g.instances, 0);
		hs_unlock();
		hs_free_files(files);
		ExDeleteResourceLite(&g.lock);
		g.lock_ready = FALSE;
	}
	if (g.poison) {
		MmFreeMappingAddress(g.poison, HS_TAG_POISON);
		g.poison = NULL;
	}
	if (g.parameters.Buffer) {
		ExFreePoolWithTag(g.parameters.Buffer, HS_TAG_WORK);
		g.parameters.Buffer = NULL;
	}
}

static NTSTATUS FLTAPI hs_unload(FLT_FILTER_UNLOAD_FLAGS flags)
{
	/* The content has not been read yet: refuse an optional unload.  A
	 * mandatory one goes ahead; the queued routines find g.unloaded and only
	 * release the driver object, which keeps the image loaded until then. */
	if (g.content_pending && !(flags & FLTFL_FILTER_UNLOAD_MANDATORY))
		return STATUS_FLT_DO_NOT_DETACH;
	InterlockedExchange(&g.unloaded, 1);
	hs_port_close();	       /* no new connections */
	FltUnregisterFilter(g.filter); /* closes the client port, waits for callbacks */
	g.filter = NULL;
	hs_cleanup();
	hs_log(HS_PREFIX "unloaded\n");
	return STATUS_SUCCESS;
}

static const FLT_OPERATION_REGISTRATION hs_operations[] = {
	{ IRP_MJ_CREATE_NAMED_PIPE, 0, hs_pre_create_named_pipe, NULL, NULL },
	{ IRP_MJ_OPERATION_END, 0, NULL, NULL, NULL },
};

static const FLT_REGISTRATION hs_registration = {
	sizeof(FLT_REGISTRATION),
	FLT_REGISTRATION_VERSION,
	FLTFL_REGISTRATION_SUPPORT_NPFS_MSFS, /* named pipes need this (Windows 8+) */
	NULL,				      /* no contexts */
	hs_operations,
	hs_unload,
	hs_instance_setup,
	hs_instance_query_teardown,
	NULL, /* InstanceTeardownStartCallback */
	NULL, /* InstanceTeardownCompleteCallback */
	NULL, /* GenerateFileNameCallback */
	NULL, /* NormalizeNameComponentCallback */
	NULL, /* NormalizeContextCleanupCallback */
	NULL, /* TransactionNotificationCallback */
	NULL, /* NormalizeNameComponentExCallback */
	NULL, /* SectionNotificationCallback */
};

/* ------------------------------------------------------------ DriverEntry */

NTSTATUS NTAPI DriverEntry(PDRIVER_OBJECT driver, PUNICODE_STRING registry_path)
{
	NTSTATUS status;

	/* <service key>\Parameters, where the status key goes. */
	g.parameters.MaximumLength =
		(USHORT)(registry_path->Length + sizeof(HS_PARAMETERS));
	g.parameters.Buffer = hs_pool_alloc(g.parameters.MaximumLength, HS_TAG_WORK);
	if (!g.parameters.Buffer)
		return STATUS_INSUFFICIENT_RESOURCES;
	{
		static const WCHAR suffix[] = HS_PARAMETERS;
		ULONG i, n = registry_path->Length / sizeof(WCHAR);

		for (i = 0; i < n; i++) /* no memcpy: it would be one more import */
			g.parameters.Buffer[i] = registry_path->Buffer[i];
		for (i = 0; i < ARRAYSIZE(suffix); i++)
			g.parameters.Buffer[n + i] = suffix[i];
	}
	g.parameters.Length = (USHORT)(g.parameters.MaximumLength - sizeof(WCHAR));

	status = ExInitializeResourceLite(&g.lock);
	if (!NT_SUCCESS(status))
		goto fail;
	g.lock_ready = TRUE;

	/* A page of address space that is reserved and never mapped: reading
	 * it bugchecks 0x50 instead of reading whatever lies there. */
	g.poison = MmAllocateMappingAddress(PAGE_SIZE, HS_TAG_POISON);
	if (!g.poison) {
		status = STATUS_INSUFFICIENT_RESOURCES;
		goto fail;
	}

	status = FltRegisterFilter(driver, &hs_registration, &g.filter);
	if (!NT_SUCCESS(status))
		goto fail;
	status = hs_port_open();
	if (NT_SUCCESS(status))
		status = FltStartFiltering(g.filter);
	if (!NT_SUCCESS(status)) {
		hs_port_close();
		FltUnregisterFilter(g.filter);
		g.filter = NULL;
		goto fail;
	}

	/* Both routines run in this image: keep it loaded until the last one
	 * has run (hs_routine_done), whatever unloads the filter meanwhile. */
	g.driver = driver;
	g.routines = 2;
	g.content_pending = 1;
	g.loading = 1; /* no reload before the first load */
	hs_status_write("starting", FALSE, FALSE, NULL);
	ObReferenceObject(driver);
	IoRegisterDriverReinitialization(driver, hs_reinit, NULL);
	IoRegisterBootDriverReinitialization(driver, hs_boot_reinit, NULL);
	return STATUS_SUCCESS;

fail:
	hs_log(HS_PREFIX "not started (status 0x%08lx)\n", (ULONG)status);
	hs_cleanup();
	return status;
}
