/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The ring-buffer record shared by bpf/syscalls.bpf.c (writer) and
 * src/trace/ebpf.rs (reader). The Rust side does not include this file: it
 * decodes the bytes with bounds-checked little-endian reads at the offsets
 * below, so any change here must be mirrored in ebpf.rs (constants `OFF_*`,
 * `PGT_*`) and the layout test there.
 *
 * Record layout (all fields little-endian, no padding, 64-byte header):
 *
 *   offset size  field      meaning
 *        0    8  ts_ns      CLOCK_MONOTONIC at syscall exit (pread64: to the
 *                           clock tick, at most 1/HZ early; see event_ns)
 *        8    4  tgid       process id (thread group id)
 *       12    2  syscall    PGT_SYS_* below
 *       14    2  flags      PGT_F_* below
 *       16    8  ret        syscall return value (s64; negative = -errno)
 *       24    8  a0         per-syscall argument, see the table
 *       32    8  a1
 *       40    8  a2
 *       48    8  a3
 *       56    4  path_len   bytes of path following the header (no NUL)
 *       60    4  tid        thread id
 *       64  path_len  path  raw path bytes as passed by the process
 *
 * A record is exactly 64 bytes unless PGT_F_PATH is set, in which case it is
 * 64 + path_len bytes.
 *
 * Arguments by syscall (fd, dirfd are s32 sign-extended into the u64 slot;
 * dirfd AT_FDCWD = -100 means "relative to the working directory"):
 *
 *   OPEN, OPENAT          a0 dirfd (AT_FDCWD for open)  a1 flags  a2 mode
 *                         ret fd; path
 *   CLOSE                 a0 fd
 *   DUP, DUP2, DUP3,
 *   FCNTL_DUPFD           a0 old fd; ret new fd (F_DUPFD/F_DUPFD_CLOEXEC only)
 *   READ..PWRITEV2        a0 fd  a1 offset (valid iff PGT_F_OFFSET; for calls at
 *                         the file position: f_pos at exit minus the result)
 *                         a2 requested bytes (sum of iov_len for *v calls)
 *                         a3 (PREAD64, PREADV, PREADV2 with PGT_F_AIO_OWNER): the
 *                         tgid of the traced process that owns the AIO handle a
 *                         PG18 io worker is executing
 *   LSEEK                 a0 fd  a1 offset (s64)  a2 whence
 *   FTRUNCATE             a0 fd  a1 length
 *   TRUNCATE              a1 length; path
 *   UNLINK, UNLINKAT      a0 dirfd  a1 flags; path
 *   GETDENTS64            a0 fd  a2 count
 *   NEWFSTATAT, STATX     a0 dirfd  a1 flags; path
 *   FSTAT                 a0 fd
 *   LSTAT, STAT           path
 *   SENDTO                a0 fd  a2 len
 *   FADVISE64             a0 fd  a1 offset  a2 len  a3 advice
 *   SENDFILE, COPY_FILE_RANGE, SPLICE
 *                         a0 the input fd  a1 offset (valid iff PGT_F_OFFSET: only
 *                         when the call used and moved the file position; an
 *                         offset passed by pointer is in user memory, not read)
 *                         a2 requested bytes; ret bytes moved
 *   URING_*               an io_uring request of the traced process (its
 *                         submitter), at completion: a0 low 32 bits the SQE's fd
 *                         (a registered-file index with PGT_F_URING_FIXED), high
 *                         32 bits the file's device (kernel dev_t: major << 20 |
 *                         minor)  a1 offset (valid iff PGT_F_OFFSET; the SQE said
 *                         -1, "at the file position", otherwise)  a2 requested
 *                         bytes (sum of iov_len for READV/WRITEV)  a3 the file's
 *                         inode number; ret the CQE's res (bytes, or -errno);
 *                         tid the submitting thread; ts the completion
 */
#ifndef PG_TRACE_EVENTS_H
#define PG_TRACE_EVENTS_H

#define PGT_HDR_SIZE 64
/* Longest path captured, including the terminating NUL (the kernel's PATH_MAX). */
#define PGT_PATH_CAP 4096
/* Most iovecs summed for the requested size of readv/writev & co. */
#define PGT_IOV_CAP 64

