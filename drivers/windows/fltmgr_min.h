/*
 * fltmgr_min.h - the few Filter Manager (FltMgr) declarations harnessflt.c
 * uses, for building with Debian's mingw-w64, which ships no fltKernel.h and
 * no fltmgr import library (see drivers/windows/README.md).
 *
 * WARNING: FltMgr reads these structures straight out of our image and hands
 * us its own.  Every structure below must have exactly the field order, types
 * and sizes of the WDK's fltKernel.h for x64, or FltRegisterFilter /
 * the callbacks read garbage.  The _Static_asserts at the end pin the x64
 * sizes and offsets; do not "tidy" a field without checking the WDK.
 *
 * Written from the public documentation, not copied from a header.  Sources:
 *   FLT_REGISTRATION (version 0x0203 layout, FLTFL_REGISTRATION_* flags):
 *     https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_registration
 *   FLT_OPERATION_REGISTRATION:
 *     https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_operation_registration
 *   FLT_CALLBACK_DATA / FLT_IO_PARAMETER_BLOCK:
 *     https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_callback_data
 *     https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_io_parameter_block
 *   FLT_RELATED_OBJECTS:
 *     https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_related_objects
 *   FLT_FILE_NAME_INFORMATION, FLT_FILE_NAME_* options:
 *     https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_file_name_information
 *     https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetfilenameinformation
 *   Callback prototypes (PFLT_PRE_OPERATION_CALLBACK, PFLT_FILTER_UNLOAD_CALLBACK,
 *   PFLT_INSTANCE_SETUP_CALLBACK, ...): the matching "callback function"
 *   pages under .../ddi/fltkernel/.
 *   Communication ports (FltBuildDefaultSecurityDescriptor,
 *   FltCreateCommunicationPort, FltCloseCommunicationPort, FltCloseClientPort,
 *   FltFreeSecurityDescriptor, the connect/disconnect/message callbacks,
 *   FLT_PORT_CONNECT): the nf-/nc-fltkernel-* pages and "Communication between
 *   user mode and kernel mode" in the file-system minifilter guide.
 *   FltRegisterFilter, FltStartFiltering, FltUnregisterFilter,
 *   FltGetFileNameInformation, FltReleaseFileNameInformation: the
 *   nf-fltkernel-* pages (all exported by FltMgr.sys, library FltMgr.lib).
 * Numeric values were cross-checked against the Win32 metadata constants
 * (FLT_REGISTRATION_VERSION = 515 = 0x0203, FLTFL_REGISTRATION_SUPPORT_NPFS_MSFS
 * = 2, IRP_MJ_OPERATION_END = 0x80, FLT_FILE_NAME_OPENED = 2,
 * FLT_FILE_NAME_QUERY_DEFAULT = 0x100) and the layouts against ReactOS's
 * sdk/include/ddk/fltkernel.h (same field order; it predates 0x0203).
 *
 * FLT_FILESYSTEM_TYPE and FLTAPI come from fltUserStructures.h, which the
 * WDK's fltKernel.h includes as well; mingw-w64 ships that header.
 */
#ifndef FLTMGR_MIN_H
#define FLTMGR_MIN_H

#include <ntifs.h>
#include <fltuserstructures.h> /* FLTAPI, FLT_FILESYSTEM_TYPE */

/* ------------------------------------------------------------ opaque objects */

typedef struct _FLT_FILTER *PFLT_FILTER;
typedef struct _FLT_VOLUME *PFLT_VOLUME;
typedef struct _FLT_INSTANCE *PFLT_INSTANCE;
typedef struct _FLT_PORT *PFLT_PORT;
typedef PVOID PFLT_CONTEXT;
/* wdm.h of the WDK declares PKTRANSACTION; mingw-w64's does not. */
typedef struct _KTRANSACTION *PKTRANSACTION;
/* Only ever passed as NULL here, so the structure stays incomplete. */
typedef struct _FLT_CONTEXT_REGISTRATION FLT_CONTEXT_REGISTRATION;

/* ------------------------------------------------------------------ values */

#define FLT_REGISTRATION_VERSION_0203 0x0203
#define FLT_REGISTRATION_VERSION FLT_REGISTRATION_VERSION_0203 /* NTDDI >= WIN8 */

