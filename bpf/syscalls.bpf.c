// SPDX-License-Identifier: MIT OR GPL-2.0
/*
 * pg_trace: file-related system calls of the traced processes, as records in a
 * ring buffer (layout in events.h).
 *
 * Every program starts with the pid filter: one hash lookup of the tgid in
 * `pids`, which user space fills. Untraced processes pay that lookup and
 * nothing else. For traced ones, sys_enter saves the arguments (and, for
 * read/write-like calls, the file position and file type, read with CO-RE from
 * the current task's fd table) in `inflight`, keyed by pid_tgid; sys_exit takes
 * them back, marks the entry done (SC_DONE) and writes one record with the
 * result. Entries are not deleted per call but reused by the thread's next
 * call (cheaper); user space deletes a process's entries in remove_pid.
 *
 * Records are submitted with BPF_RB_NO_WAKEUP: user space is never woken per
 * event, it drains the buffer on its own timer (see DESIGN.md, "Build notes").
 * Whatever cannot be delivered is counted in the per-CPU `lost` array.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "events.h"

/* GPL-compatible because bpf_probe_read_* and bpf_get_current_task_btf are
 * GPL-only helpers. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define AT_FDCWD -100
#define F_DUPFD 0
#define F_DUPFD_CLOEXEC 1030
#define O_APPEND 02000
#define ENAMETOOLONG 36
#define S_IFMT 0170000
#define S_IFSOCK 0140000
#define S_IFREG 0100000
#define S_IFBLK 0060000

/* Per traced process. `armed` is set by the first sys_enter seen after the pid
 * was added: an exit without an enter record before that is a call that was
 * already in flight when we attached, not a lost event. */
struct pid_state {
	__u32 armed;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct pid_state);
} pids SEC(".maps");

/* inflight.flags */
#define IF_OFFSET PGT_F_OFFSET /* fpos is the file position at entry */
#define IF_SOCKET PGT_F_SOCKET /* args[0] is a socket */

/* inflight.sc once its exit has been handled. */
#define SC_DONE 0xffffffff

struct inflight {
	__u64 args[6];
	__u64 fpos;
	__u32 sc;
	__u32 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct inflight);
} inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PGT_LOST_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/* Per-CPU room to assemble a record with its path, or to sum iovecs. */
struct scratch {
	__u8 buf[PGT_HDR_SIZE + PGT_PATH_CAP];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

/*
 * Set before load when pg_trace runs in a PID namespace other than the initial
 * one: ids are then taken in that namespace (the one the user's pids are in).
 * Left 0 otherwise, and the verifier drops that branch.
 */
const volatile __u64 pidns_dev = 0;
const volatile __u64 pidns_ino = 0;

/* bpf_get_current_pid_tgid(), in the namespace of pg_trace; 0 for a process
 * outside it (never traced). */
static __always_inline __u64 current_id(void)
{
	struct bpf_pidns_info ns;

	if (!pidns_ino)
		return bpf_get_current_pid_tgid();
	if (bpf_get_ns_current_pid_tgid(pidns_dev, pidns_ino, &ns, sizeof(ns)))
		return 0;
	return ((__u64)ns.tgid << 32) | ns.pid;
}

/* What sys_enter needs to know about the file behind args[0]. */
#define WANT_NONE 0
#define WANT_POS 1        /* position, for read/readv */
#define WANT_POS_SOCK 2   /* position unless O_APPEND, and whether it is a socket */
#define WANT_POS_IF_NEG 3 /* position only if args[3] == -1 (preadv2/pwritev2) */

static __always_inline void count_lost(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&lost, &idx);

	if (v)
		*v += 1;
}

/* Position and type of the file behind `fd` in the current task, via
 * task->files->fdt->fd[fd]. */
static __always_inline void file_info(__u64 fdarg, struct inflight *rec, int want)
{
	int fd = (int)fdarg;
	struct task_struct *task;
	struct fdtable *fdt;
	struct file **fds;
	struct file *f = NULL;
	unsigned int max_fds;
	umode_t mode;

	if (fd < 0)
		return;
	task = bpf_get_current_task_btf();
	fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt)
		return;
	max_fds = BPF_CORE_READ(fdt, max_fds);
	if ((unsigned int)fd >= max_fds)
		return;
	fds = BPF_CORE_READ(fdt, fd);
	if (!fds || bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return;
	mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) == S_IFSOCK) {
		rec->flags |= IF_SOCKET;
		return;
	}
	/* Offsets mean something for regular files and block devices only. */
	if ((mode & S_IFMT) != S_IFREG && (mode & S_IFMT) != S_IFBLK)
		return;
	if (want == WANT_POS_SOCK && (BPF_CORE_READ(f, f_flags) & O_APPEND))
		return;
	rec->fpos = BPF_CORE_READ(f, f_pos);
	rec->flags |= IF_OFFSET;
}