/* Syscall ids: the order of the Rust `Syscall` enum. */
#define PGT_SYS_OPEN 0
#define PGT_SYS_OPENAT 1
#define PGT_SYS_CLOSE 2
#define PGT_SYS_DUP 3
#define PGT_SYS_DUP2 4
#define PGT_SYS_DUP3 5
#define PGT_SYS_FCNTL_DUPFD 6
#define PGT_SYS_READ 7
#define PGT_SYS_PREAD64 8
#define PGT_SYS_READV 9
#define PGT_SYS_PREADV 10
#define PGT_SYS_PREADV2 11
#define PGT_SYS_WRITE 12
#define PGT_SYS_PWRITE64 13
#define PGT_SYS_WRITEV 14
#define PGT_SYS_PWRITEV 15
#define PGT_SYS_PWRITEV2 16
#define PGT_SYS_LSEEK 17
#define PGT_SYS_FTRUNCATE 18
#define PGT_SYS_TRUNCATE 19
#define PGT_SYS_UNLINK 20
#define PGT_SYS_UNLINKAT 21
#define PGT_SYS_GETDENTS64 22
#define PGT_SYS_NEWFSTATAT 23
#define PGT_SYS_FSTAT 24
#define PGT_SYS_LSTAT 25
#define PGT_SYS_STAT 26
#define PGT_SYS_STATX 27
#define PGT_SYS_SENDTO 28
#define PGT_SYS_FADVISE64 29
#define PGT_SYS_SENDFILE 30
#define PGT_SYS_COPY_FILE_RANGE 31
#define PGT_SYS_SPLICE 32
#define PGT_SYS_COUNT 33

/* io_uring requests (bpf/syscalls.bpf.c, io_uring section): ids after the
 * system calls, from PGT_URING_BASE, in the order of `uring::OPS` in
 * src/trace/ebpf/uring.rs. */
#define PGT_URING_BASE 64
#define PGT_URING_READ 64
#define PGT_URING_READV 65
#define PGT_URING_READ_FIXED 66
#define PGT_URING_READV_FIXED 67
#define PGT_URING_WRITE 68
#define PGT_URING_WRITEV 69
#define PGT_URING_WRITE_FIXED 70
#define PGT_URING_WRITEV_FIXED 71
#define PGT_URING_COUNT 8

/* Record flags. */
#define PGT_F_OFFSET 0x0001     /* a1 is the offset the transfer started at */
#define PGT_F_SOCKET 0x0002     /* write/writev on a socket: bytes to a client */
#define PGT_F_PATH 0x0004       /* a path follows the header */
#define PGT_F_PATH_TRUNC 0x0008 /* the path did not fit in PGT_PATH_CAP */
#define PGT_F_PATH_FAULT 0x0010 /* the path pointer could not be read */
#define PGT_F_IOV_PARTIAL 0x0020 /* more than PGT_IOV_CAP iovecs: a2 sums the first ones */
#define PGT_F_AIO_OWNER 0x0040  /* an io worker's read for a traced process: a3 its tgid */
#define PGT_F_URING_FIXED 0x0080 /* io_uring: the fd is a registered-file index */
#define PGT_F_URING_NOFILE 0x0100 /* io_uring: completed without a file (failed early) */

/* Indexes of the per-CPU `lost` counters. */
#define PGT_LOST_RINGBUF 0      /* ring buffer full: record dropped */
#define PGT_LOST_PATH_TRUNC 1   /* path truncated (record still sent) */
#define PGT_LOST_PATH_FAULT 2   /* path unreadable (record sent without path) */
#define PGT_LOST_AIO_OWNER 3    /* io worker read whose AIO handle could not be read: dropped */
#define PGT_LOST_COUNT 4

#ifdef __BPF__
struct pgt_event {
	__u64 ts_ns;
	__u32 tgid;
	__u16 syscall;
	__u16 flags;
	__s64 ret;
	__u64 a0;
	__u64 a1;
	__u64 a2;
	__u64 a3;
	__u32 path_len;
	__u32 tid;
};
_Static_assert(sizeof(struct pgt_event) == PGT_HDR_SIZE, "pgt_event header is 64 bytes");
#endif

#endif /* PG_TRACE_EVENTS_H */