typedef ULONG FLT_REGISTRATION_FLAGS;
#define FLTFL_REGISTRATION_DO_NOT_SUPPORT_SERVICE_STOP 0x00000001
#define FLTFL_REGISTRATION_SUPPORT_NPFS_MSFS 0x00000002

#define IRP_MJ_OPERATION_END ((UCHAR)0x80)

/* Communication ports (FltCreateCommunicationPort): the access right a
 * user-mode FilterConnectCommunicationPort needs. */
#define FLT_PORT_CONNECT 0x0001
#define FLT_PORT_ALL_ACCESS (FLT_PORT_CONNECT | STANDARD_RIGHTS_ALL)

typedef ULONG FLT_OPERATION_REGISTRATION_FLAGS;
typedef ULONG FLT_CALLBACK_DATA_FLAGS;
typedef ULONG FLT_POST_OPERATION_FLAGS;
typedef ULONG FLT_INSTANCE_SETUP_FLAGS;
typedef ULONG FLT_INSTANCE_QUERY_TEARDOWN_FLAGS;
typedef ULONG FLT_INSTANCE_TEARDOWN_FLAGS;
typedef ULONG FLT_NORMALIZE_NAME_FLAGS;

typedef ULONG FLT_FILTER_UNLOAD_FLAGS;
#define FLTFL_FILTER_UNLOAD_MANDATORY 0x00000001

typedef ULONG FLT_FILE_NAME_OPTIONS;
#define FLT_FILE_NAME_NORMALIZED 0x01
#define FLT_FILE_NAME_OPENED 0x02
#define FLT_FILE_NAME_QUERY_DEFAULT 0x0100

typedef USHORT FLT_FILE_NAME_PARSED_FLAGS;

typedef enum _FLT_PREOP_CALLBACK_STATUS {
	FLT_PREOP_SUCCESS_WITH_CALLBACK = 0,
	FLT_PREOP_SUCCESS_NO_CALLBACK = 1,
	FLT_PREOP_PENDING = 2,
	FLT_PREOP_DISALLOW_FASTIO = 3,
	FLT_PREOP_COMPLETE = 4,
	FLT_PREOP_SYNCHRONIZE = 5,
	FLT_PREOP_DISALLOW_FSFILTER_IO = 6
} FLT_PREOP_CALLBACK_STATUS;

typedef enum _FLT_POSTOP_CALLBACK_STATUS {
	FLT_POSTOP_FINISHED_PROCESSING = 0,
	FLT_POSTOP_MORE_PROCESSING_REQUIRED = 1
} FLT_POSTOP_CALLBACK_STATUS;

/* ---------------------------------------------------------- I/O structures */

/*
 * FLT_IO_PARAMETER_BLOCK: only the members in front of Parameters are
 * declared.  The FLT_PARAMETERS union that follows them (offset 24 on x64)
 * is not, so never take sizeof() of this type or allocate one; FltMgr owns
 * every instance we see.
 */
typedef struct _FLT_IO_PARAMETER_BLOCK {
	ULONG IrpFlags;
	UCHAR MajorFunction;
	UCHAR MinorFunction;
	UCHAR OperationFlags;
	UCHAR Reserved;
	PFILE_OBJECT TargetFileObject;
	PFLT_INSTANCE TargetInstance;
	/* FLT_PARAMETERS Parameters;  -- not declared, see above */
} FLT_IO_PARAMETER_BLOCK, *PFLT_IO_PARAMETER_BLOCK;

typedef struct _FLT_CALLBACK_DATA {
	FLT_CALLBACK_DATA_FLAGS Flags;
	PETHREAD const Thread;
	PFLT_IO_PARAMETER_BLOCK const Iopb;
	IO_STATUS_BLOCK IoStatus;
	struct _FLT_TAG_DATA_BUFFER *TagData;
	union {
		struct {
			LIST_ENTRY QueueLinks;
			PVOID QueueContext[2];
		};
		PVOID FilterContext[4];
	};
	KPROCESSOR_MODE RequestorMode;
} FLT_CALLBACK_DATA, *PFLT_CALLBACK_DATA;