/* `nargs` is the syscall's argument count: the kernel refuses to attach a program
 * that reads past the end of the tracepoint's record (-EACCES). */
static __always_inline int do_enter(struct trace_event_raw_sys_enter *ctx, __u32 sc, int want,
				    int nargs)
{
	__u64 id = current_id();
	__u32 tgid = id >> 32;
	struct pid_state *st = bpf_map_lookup_elem(&pids, &tgid);
	struct inflight rec, *cur;

	if (!st)
		return 0;
	if (!st->armed)
		st->armed = 1;
	/* Only F_DUPFD and F_DUPFD_CLOEXEC make an event (their exits without
	 * an enter record are then ignored, see do_exit). */
	if (sc == PGT_SYS_FCNTL_DUPFD && (__u32)ctx->args[1] != F_DUPFD &&
	    (__u32)ctx->args[1] != F_DUPFD_CLOEXEC)
		return 0;

	rec.args[0] = nargs > 0 ? ctx->args[0] : 0;
	rec.args[1] = nargs > 1 ? ctx->args[1] : 0;
	rec.args[2] = nargs > 2 ? ctx->args[2] : 0;
	rec.args[3] = nargs > 3 ? ctx->args[3] : 0;
	rec.args[4] = nargs > 4 ? ctx->args[4] : 0;
	rec.args[5] = nargs > 5 ? ctx->args[5] : 0;
	rec.fpos = 0;
	rec.sc = sc;
	rec.flags = 0;
	if (want == WANT_POS || want == WANT_POS_SOCK ||
	    (want == WANT_POS_IF_NEG && (__s64)ctx->args[3] == -1))
		file_info(ctx->args[0], &rec, want);
	/* The thread's record is reused in place: a hash update (and a delete at
	 * exit) costs about 200 ns more per call than a lookup and a store. */
	cur = bpf_map_lookup_elem(&inflight, &id);
	if (cur)
		*cur = rec;
	else
		/* On failure (map full) the exit counts the event as lost. */
		bpf_map_update_elem(&inflight, &id, &rec, BPF_ANY);
	return 0;
}

/* Sum of the iov_len of the first PGT_IOV_CAP iovecs at `uptr`. */
static __always_inline __u64 iov_sum(__u64 uptr, __u64 cnt, __u16 *flags)
{
	__u32 zero = 0;
	struct scratch *s;
	struct iovec *iov;
	__u64 sum = 0;
	__u32 n, i;

	if (!uptr || !cnt)
		return 0;
	if (cnt > PGT_IOV_CAP) {
		cnt = PGT_IOV_CAP;
		*flags |= PGT_F_IOV_PARTIAL;
	}
	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 0;
	n = cnt;
	if (n > PGT_IOV_CAP)
		return 0;
	if (bpf_probe_read_user(s->buf, n * sizeof(struct iovec), (const void *)uptr))
		return 0;
	iov = (struct iovec *)s->buf;
	for (i = 0; i < PGT_IOV_CAP; i++) {
		if (i >= n)
			break;
		sum += iov[i].iov_len;
	}
	return sum;
}

static __always_inline void emit_fixed(const struct pgt_event *hdr)
{
	struct pgt_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count_lost(PGT_LOST_RINGBUF);
		return;
	}
	*e = *hdr;
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

static __always_inline void emit_path(struct pgt_event *hdr, __u64 upath)
{
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch, &zero);
	long n = 0;
	__u32 len;

	if (!s) {
		count_lost(PGT_LOST_RINGBUF);
		return;
	}
	hdr->flags |= PGT_F_PATH;
	/* statx(fd, NULL, AT_EMPTY_PATH) passes no path at all. */
	if (upath) {
		n = bpf_probe_read_user_str(s->buf + PGT_HDR_SIZE, PGT_PATH_CAP, (const void *)upath);
		if (n < 0) {
			hdr->flags |= PGT_F_PATH_FAULT;
			count_lost(PGT_LOST_PATH_FAULT);
			n = 0;
		} else if (n > 0) {
			/* A full buffer is a complete path of PATH_MAX-1 bytes
			 * unless the kernel refused the path as too long. */
			if (n == PGT_PATH_CAP && hdr->ret == -ENAMETOOLONG) {
				hdr->flags |= PGT_F_PATH_TRUNC;
				count_lost(PGT_LOST_PATH_TRUNC);
			}
			n -= 1; /* the NUL */
		}
	}
	len = (__u32)n & (PGT_PATH_CAP - 1);
	hdr->path_len = len;
	__builtin_memcpy(s->buf, hdr, PGT_HDR_SIZE);
	if (bpf_ringbuf_output(&events, s->buf, PGT_HDR_SIZE + len, BPF_RB_NO_WAKEUP))
		count_lost(PGT_LOST_RINGBUF);
}

