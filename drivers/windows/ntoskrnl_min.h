/*
 * ntoskrnl_min.h - ntoskrnl.exe routines harnessflt.c uses that mingw-w64 10's
 * DDK headers and libntoskrnl.a lack (see README.md, "Building here").
 *
 * Written from the public documentation, not copied from a header:
 *   ExAllocatePool2, POOL_FLAG_*:
 *     https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exallocatepool2
 *     https://learn.microsoft.com/windows-hardware/drivers/kernel/pool_flags
 * The import comes from ntoskrnl.def (LIBRARY ntoskrnl.exe) through dlltool,
 * as fltmgr.def does for FLTMGR.SYS.
 */
#ifndef NTOSKRNL_MIN_H
#define NTOSKRNL_MIN_H

#include <ntifs.h>

typedef ULONG64 POOL_FLAGS;
#define POOL_FLAG_UNINITIALIZED 0x0000000000000002ULL
#define POOL_FLAG_NON_PAGED 0x0000000000000040ULL
#define POOL_FLAG_PAGED 0x0000000000000100ULL

/* Windows 10 version 2004 and later.  Returns zeroed memory unless
 * POOL_FLAG_UNINITIALIZED is given; NULL when out of memory. */
NTKERNELAPI PVOID NTAPI ExAllocatePool2(POOL_FLAGS Flags, SIZE_T NumberOfBytes, ULONG Tag);

#endif /* NTOSKRNL_MIN_H */