typedef struct _FLT_RELATED_OBJECTS {
	USHORT const Size;
	USHORT const TransactionContext;
	PFLT_FILTER const Filter;
	PFLT_VOLUME const Volume;
	PFLT_INSTANCE const Instance;
	PFILE_OBJECT const FileObject;
	PKTRANSACTION const Transaction;
} FLT_RELATED_OBJECTS, *PFLT_RELATED_OBJECTS;
typedef const struct _FLT_RELATED_OBJECTS *PCFLT_RELATED_OBJECTS;

typedef struct _FLT_FILE_NAME_INFORMATION {
	USHORT Size;
	FLT_FILE_NAME_PARSED_FLAGS NamesParsed;
	FLT_FILE_NAME_OPTIONS Format;
	UNICODE_STRING Name;
	UNICODE_STRING Volume;
	UNICODE_STRING Share;
	UNICODE_STRING Extension;
	UNICODE_STRING Stream;
	UNICODE_STRING FinalComponent;
	UNICODE_STRING ParentDir;
} FLT_FILE_NAME_INFORMATION, *PFLT_FILE_NAME_INFORMATION;

/* --------------------------------------------------------------- callbacks */

typedef FLT_PREOP_CALLBACK_STATUS(FLTAPI *PFLT_PRE_OPERATION_CALLBACK)(
	PFLT_CALLBACK_DATA Data, PCFLT_RELATED_OBJECTS FltObjects,
	PVOID *CompletionContext);

typedef FLT_POSTOP_CALLBACK_STATUS(FLTAPI *PFLT_POST_OPERATION_CALLBACK)(
	PFLT_CALLBACK_DATA Data, PCFLT_RELATED_OBJECTS FltObjects,
	PVOID CompletionContext, FLT_POST_OPERATION_FLAGS Flags);

typedef NTSTATUS(FLTAPI *PFLT_FILTER_UNLOAD_CALLBACK)(FLT_FILTER_UNLOAD_FLAGS Flags);

typedef NTSTATUS(FLTAPI *PFLT_INSTANCE_SETUP_CALLBACK)(
	PCFLT_RELATED_OBJECTS FltObjects, FLT_INSTANCE_SETUP_FLAGS Flags,
	DEVICE_TYPE VolumeDeviceType, FLT_FILESYSTEM_TYPE VolumeFilesystemType);

typedef NTSTATUS(FLTAPI *PFLT_INSTANCE_QUERY_TEARDOWN_CALLBACK)(
	PCFLT_RELATED_OBJECTS FltObjects, FLT_INSTANCE_QUERY_TEARDOWN_FLAGS Flags);

typedef VOID(FLTAPI *PFLT_INSTANCE_TEARDOWN_CALLBACK)(
	PCFLT_RELATED_OBJECTS FltObjects, FLT_INSTANCE_TEARDOWN_FLAGS Reason);

/* Name-provider and transaction callbacks: declared only so that
 * FLT_REGISTRATION has its real shape; harnessflt.c leaves them NULL. */
typedef struct _FLT_NAME_CONTROL *PFLT_NAME_CONTROL;
typedef NTSTATUS(FLTAPI *PFLT_GENERATE_FILE_NAME)(
	PFLT_INSTANCE Instance, PFILE_OBJECT FileObject,
	PFLT_CALLBACK_DATA CallbackData, FLT_FILE_NAME_OPTIONS NameOptions,
	PBOOLEAN CacheFileNameInformation, PFLT_NAME_CONTROL FileName);
typedef NTSTATUS(FLTAPI *PFLT_NORMALIZE_NAME_COMPONENT)(
	PFLT_INSTANCE Instance, PCUNICODE_STRING ParentDirectory,
	USHORT VolumeNameLength, PCUNICODE_STRING Component,
	PFILE_NAMES_INFORMATION ExpandComponentName,
	ULONG ExpandComponentNameLength, FLT_NORMALIZE_NAME_FLAGS Flags,
	PVOID *NormalizationContext);
typedef VOID(FLTAPI *PFLT_NORMALIZE_CONTEXT_CLEANUP)(PVOID *NormalizationContext);
typedef NTSTATUS(FLTAPI *PFLT_TRANSACTION_NOTIFICATION_CALLBACK)(
	PCFLT_RELATED_OBJECTS FltObjects, PFLT_CONTEXT TransactionContext,
	ULONG NotificationMask);