static __always_inline int do_exit(struct trace_event_raw_sys_exit *ctx, __u32 sc)
{
	__u64 id = current_id();
	__u32 tgid = id >> 32;
	struct pid_state *st = bpf_map_lookup_elem(&pids, &tgid);
	struct inflight *recp, rec;
	struct pgt_event hdr;
	__u64 path = 0;
	int has_path = 0;

	if (!st)
		return 0;
	recp = bpf_map_lookup_elem(&inflight, &id);
	if (!recp || recp->sc == SC_DONE) {
		/* fcntl other than F_DUPFD* stores nothing. */
		if (st->armed && sc != PGT_SYS_FCNTL_DUPFD)
			count_lost(PGT_LOST_NO_ENTER);
		return 0;
	}
	rec = *recp;
	recp->sc = SC_DONE;
	if (rec.sc != sc) {
		/* A stale record: the exit of that call was never seen. */
		count_lost(PGT_LOST_NO_ENTER);
		return 0;
	}

	hdr.ts_ns = bpf_ktime_get_ns();
	hdr.tgid = tgid;
	hdr.tid = (__u32)id;
	hdr.syscall = sc;
	hdr.flags = rec.flags & (PGT_F_OFFSET | PGT_F_SOCKET);
	hdr.ret = ctx->ret;
	hdr.a0 = rec.args[0];
	hdr.a1 = 0;
	hdr.a2 = 0;
	hdr.a3 = 0;
	hdr.path_len = 0;

	switch (sc) {
	case PGT_SYS_OPEN:
		hdr.a0 = (__u64)(__s64)AT_FDCWD;
		hdr.a1 = rec.args[1];
		hdr.a2 = rec.args[2];
		path = rec.args[0];
		has_path = 1;
		break;
	case PGT_SYS_OPENAT:
		hdr.a1 = rec.args[2];
		hdr.a2 = rec.args[3];
		path = rec.args[1];
		has_path = 1;
		break;
	case PGT_SYS_READ:
	case PGT_SYS_WRITE:
		hdr.a1 = rec.fpos;
		hdr.a2 = rec.args[2];
		break;
	case PGT_SYS_PREAD64:
	case PGT_SYS_PWRITE64:
		hdr.a1 = rec.args[3];
		hdr.a2 = rec.args[2];
		hdr.flags |= PGT_F_OFFSET;
		break;
	case PGT_SYS_READV:
	case PGT_SYS_WRITEV:
		hdr.a1 = rec.fpos;
		hdr.a2 = iov_sum(rec.args[1], rec.args[2], &hdr.flags);
		break;
	case PGT_SYS_PREADV:
	case PGT_SYS_PWRITEV:
		/* On 64-bit the offset is pos_l (args[3]) alone. */
		hdr.a1 = rec.args[3];
		hdr.flags |= PGT_F_OFFSET;
		hdr.a2 = iov_sum(rec.args[1], rec.args[2], &hdr.flags);
		break;
	case PGT_SYS_PREADV2:
	case PGT_SYS_PWRITEV2:
		/* Offset -1 means "at the file position", like readv. */
		if ((__s64)rec.args[3] == -1) {
			hdr.a1 = rec.fpos;
		} else {
			hdr.a1 = rec.args[3];
			hdr.flags |= PGT_F_OFFSET;
		}
		hdr.a2 = iov_sum(rec.args[1], rec.args[2], &hdr.flags);
		break;
	case PGT_SYS_LSEEK:
		hdr.a1 = rec.args[1];
		hdr.a2 = rec.args[2];
		break;
	case PGT_SYS_FTRUNCATE:
		hdr.a1 = rec.args[1];
		break;
	case PGT_SYS_TRUNCATE:
		hdr.a0 = 0;
		hdr.a1 = rec.args[1];
		path = rec.args[0];
		has_path = 1;
		break;
	case PGT_SYS_UNLINK:
		hdr.a0 = (__u64)(__s64)AT_FDCWD;
		path = rec.args[0];
		has_path = 1;
		break;
	case PGT_SYS_UNLINKAT:
		hdr.a1 = rec.args[2];
		path = rec.args[1];
		has_path = 1;
		break;
	case PGT_SYS_GETDENTS64:
		hdr.a2 = rec.args[2];
		break;
	case PGT_SYS_NEWFSTATAT:
		hdr.a1 = rec.args[3];
		path = rec.args[1];
		has_path = 1;
		break;
	case PGT_SYS_STATX:
		hdr.a1 = rec.args[2];
		path = rec.args[1];
		has_path = 1;
		break;
	case PGT_SYS_LSTAT:
	case PGT_SYS_STAT:
		hdr.a0 = 0;
		path = rec.args[0];
		has_path = 1;
		break;
	case PGT_SYS_SENDTO:
		hdr.a2 = rec.args[2];
		break;
	case PGT_SYS_FADVISE64:
		hdr.a1 = rec.args[1];
		hdr.a2 = rec.args[2];
		hdr.a3 = rec.args[3];
		break;
	default:
		/* close, dup*, fcntl, fstat: a0 alone */
		break;
	}

	if (has_path)
		emit_path(&hdr, path);
	else
		emit_fixed(&hdr);
	return 0;
}

#define SYSCALL(name, sc, want, nargs)                                            \
	SEC("tracepoint/syscalls/sys_enter_" #name)                               \
	int enter_##name(struct trace_event_raw_sys_enter *ctx)                   \
	{                                                                         \
		return do_enter(ctx, sc, want, nargs);                            \
	}                                                                         \
	SEC("tracepoint/syscalls/sys_exit_" #name)                                \
	int exit_##name(struct trace_event_raw_sys_exit *ctx)                     \
	{                                                                         \
		return do_exit(ctx, sc);                                          \
	}

SYSCALL(open, PGT_SYS_OPEN, WANT_NONE, 3)
SYSCALL(openat, PGT_SYS_OPENAT, WANT_NONE, 4)
SYSCALL(close, PGT_SYS_CLOSE, WANT_NONE, 1)
SYSCALL(dup, PGT_SYS_DUP, WANT_NONE, 1)
SYSCALL(dup2, PGT_SYS_DUP2, WANT_NONE, 2)
SYSCALL(dup3, PGT_SYS_DUP3, WANT_NONE, 3)
SYSCALL(fcntl, PGT_SYS_FCNTL_DUPFD, WANT_NONE, 3)
SYSCALL(read, PGT_SYS_READ, WANT_POS, 3)
SYSCALL(pread64, PGT_SYS_PREAD64, WANT_NONE, 4)
SYSCALL(readv, PGT_SYS_READV, WANT_POS, 3)
SYSCALL(preadv, PGT_SYS_PREADV, WANT_NONE, 5)
SYSCALL(preadv2, PGT_SYS_PREADV2, WANT_POS_IF_NEG, 6)
SYSCALL(write, PGT_SYS_WRITE, WANT_POS_SOCK, 3)
SYSCALL(pwrite64, PGT_SYS_PWRITE64, WANT_NONE, 4)
SYSCALL(writev, PGT_SYS_WRITEV, WANT_POS_SOCK, 3)
SYSCALL(pwritev, PGT_SYS_PWRITEV, WANT_NONE, 5)
SYSCALL(pwritev2, PGT_SYS_PWRITEV2, WANT_POS_IF_NEG, 6)
SYSCALL(lseek, PGT_SYS_LSEEK, WANT_NONE, 3)
SYSCALL(ftruncate, PGT_SYS_FTRUNCATE, WANT_NONE, 2)
SYSCALL(truncate, PGT_SYS_TRUNCATE, WANT_NONE, 2)
SYSCALL(unlink, PGT_SYS_UNLINK, WANT_NONE, 1)
SYSCALL(unlinkat, PGT_SYS_UNLINKAT, WANT_NONE, 3)
SYSCALL(getdents64, PGT_SYS_GETDENTS64, WANT_NONE, 3)
SYSCALL(newfstatat, PGT_SYS_NEWFSTATAT, WANT_NONE, 4)
SYSCALL(newfstat, PGT_SYS_FSTAT, WANT_NONE, 2)
SYSCALL(newlstat, PGT_SYS_LSTAT, WANT_NONE, 2)
SYSCALL(newstat, PGT_SYS_STAT, WANT_NONE, 2)
SYSCALL(statx, PGT_SYS_STATX, WANT_NONE, 5)
SYSCALL(sendto, PGT_SYS_SENDTO, WANT_NONE, 6)
SYSCALL(fadvise64, PGT_SYS_FADVISE64, WANT_NONE, 4)