typedef NTSTATUS(FLTAPI *PFLT_NORMALIZE_NAME_COMPONENT_EX)(
	PFLT_INSTANCE Instance, PFILE_OBJECT FileObject,
	PCUNICODE_STRING ParentDirectory, USHORT VolumeNameLength,
	PCUNICODE_STRING Component, PFILE_NAMES_INFORMATION ExpandComponentName,
	ULONG ExpandComponentNameLength, FLT_NORMALIZE_NAME_FLAGS Flags,
	PVOID *NormalizationContext);
typedef NTSTATUS(FLTAPI *PFLT_SECTION_CONFLICT_NOTIFICATION_CALLBACK)(
	PFLT_INSTANCE Instance, PFLT_CONTEXT SectionContext,
	PFLT_CALLBACK_DATA Data);

/* ------------------------------------------------------------ registration */

typedef struct _FLT_OPERATION_REGISTRATION {
	UCHAR MajorFunction;
	FLT_OPERATION_REGISTRATION_FLAGS Flags;
	PFLT_PRE_OPERATION_CALLBACK PreOperation;
	PFLT_POST_OPERATION_CALLBACK PostOperation;
	PVOID Reserved1;
} FLT_OPERATION_REGISTRATION, *PFLT_OPERATION_REGISTRATION;

/* Version 0x0203 layout (Windows 8 and later). */
typedef struct _FLT_REGISTRATION {
	USHORT Size;
	USHORT Version;
	FLT_REGISTRATION_FLAGS Flags;
	const FLT_CONTEXT_REGISTRATION *ContextRegistration;
	const FLT_OPERATION_REGISTRATION *OperationRegistration;
	PFLT_FILTER_UNLOAD_CALLBACK FilterUnloadCallback;
	PFLT_INSTANCE_SETUP_CALLBACK InstanceSetupCallback;
	PFLT_INSTANCE_QUERY_TEARDOWN_CALLBACK InstanceQueryTeardownCallback;
	PFLT_INSTANCE_TEARDOWN_CALLBACK InstanceTeardownStartCallback;
	PFLT_INSTANCE_TEARDOWN_CALLBACK InstanceTeardownCompleteCallback;
	PFLT_GENERATE_FILE_NAME GenerateFileNameCallback;
	PFLT_NORMALIZE_NAME_COMPONENT NormalizeNameComponentCallback;
	PFLT_NORMALIZE_CONTEXT_CLEANUP NormalizeContextCleanupCallback;
	PFLT_TRANSACTION_NOTIFICATION_CALLBACK TransactionNotificationCallback;
	PFLT_NORMALIZE_NAME_COMPONENT_EX NormalizeNameComponentExCallback;
	PFLT_SECTION_CONFLICT_NOTIFICATION_CALLBACK SectionNotificationCallback;
} FLT_REGISTRATION, *PFLT_REGISTRATION;

/* Communication port callbacks (nc-fltkernel-pflt_connect_notify,
 * pflt_disconnect_notify, pflt_message_notify). */
typedef NTSTATUS(FLTAPI *PFLT_CONNECT_NOTIFY)(PFLT_PORT ClientPort, PVOID ServerPortCookie,
					      PVOID ConnectionContext, ULONG SizeOfContext,
					      PVOID *ConnectionPortCookie);
typedef VOID(FLTAPI *PFLT_DISCONNECT_NOTIFY)(PVOID ConnectionCookie);
typedef NTSTATUS(FLTAPI *PFLT_MESSAGE_NOTIFY)(PVOID PortCookie, PVOID InputBuffer,
					      ULONG InputBufferLength, PVOID OutputBuffer,
					      ULONG OutputBufferLength,
					      PULONG ReturnOutputBufferLength);

/* --------------------------------------------------------------- functions */
/* Exported by FLTMGR.SYS; the import library comes from fltmgr.def. */

NTSTATUS FLTAPI FltRegisterFilter(PDRIVER_OBJECT Driver,
				  const FLT_REGISTRATION *Registration,
				  PFLT_FILTER *RetFilter);
NTSTATUS FLTAPI FltStartFiltering(PFLT_FILTER Filter);
VOID FLTAPI FltUnregisterFilter(PFLT_FILTER Filter);
NTSTATUS FLTAPI FltGetFileNameInformation(
	PFLT_CALLBACK_DATA CallbackData, FLT_FILE_NAME_OPTIONS NameOptions,
	PFLT_FILE_NAME_INFORMATION *FileNameInformation);
VOID FLTAPI FltReleaseFileNameInformation(
	PFLT_FILE_NAME_INFORMATION FileNameInformation);
NTSTATUS FLTAPI FltBuildDefaultSecurityDescriptor(PSECURITY_DESCRIPTOR *SecurityDescriptor,
						  ACCESS_MASK DesiredAccess);
VOID FLTAPI FltFreeSecurityDescriptor(PSECURITY_DESCRIPTOR SecurityDescriptor);
NTSTATUS FLTAPI FltCreateCommunicationPort(PFLT_FILTER Filter, PFLT_PORT *ServerPort,
					   POBJECT_ATTRIBUTES ObjectAttributes,
					   PVOID ServerPortCookie,
					   PFLT_CONNECT_NOTIFY ConnectNotifyCallback,
					   PFLT_DISCONNECT_NOTIFY DisconnectNotifyCallback,
					   PFLT_MESSAGE_NOTIFY MessageNotifyCallback,
					   LONG MaxConnections);
VOID FLTAPI FltCloseCommunicationPort(PFLT_PORT ServerPort);
VOID FLTAPI FltCloseClientPort(PFLT_FILTER Filter, PFLT_PORT *ClientPort);

/* ------------------------------------------------- layout checks (x64 only) */

#if defined(_WIN64)
#define FLTMGR_MIN_OFFSET(t, m) __builtin_offsetof(t, m)
_Static_assert(sizeof(FLT_REGISTRATION) == 112, "FLT_REGISTRATION 0x0203 is 112 bytes on x64");
_Static_assert(FLTMGR_MIN_OFFSET(FLT_REGISTRATION, ContextRegistration) == 8, "FLT_REGISTRATION layout");
_Static_assert(FLTMGR_MIN_OFFSET(FLT_REGISTRATION, OperationRegistration) == 16, "FLT_REGISTRATION layout");
_Static_assert(FLTMGR_MIN_OFFSET(FLT_REGISTRATION, FilterUnloadCallback) == 24, "FLT_REGISTRATION layout");
_Static_assert(FLTMGR_MIN_OFFSET(FLT_REGISTRATION, InstanceSetupCallback) == 32, "FLT_REGISTRATION layout");
_Static_assert(FLTMGR_MIN_OFFSET(FLT_REGISTRATION, SectionNotificationCallback) == 104, "FLT_REGISTRATION layout");
_Static_assert(sizeof(FLT_OPERATION_REGISTRATION) == 32, "FLT_OPERATION_REGISTRATION is 32 bytes on x64");
_Static_assert(FLTMGR_MIN_OFFSET(FLT_OPERATION_REGISTRATION, PreOperation) == 8, "FLT_OPERATION_REGISTRATION layout");
_Static_assert(FLTMGR_MIN_OFFSET(FLT_CALLBACK_DATA, Iopb) == 16, "FLT_CALLBACK_DATA layout");
_Static_assert(FLTMGR_MIN_OFFSET(FLT_CALLBACK_DATA, RequestorMode) == 80, "FLT_CALLBACK_DATA layout");
_Static_assert(FLTMGR_MIN_OFFSET(FLT_IO_PARAMETER_BLOCK, TargetFileObject) == 8, "FLT_IO_PARAMETER_BLOCK layout");
_Static_assert(sizeof(FLT_RELATED_OBJECTS) == 48, "FLT_RELATED_OBJECTS is 48 bytes on x64");
_Static_assert(FLTMGR_MIN_OFFSET(FLT_FILE_NAME_INFORMATION, Name) == 8, "FLT_FILE_NAME_INFORMATION layout");
_Static_assert(sizeof(FLT_FILE_NAME_INFORMATION) == 120, "FLT_FILE_NAME_INFORMATION is 120 bytes on x64");
_Static_assert(FLT_FSTYPE_NPFS == 25, "FLT_FILESYSTEM_TYPE: NPFS is 25 in fltUserStructures.h");
#undef FLTMGR_MIN_OFFSET
#endif

#endif /* FLTMGR_MIN_H */
