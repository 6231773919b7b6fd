// SPDX-License-Identifier: MIT OR GPL-2.0
/*
 * pg_trace: file-related system calls of the traced processes, as records in a
 * ring buffer (layout in events.h).
 *
 * One program on the raw `sys_exit` tracepoint (tp_btf: BTF-typed arguments, no
 * tracefs, no perf event; detaching it takes about a millisecond). It runs at
 * the exit of every system call of every process, so it is built to leave
 * early:
 *
 *   1. the syscall number (orig_ax in the saved registers) against a 333-byte
 *      table: a bounds check and a load; anything we do not decode returns;
 *   2. the pid filter: the tgid against the 16 slots of `fast_pids` (one cache
 *      line in .bss, which user space writes through its mmap), then, only if
 *      more processes are traced than that, the `pids` hash map;
 *   3. one record, with the arguments taken from the saved user registers: on
 *      x86_64 the kernel leaves rdi, rsi, rdx, r10, r8, r9 untouched by the
 *      system calls traced here, so at exit they still hold the arguments.
 *      Paths are read from user memory at exit (still there: the kernel has
 *      just read them). For read/readv/write/writev (and preadv2/pwritev2 with
 *      offset -1) the start offset is the file position at exit minus what was
 *      transferred, read with CO-RE from the current task's fd table.
 *
 * Exit-only means no per-thread state: nothing to match, nothing stale, and a
 * call already in flight when we attach is reported normally when it returns.
 *
 * pread64, which a sequential scan issues some 200,000 times a second, takes
 * the shortest path: no file lookup, and its time is the one read at this
 * CPU's first event of the current clock tick (see event_ns) instead of a
 * clock read of its own, which would cost about a third of its BPF time.
 *
 * Records are submitted with BPF_RB_NO_WAKEUP: user space is never woken per
 * event, it drains the buffer on its own timer (see docs/design.md, "Build notes").
 * Whatever cannot be delivered is counted in the per-CPU `lost` array.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "events.h"

#ifndef __TARGET_ARCH_x86
#error "pg_trace decodes x86_64 system call numbers and registers only"
#endif
/* __NR_* of x86_64 (the 64-bit table; x32 numbers have bit 30 set and ia32
 * calls are recognised by TS_COMPAT below). */
#include <asm/unistd_64.h>

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
/* thread_info.status: the current system call is a 32-bit (ia32) one. */
#define TS_COMPAT 0x0002

/*
 * The traced processes. The first PGT_FAST_PIDS are in `fast_pids` (.bss,
 * written by user space through its mmap; 0 = free slot): one cache line
 * scanned without a map lookup. Any more go in the `pids` hash map, looked up
 * only while `pids_overflow` is set.
 */
#define PGT_FAST_PIDS 16
volatile __u32 fast_pids[PGT_FAST_PIDS];
volatile __u32 pids_overflow;
/* Bit (tgid % 32) of each tgid in `fast_pids`, set by user space before the slot:
 * the scheduler program, which runs at every context switch of the machine,
 * leaves a switch between two untraced tasks after this one load instead of
 * loading two buckets of its D-period counts. A superset (user space recomputes it when a pid goes; a slot the
 * kernel clears at exit leaves its bit); not kept for the `pids` map: while
 * `pids_overflow` is set it is not used. */
volatile __u32 sched_hint;

/* tgid -> 1, for the processes beyond the fast slots. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u32);
} pids SEC(".maps");

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

/* Per-CPU room to assemble a record with its path, or to sum iovecs. (Syscall
 * tracepoint probes run with preemption disabled.) */
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

/* Per CPU: the jiffy of the last clock read, and what it read. */
struct tick_clock {
	__u64 jiffies;
	__u64 ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tick_clock);
} tick_clock SEC(".maps");

/*
 * CLOCK_MONOTONIC for a record. `exact`: bpf_ktime_get_ns(). Otherwise the time
 * this CPU last read in the current clock tick, reading it only on the tick's
 * first event: at most one tick (1/HZ) early, never late, and never before an
 * earlier record of this CPU.
 */
static __always_inline __u64 event_ns(int exact)
{
	__u32 zero = 0;
	struct tick_clock *c = bpf_map_lookup_elem(&tick_clock, &zero);
	__u64 j = bpf_jiffies64();
	__u64 ns;

	if (c && !exact && c->jiffies == j)
		return c->ns;
	ns = bpf_ktime_get_ns();
	if (c) {
		c->jiffies = j;
		c->ns = ns;
	}
	return ns;
}

/* x86_64 syscall number -> PGT_SYS_* + 1; 0 for a call we do not decode. */
#define NR_TABLE_SIZE (__NR_statx + 1)
static const __u8 sc_by_nr[NR_TABLE_SIZE] = {
	[__NR_open] = PGT_SYS_OPEN + 1,
	[__NR_openat] = PGT_SYS_OPENAT + 1,
	[__NR_close] = PGT_SYS_CLOSE + 1,
	[__NR_dup] = PGT_SYS_DUP + 1,
	[__NR_dup2] = PGT_SYS_DUP2 + 1,
	[__NR_dup3] = PGT_SYS_DUP3 + 1,
	[__NR_fcntl] = PGT_SYS_FCNTL_DUPFD + 1,
	[__NR_read] = PGT_SYS_READ + 1,
	[__NR_pread64] = PGT_SYS_PREAD64 + 1,
	[__NR_readv] = PGT_SYS_READV + 1,
	[__NR_preadv] = PGT_SYS_PREADV + 1,
	[__NR_preadv2] = PGT_SYS_PREADV2 + 1,
	[__NR_write] = PGT_SYS_WRITE + 1,
	[__NR_pwrite64] = PGT_SYS_PWRITE64 + 1,
	[__NR_writev] = PGT_SYS_WRITEV + 1,
	[__NR_pwritev] = PGT_SYS_PWRITEV + 1,
	[__NR_pwritev2] = PGT_SYS_PWRITEV2 + 1,
	[__NR_lseek] = PGT_SYS_LSEEK + 1,
	[__NR_ftruncate] = PGT_SYS_FTRUNCATE + 1,
	[__NR_truncate] = PGT_SYS_TRUNCATE + 1,
	[__NR_unlink] = PGT_SYS_UNLINK + 1,
	[__NR_unlinkat] = PGT_SYS_UNLINKAT + 1,
	[__NR_getdents64] = PGT_SYS_GETDENTS64 + 1,
	[__NR_newfstatat] = PGT_SYS_NEWFSTATAT + 1,
	[__NR_fstat] = PGT_SYS_FSTAT + 1,
	[__NR_lstat] = PGT_SYS_LSTAT + 1,
	[__NR_stat] = PGT_SYS_STAT + 1,
	[__NR_statx] = PGT_SYS_STATX + 1,
	[__NR_sendto] = PGT_SYS_SENDTO + 1,
	[__NR_fadvise64] = PGT_SYS_FADVISE64 + 1,
	[__NR_sendfile] = PGT_SYS_SENDFILE + 1,
	[__NR_copy_file_range] = PGT_SYS_COPY_FILE_RANGE + 1,
	[__NR_splice] = PGT_SYS_SPLICE + 1,
};

static __always_inline int is_traced(__u32 tgid)
{
	int i;

	/* 0: a process outside our PID namespace (and what a free slot holds). */
	if (!tgid)
		return 0;
#pragma unroll
	for (i = 0; i < PGT_FAST_PIDS; i++)
		if (fast_pids[i] == tgid)
			return 1;
	return pids_overflow && bpf_map_lookup_elem(&pids, &tgid);
}

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

static __always_inline void count_lost(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&lost, &idx);

	if (v)
		*v += 1;
}

/* What file_pos needs to know about the transfer. */
#define POS_READ 0  /* read, readv, preadv2(-1) */
#define POS_WRITE 1 /* write, writev, pwritev2(-1): sockets flagged, no offset with O_APPEND */

/*
 * The offset a read/write through `fd` started at, from the file position now
 * (at exit) and the result: sets PGT_F_OFFSET and hdr->a1 for regular files and
 * block devices, PGT_F_SOCKET for a socket. Via task->files->fdt->fd[fd].
 */
static __always_inline void file_pos(struct task_struct *task, struct pgt_event *hdr, int want)
{
	int fd = (int)hdr->a0;
	struct fdtable *fdt;
	struct file **fds;
	struct file *f = NULL;
	unsigned int max_fds;
	umode_t mode;
	__s64 pos, done;

	if (fd < 0)
		return;
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
		hdr->flags |= PGT_F_SOCKET;
		return;
	}
	/* Offsets mean something for regular files and block devices only. */
	if ((mode & S_IFMT) != S_IFREG && (mode & S_IFMT) != S_IFBLK)
		return;
	if (want == POS_WRITE && (BPF_CORE_READ(f, f_flags) & O_APPEND))
		return;
	pos = BPF_CORE_READ(f, f_pos);
	/* The position moved by what was transferred; a failed call moved it
	 * not at all. Less than that: someone else moved it meanwhile. */
	done = hdr->ret > 0 ? hdr->ret : 0;
	if (pos < done)
		return;
	hdr->a1 = pos - done;
	hdr->flags |= PGT_F_OFFSET;
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

/*
 * PostgreSQL 18 io workers (io_method=worker) perform the data-file reads of
 * every backend of the cluster. A read is ours only if the AIO handle the
 * worker is executing belongs to a traced process, so at the exit of an io
 * worker's pread64/preadv/preadv2 the handle is read from the worker's own
 * memory: IoWorkerMain (method_worker.c) pushes an ErrorContextCallback on
 * `error_context_stack` whose `arg` is the PgAioHandle for exactly the span of
 * pgaio_io_perform_synchronously(), and NULL between I/Os. The handle's
 * `owner_procno` (what pg_aios shows as pid) is looked up in `aio_owners`,
 * which user space fills with the ProcNumber of each traced process; a handle
 * of a parallel worker of the traced backend, not followed yet, is recognised
 * by its PGPROC's `lockGroupLeader` being the traced backend's PGPROC.
 * Addresses and offsets come from user space (src/process/aio.rs), per worker.
 */
struct pgt_aio_worker {
	__u64 ecs_addr;    /* &error_context_stack in the worker */
	__u64 handles_lo;  /* pgaio_ctl->io_handles (shared memory: same in all) */
	__u64 handles_hi;  /* end of the io_handles array */
	__u32 handle_size; /* sizeof(PgAioHandle) */
	__u32 owner_off;   /* offsetof(PgAioHandle, owner_procno) */
	__u32 arg_off;     /* offsetof(ErrorContextCallback, arg) */
	__u32 proc_size;   /* sizeof(PGPROC); 0: no lock-group check */
	__u64 procs;       /* ProcGlobal->allProcs */
	__u64 leader_proc; /* the traced backend's PGPROC */
	__u64 leader_tgid; /* and its tgid */
	__u32 group_off;   /* offsetof(PGPROC, lockGroupLeader) */
	__u32 pad;
};

/* tgid of a followed io worker -> where to find what it executes. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct pgt_aio_worker);
} aio_workers SEC(".maps");

/* ProcNumber of a traced process -> its tgid. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u32);
} aio_owners SEC(".maps");

/* How many entries `aio_workers` has: 0 (any major but 18, io_method other
 * than worker) skips the lookup on every read. Written by user space. */
volatile __u32 aio_workers_n;

#define AIO_PLAIN 0   /* not an io worker: an ordinary read */
#define AIO_OURS 1    /* for a traced process: *owner is its tgid */
#define AIO_DROP 2    /* for another backend, or the owner is unknown */

static __always_inline int aio_owner(__u32 tgid, __u64 *owner)
{
	struct pgt_aio_worker *w;
	__u64 cb = 0, ioh = 0;
	__s32 procno = -1;
	__u32 key, *t;

	w = bpf_map_lookup_elem(&aio_workers, &tgid);
	if (!w)
		return AIO_PLAIN;
	if (bpf_probe_read_user(&cb, sizeof(cb), (const void *)w->ecs_addr) || !cb)
		goto unknown;
	if (bpf_probe_read_user(&ioh, sizeof(ioh), (const void *)(cb + w->arg_off)) || !ioh)
		goto unknown;
	/* Only a pointer to the start of one of the handles is a handle. */
	if (ioh < w->handles_lo || ioh >= w->handles_hi || !w->handle_size ||
	    (ioh - w->handles_lo) % w->handle_size)
		goto unknown;
	if (bpf_probe_read_user(&procno, sizeof(procno), (const void *)(ioh + w->owner_off)) ||
	    procno < 0)
		goto unknown;
	key = (__u32)procno;
	t = bpf_map_lookup_elem(&aio_owners, &key);
	/* is_traced: an owner that has exited is no longer followed (see
	 * pgt_process_exit), and its ProcNumber may be a new backend's already. */
	if (t && is_traced(*t)) {
		*owner = *t;
		return AIO_OURS;
	}
	/* A parallel worker of ours that user space has not followed yet. */
	if (w->proc_size && w->leader_proc && is_traced((__u32)w->leader_tgid)) {
		__u64 gl = 0;

		if (bpf_probe_read_user(&gl, sizeof(gl),
					(const void *)(w->procs + (__u64)key * w->proc_size +
						       w->group_off)))
			goto unknown;
		if (gl == w->leader_proc) {
			*owner = w->leader_tgid;
			return AIO_OURS;
		}
	}
	return AIO_DROP;
unknown:
	/* Never credited to anyone: counted, so the display can say so. */
	count_lost(PGT_LOST_AIO_OWNER);
	return AIO_DROP;
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

SEC("tp_btf/sys_exit")
int BPF_PROG(sys_exit, struct pt_regs *regs, long ret)
{
	__u64 nr = regs->orig_ax;
	struct task_struct *task;
	struct pgt_event hdr;
	__u64 id, path = 0;
	__u32 tgid, sc;
	int has_path = 0;
	int aio = AIO_PLAIN;
	__u64 aio_tgid = 0;

	/* 1. Not a call we decode (the common case, for every process). */
	if (nr >= NR_TABLE_SIZE)
		return 0;
	sc = sc_by_nr[nr];
	if (!sc)
		return 0;
	sc -= 1;

	/* 2. Not a traced process. */
	id = current_id();
	tgid = id >> 32;
	if (!is_traced(tgid))
		return 0;

	/* A 32-bit (int 0x80) call of a 64-bit process: other numbers, other
	 * registers. */
	task = bpf_get_current_task_btf();
	if (task->thread_info.status & TS_COMPAT)
		return 0;

	/* An io worker's read is emitted only when it is for a traced process. */
	if (aio_workers_n &&
	    (sc == PGT_SYS_PREAD64 || sc == PGT_SYS_PREADV || sc == PGT_SYS_PREADV2)) {
		aio = aio_owner(tgid, &aio_tgid);
		if (aio == AIO_DROP)
			return 0;
	}

	/* pread64, the one call a scan makes by the hundred thousand per second:
	 * straight into the ring buffer, its time to the clock tick. */
	if (sc == PGT_SYS_PREAD64) {
		struct pgt_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

		if (!e) {
			count_lost(PGT_LOST_RINGBUF);
			return 0;
		}
		e->ts_ns = event_ns(0);
		e->tgid = tgid;
		e->tid = (__u32)id;
		e->syscall = PGT_SYS_PREAD64;
		e->flags = PGT_F_OFFSET | (aio == AIO_OURS ? PGT_F_AIO_OWNER : 0);
		e->ret = ret;
		e->a0 = regs->di;
		e->a1 = regs->r10;
		e->a2 = regs->dx;
		e->a3 = aio_tgid;
		e->path_len = 0;
		bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
		return 0;
	}

	/* fcntl makes an event for F_DUPFD and F_DUPFD_CLOEXEC only. */
	if (sc == PGT_SYS_FCNTL_DUPFD && (__u32)regs->si != F_DUPFD &&
	    (__u32)regs->si != F_DUPFD_CLOEXEC)
		return 0;

	hdr.ts_ns = event_ns(1);
	hdr.tgid = tgid;
	hdr.tid = (__u32)id;
	hdr.syscall = sc;
	hdr.flags = 0;
	hdr.ret = ret;
	hdr.a0 = regs->di;
	hdr.a1 = 0;
	hdr.a2 = 0;
	hdr.a3 = 0;
	hdr.path_len = 0;

	switch (sc) {
	case PGT_SYS_OPEN:
		hdr.a0 = (__u64)(__s64)AT_FDCWD;
		hdr.a1 = regs->si;
		hdr.a2 = regs->dx;
		path = regs->di;
		has_path = 1;
		break;
	case PGT_SYS_OPENAT:
		hdr.a1 = regs->dx;
		hdr.a2 = regs->r10;
		path = regs->si;
		has_path = 1;
		break;
	case PGT_SYS_READ:
		hdr.a2 = regs->dx;
		file_pos(task, &hdr, POS_READ);
		break;
	case PGT_SYS_WRITE:
		hdr.a2 = regs->dx;
		file_pos(task, &hdr, POS_WRITE);
		break;
	case PGT_SYS_PWRITE64:
		hdr.a1 = regs->r10;
		hdr.a2 = regs->dx;
		hdr.flags |= PGT_F_OFFSET;
		break;
	case PGT_SYS_READV:
		hdr.a2 = iov_sum(regs->si, regs->dx, &hdr.flags);
		file_pos(task, &hdr, POS_READ);
		break;
	case PGT_SYS_WRITEV:
		hdr.a2 = iov_sum(regs->si, regs->dx, &hdr.flags);
		file_pos(task, &hdr, POS_WRITE);
		break;
	case PGT_SYS_PREADV:
	case PGT_SYS_PWRITEV:
		/* On 64-bit the offset is pos_l (the 4th argument) alone. */
		hdr.a1 = regs->r10;
		hdr.flags |= PGT_F_OFFSET;
		hdr.a2 = iov_sum(regs->si, regs->dx, &hdr.flags);
		break;
	case PGT_SYS_PREADV2:
	case PGT_SYS_PWRITEV2:
		hdr.a2 = iov_sum(regs->si, regs->dx, &hdr.flags);
		/* Offset -1 means "at the file position", like readv. */
		if ((__s64)regs->r10 == -1) {
			file_pos(task, &hdr, sc == PGT_SYS_PREADV2 ? POS_READ : POS_WRITE);
		} else {
			hdr.a1 = regs->r10;
			hdr.flags |= PGT_F_OFFSET;
		}
		break;
	case PGT_SYS_LSEEK:
		hdr.a1 = regs->si;
		hdr.a2 = regs->dx;
		break;
	case PGT_SYS_FTRUNCATE:
		hdr.a1 = regs->si;
		break;
	case PGT_SYS_TRUNCATE:
		hdr.a0 = 0;
		hdr.a1 = regs->si;
		path = regs->di;
		has_path = 1;
		break;
	case PGT_SYS_UNLINK:
		hdr.a0 = (__u64)(__s64)AT_FDCWD;
		path = regs->di;
		has_path = 1;
		break;
	case PGT_SYS_UNLINKAT:
		hdr.a1 = regs->dx;
		path = regs->si;
		has_path = 1;
		break;
	case PGT_SYS_GETDENTS64:
		hdr.a2 = regs->dx;
		break;
	case PGT_SYS_NEWFSTATAT:
		hdr.a1 = regs->r10;
		path = regs->si;
		has_path = 1;
		break;
	case PGT_SYS_STATX:
		hdr.a1 = regs->dx;
		path = regs->si;
		has_path = 1;
		break;
	case PGT_SYS_LSTAT:
	case PGT_SYS_STAT:
		hdr.a0 = 0;
		path = regs->di;
		has_path = 1;
		break;
	case PGT_SYS_SENDTO:
		hdr.a2 = regs->dx;
		break;
	case PGT_SYS_FADVISE64:
		hdr.a1 = regs->si;
		hdr.a2 = regs->dx;
		hdr.a3 = regs->r10;
		break;
	case PGT_SYS_SENDFILE:
		/* sendfile(out_fd, in_fd, off_t *offset, count): the input is the read. */
		hdr.a0 = regs->si;
		hdr.a2 = regs->r10;
		if (!regs->dx)
			file_pos(task, &hdr, POS_READ);
		break;
	case PGT_SYS_COPY_FILE_RANGE:
	case PGT_SYS_SPLICE:
		/* (fd_in, off_in *, fd_out, off_out *, len, flags) */
		hdr.a2 = regs->r8;
		if (!regs->si)
			file_pos(task, &hdr, POS_READ);
		break;
	default:
		/* close, dup*, fcntl, fstat: a0 alone */
		break;
	}

	if (aio == AIO_OURS) {
		hdr.flags |= PGT_F_AIO_OWNER;
		hdr.a3 = aio_tgid;
	}
	if (has_path)
		emit_path(&hdr, path);
	else
		emit_fixed(&hdr);
	return 0;
}

/*
 * ---- Process exit: the end of a followed pid, exactly --------------------------
 *
 * When the last thread of a followed process exits, the pid is taken out of
 * `fast_pids`/`pids` here, in the kernel, before the pid can be freed (that
 * happens only once the parent has reaped the zombie): a later process given
 * the same pid is never followed, whatever user space is doing. The exit is
 * reported in its own ring buffer, `exits`, which user space drains *before*
 * `events` on each poll: every record the process wrote to `events` was
 * submitted before its exit record, so it is drained in the same poll, ahead
 * of the exit.
 *
 * tp_btf/sched_process_exit runs in do_exit of the exiting task, after
 * signal->live was decremented: live == 0 means this is the group's last
 * thread. (The tracepoint gained a group_dead argument in 6.16; reading live
 * works on every kernel.)
 *
 * Record (little-endian, 16 bytes; decoded by `decode_exit` in ebpf.rs):
 *   0  u64 ts_ns      CLOCK_MONOTONIC at the exit
 *   8  u32 tgid       in pg_trace's pid namespace
 *  12  u32 exit_code  task->exit_code: wait(2)'s status word
 */
struct pgt_exit {
	__u64 ts_ns;
	__u32 tgid;
	__u32 exit_code;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096 * 4);
} exits SEC(".maps");

/* Exits that did not fit in `exits` (cannot happen with 16 followed pids at
 * most per poll, counted all the same). */
volatile __u64 exits_lost;

static __always_inline void unfollow_in_kernel(__u32 tgid)
{
	int i;

#pragma unroll
	for (i = 0; i < PGT_FAST_PIDS; i++)
		if (fast_pids[i] == tgid)
			fast_pids[i] = 0;
	bpf_map_delete_elem(&pids, &tgid);
}

/* Scheduler times (below): a traced thread's times go to its tgid's as it exits,
 * while the scheduler programs run (user space sets `sched_on` before attaching). */
volatile __u32 sched_on;
static __always_inline void sched_retire(struct task_struct *t, __u32 tid, __u32 tgid);

SEC("tp_btf/sched_process_exit")
int BPF_PROG(pgt_process_exit, struct task_struct *task)
{
	struct pgt_exit *e;
	__u32 tgid = current_id() >> 32;

	if (!is_traced(tgid))
		return 0;
	if (sched_on)
		sched_retire(task, (__u32)current_id(), tgid);
	/* Another thread of the group is still running: not the end yet. */
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	unfollow_in_kernel(tgid);
	e = bpf_ringbuf_reserve(&exits, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&exits_lost, 1);
		return 0;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->tgid = tgid;
	e->exit_code = BPF_CORE_READ(task, exit_code);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/*
 * Copier mode: a child of a traced process is traced from its first instruction,
 * in the kernel, so its first reads are not lost while user space finds it at its
 * next poll (pgBackRest's workers start on the biggest file the moment they fork).
 * Attached only when user space asks. Processes only: a thread shares its tgid.
 * Skipped when pg_trace runs in another pid namespace (the child's pid there would
 * have to be looked up; user space still finds it by polling).
 */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(pgt_process_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 one = 1, tgid, child_tgid;

	if (pidns_ino)
		return 0;
	tgid = BPF_CORE_READ(parent, tgid);
	if (!is_traced(tgid))
		return 0;
	child_tgid = BPF_CORE_READ(child, tgid);
	if (child_tgid == tgid || BPF_CORE_READ(child, pid) != child_tgid)
		return 0;
	if (bpf_map_update_elem(&pids, &child_tgid, &one, BPF_ANY) == 0)
		pids_overflow = 1;
	return 0;
}

/*
 * ---- io_uring: reads and writes submitted through a ring ------------------------
 *
 * A read submitted through io_uring (PostgreSQL 18 with io_method=io_uring, fio)
 * never passes pread64: the process only calls io_uring_enter, or not even that
 * with SQPOLL. Two BTF tracepoints see each request instead:
 *
 *   io_uring_submit_req(req)   right after the SQE was prepared (io_submit_sqe):
 *                              opcode, fd (or registered-file index), offset and
 *                              length are in the request; runs in the submitting
 *                              task: the process itself, or its SQPOLL thread (an
 *                              io thread of the ring creator's thread group, so
 *                              its tgid is the creator's).
 *   io_uring_complete(ctx, req, cqe)
 *                              when the CQE is posted: the result, and the file the
 *                              request was issued on (req->file, set by then).
 *
 * Attribution is by the *submitting* tgid, filtered at submit like every system
 * call (fast_pids/pids): the completion may be posted by an io-wq worker, in task
 * work, or by another process reaping a shared ring (a PostgreSQL backend waiting
 * for another's I/O), none of which says whose read it was. What submit learned is
 * kept in `uring_inflight`, keyed by the request's address, and the completion
 * emits one ordinary record into `events` (layout in events.h, PGT_URING_*) and
 * forgets it. A request whose completion is never traced (its CQE overflowed the
 * CQ ring, IOSQE_CQE_SKIP_SUCCESS is not recorded at all) ages out of the LRU map;
 * the CQE's user_data must equal the submitted one, so that a stale entry for a
 * recycled request is never taken for the new one.
 *
 * Field offsets come from the kernel's BTF (CO-RE): `struct io_rw` overlays the
 * request's command area (io_kiocb_to_cmd), kiocb.ki_pos holds the SQE's offset
 * (-1: at the file position) and len its length (READV/WRITEV: the iovec count,
 * summed here from user memory, as for readv). User space attaches these two
 * programs only when the kernel's BTF has both tracepoints with these
 * prototypes and `struct io_rw` (src/trace/ebpf/uring.rs).
 */

/* enum io_uring_op (UAPI: stable numbers). */
#define PGT_IORING_OP_READV 1
#define PGT_IORING_OP_WRITEV 2
#define PGT_IORING_OP_READ_FIXED 4
#define PGT_IORING_OP_WRITE_FIXED 5
#define PGT_IORING_OP_READ 22
#define PGT_IORING_OP_WRITE 23
#define PGT_IORING_OP_READV_FIXED 60
#define PGT_IORING_OP_WRITEV_FIXED 61
/* REQ_F_FIXED_FILE and REQ_F_CQE_SKIP mirror IOSQE_FIXED_FILE (bit 0) and
 * IOSQE_CQE_SKIP_SUCCESS (bit 6) of the UAPI. */
#define PGT_REQ_F_FIXED_FILE (1ULL << 0)
#define PGT_REQ_F_CQE_SKIP (1ULL << 6)

/* What submit learned about one request. */
struct pgt_uring_req {
	__u64 user_data;
	__u64 offset;
	__u64 requested;
	__u32 tgid;
	__u32 tid;
	__s32 fd;    /* the SQE's fd: a registered-file index with PGT_F_URING_FIXED */
	__u16 op;    /* PGT_URING_* */
	__u16 flags; /* PGT_F_OFFSET, PGT_F_URING_FIXED, PGT_F_IOV_PARTIAL */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* the io_kiocb's address */
	__type(value, struct pgt_uring_req);
} uring_inflight SEC(".maps");

/* The iov_len sum of the first PGT_IOV_CAP iovecs at `uptr`, read one by one (no
 * shared scratch: this program may run in a task the syscall program preempted). */
static __always_inline __u64 uring_iov_sum(__u64 uptr, __u32 cnt, __u16 *flags)
{
	struct iovec iov;
	__u64 sum = 0;
	__u32 i;

	if (cnt > PGT_IOV_CAP) {
		cnt = PGT_IOV_CAP;
		*flags |= PGT_F_IOV_PARTIAL;
	}
	for (i = 0; i < PGT_IOV_CAP; i++) {
		if (i >= cnt)
			break;
		if (bpf_probe_read_user(&iov, sizeof(iov), (const void *)(uptr + i * sizeof(iov))))
			break;
		sum += iov.iov_len;
	}
	return sum;
}

SEC("tp_btf/io_uring_submit_req")
int BPF_PROG(pgt_uring_submit, struct io_kiocb *req)
{
	__u64 id = current_id();
	__u64 key = (__u64)req;
	struct pgt_uring_req r = {};
	struct io_rw *rw;
	__u64 flags;
	__s64 off;
	__u32 len;
	int vectored = 0;

	if (!is_traced(id >> 32))
		return 0;
	switch (BPF_CORE_READ(req, opcode)) {
	case PGT_IORING_OP_READ:
		r.op = PGT_URING_READ;
		break;
	case PGT_IORING_OP_READV:
		r.op = PGT_URING_READV;
		vectored = 1;
		break;
	case PGT_IORING_OP_READ_FIXED:
		r.op = PGT_URING_READ_FIXED;
		break;
	case PGT_IORING_OP_READV_FIXED:
		r.op = PGT_URING_READV_FIXED;
		vectored = 1;
		break;
	case PGT_IORING_OP_WRITE:
		r.op = PGT_URING_WRITE;
		break;
	case PGT_IORING_OP_WRITEV:
		r.op = PGT_URING_WRITEV;
		vectored = 1;
		break;
	case PGT_IORING_OP_WRITE_FIXED:
		r.op = PGT_URING_WRITE_FIXED;
		break;
	case PGT_IORING_OP_WRITEV_FIXED:
		r.op = PGT_URING_WRITEV_FIXED;
		vectored = 1;
		break;
	default:
		return 0;
	}
	flags = BPF_CORE_READ(req, flags);
	/* No CQE will be posted on success: nothing would ever complete it. */
	if (flags & PGT_REQ_F_CQE_SKIP)
		return 0;
	if (flags & PGT_REQ_F_FIXED_FILE)
		r.flags |= PGT_F_URING_FIXED;
	rw = (struct io_rw *)&req->cmd;
	off = BPF_CORE_READ(rw, kiocb.ki_pos);
	if (off >= 0) {
		r.offset = off;
		r.flags |= PGT_F_OFFSET;
	}
	len = BPF_CORE_READ(rw, len);
	if (vectored)
		r.requested = uring_iov_sum(BPF_CORE_READ(rw, addr), len, &r.flags);
	else
		r.requested = len;
	r.fd = BPF_CORE_READ(req, cqe.fd);
	r.user_data = BPF_CORE_READ(req, cqe.user_data);
	r.tgid = id >> 32;
	r.tid = (__u32)id;
	if (bpf_map_update_elem(&uring_inflight, &key, &r, BPF_ANY))
		count_lost(PGT_LOST_RINGBUF);
	return 0;
}

SEC("tp_btf/io_uring_complete")
int BPF_PROG(pgt_uring_complete, struct io_ring_ctx *ring, struct io_kiocb *req,
	     struct io_uring_cqe *cqe)
{
	__u64 key = (__u64)req;
	struct pgt_uring_req *r;
	struct pgt_event *e;
	struct file *f;
	__u64 ino = 0;
	__u32 dev = 0;

	/* Auxiliary CQEs (no request) are nothing we submitted. */
	if (!req)
		return 0;
	r = bpf_map_lookup_elem(&uring_inflight, &key);
	if (!r)
		return 0;
	/* A recycled request's stale entry, or a process no longer followed (its pid
	 * may be another's by now). */
	if (BPF_CORE_READ(cqe, user_data) != r->user_data || !is_traced(r->tgid)) {
		bpf_map_delete_elem(&uring_inflight, &key);
		return 0;
	}
	f = BPF_CORE_READ(req, file);
	if (f) {
		ino = BPF_CORE_READ(f, f_inode, i_ino);
		dev = BPF_CORE_READ(f, f_inode, i_sb, s_dev);
	}
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_lost(PGT_LOST_RINGBUF);
		bpf_map_delete_elem(&uring_inflight, &key);
		return 0;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->tgid = r->tgid;
	e->tid = r->tid;
	e->syscall = r->op;
	e->flags = r->flags | (f ? 0 : PGT_F_URING_NOFILE);
	e->ret = BPF_CORE_READ(cqe, res);
	e->a0 = ((__u64)dev << 32) | (__u32)r->fd;
	e->a1 = r->offset;
	e->a2 = r->requested;
	e->a3 = ino;
	e->path_len = 0;
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	bpf_map_delete_elem(&uring_inflight, &key);
	return 0;
}

/*
 * ==== Where the time goes (issue 14): scheduler times, I/O latency, exact waits ====
 *
 * Everything below is this feature's and touches the code above only through
 * is_traced(), current_id() and pidns_ino.
 *
 * -- Scheduler times --------------------------------------------------------------
 *
 * Per traced process: the time its threads spent on a CPU, runnable but waiting
 * for one (the run queue), asleep interruptibly (S: a client, a latch, a
 * timeout) and in uninterruptible sleep (D: mostly the device).
 *
 * The first two are the kernel's own accounting, which it keeps for every task
 * anyway: `se.sum_exec_runtime` and `sched_info.run_delay` (CONFIG_SCHED_INFO),
 * which user space reads once an interval from /proc/TGID/task/TID/schedstat.
 * What the kernel does not keep (unless schedstats are on, which would cost every
 * switch of the host) is how the time off the CPU splits into S and D. That is
 * this program's: on sched_switch, a traced thread leaving its CPU in D opens a
 * period in its record (`sched_threads`), and its next switch in closes it, less
 * the part it then spent in the run queue (the kernel's run_delay growth plus the
 * run queue clock minus `last_queued`, read before sched_info_switch adds the
 * current period). S is then the rest: the window less the other three.
 *
 * So a switch that opens or closes no D period, nearly all of them, costs the
 * pid test and a load (`sched_dpend`, a count of the open D periods per bucket of
 * tids: a switch in whose bucket holds none is done). No clock read, no map
 * lookup: the earlier version, which timed every state of every traced thread in
 * its record, cost ~205 ns per traced switch (1.05x of a pipe ping-pong's round
 * trip, docs/overhead.md).
 *
 * A record also holds the thread's window: when it starts (`base_t`) and the
 * kernel's two counters then, for the figures to count from there. User space
 * writes one for each thread of a process before it traces it; the fork program
 * below one for each thread created later ({its start, 0, 0}); a D period of a
 * thread that has none creates one the same way. At sched_process_exit (every
 * thread's, before a last one unfollows its tgid) the thread's times are added
 * to its tgid's `sched_totals` and the record deleted: a record exists exactly
 * while its thread can still be read in /proc.
 *
 * Not in another PID namespace than the initial one: the tracepoints give
 * tasks, whose pids there would have to be translated (user space says so).
 */

/* task->__state bits (include/linux/sched.h). */
#define PGT_TASK_UNINTERRUPTIBLE 0x0002

/* Layout shared with src/trace/ebpf/sched.rs (decode_thread, encode_thread). */
struct pgt_thread {
	/* Start of the thread's window (CLOCK_MONOTONIC ns), and the kernel's
	 * se.sum_exec_runtime and sched_info.run_delay then. */
	__u64 base_t;
	__u64 base_run;
	__u64 base_rq;
	/* D time of the closed periods. */
	__u64 d_ns;
	/* Start of the open D period; 0: none. */
	__u64 d_since;
	/* sched_info.run_delay + 1 when the open period began; 0: unknown. */
	__u64 run_delay1;
	__u32 tgid;
	__u32 pad;
};

/* A tgid's exited threads: on a CPU, run queue, D, and their windows, summed. */
#define PGT_TOT_RUN 0
#define PGT_TOT_RQ 1
#define PGT_TOT_DISK 2
#define PGT_TOT_WINDOW 3
#define PGT_TOT_COUNT 4

struct pgt_sched_totals {
	__u64 ns[PGT_TOT_COUNT];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct pgt_thread);
} sched_threads SEC(".maps");

/* Per CPU: an exit adds to its own CPU's copy, with no atomic; user space sums. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct pgt_sched_totals);
} sched_totals SEC(".maps");

/* Open D periods per bucket of tids (tid % PGT_DPEND): a superset test for the
 * switch in. Atomic: a bucket's threads run on any CPU. User space adds one
 * before it writes a record seeded in D. */
#define PGT_DPEND 1024
volatile __u32 sched_dpend[PGT_DPEND];

/* Whether the I/O latency programs are attached (user space sets it). */
volatile __u32 io_latency_on;

/* A traced thread inside a read/write/fsync: since when, which call, and
 * whether it slept in D state (waited for the device) meanwhile. */
struct pgt_io_call {
	__u64 ts;
	__s64 fd;
	__u32 nr;
	__u32 disk;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct pgt_io_call);
} io_calls SEC(".maps");

/* Kernels before 5.14 called it `state` (a long). */
struct task_struct___pre514 {
	long state;
} __attribute__((preserve_access_index));

static __always_inline unsigned int task_state(struct task_struct *t)
{
	/* Direct loads: `t` is a tp_btf argument (a BTF pointer). */
	if (bpf_core_field_exists(t->__state))
		return t->__state;
	return (unsigned int)((struct task_struct___pre514 *)t)->state;
}

/* The run queue part of the `d` nanoseconds `t` spent off the CPU since it left
 * it in D; read as `t` is switched in (see above). The clock of the current
 * period is that of `t`'s run queue (rq->clock, which sched_info's times are
 * in), reached through its CFS run queue (CONFIG_FAIR_GROUP_SCHED; the
 * per-CPU `runqueues` would need CONFIG_KALLSYMS_ALL): without it, the current
 * period of a woken thread counts as D. */
static __always_inline __u64 queued_part(struct task_struct *t, struct pgt_thread *th, __u64 d)
{
	__u64 q = 0, rd, lq;

	if (!bpf_core_field_exists(t->sched_info.run_delay))
		return 0;
	/* Direct loads (tp_btf arguments are BTF pointers), not BPF_CORE_READ's
	 * helper call per hop. */
	rd = t->sched_info.run_delay;
	if (th->run_delay1 && rd + 1 > th->run_delay1)
		q = rd + 1 - th->run_delay1;
	lq = t->sched_info.last_queued;
	if (lq && bpf_core_field_exists(t->se.cfs_rq) &&
	    bpf_core_field_exists(((struct cfs_rq *)0)->rq)) {
		__u64 clock = t->se.cfs_rq->rq->clock;

		if (clock > lq)
			q += clock - lq;
	}
	return q < d ? q : d;
}

static __always_inline __u64 run_delay1_of(struct task_struct *t)
{
	if (!bpf_core_field_exists(t->sched_info.run_delay))
		return 0;
	return t->sched_info.run_delay + 1;
}

static __always_inline volatile __u32 *dpend_of(__u32 tid)
{
	return &sched_dpend[tid & (PGT_DPEND - 1)];
}

/* A record for a thread that has none: its window from its start (the kernel's
 * counters were 0 then). */
static __always_inline struct pgt_thread *sched_record(struct task_struct *t, __u32 tid, __u32 tgid)
{
	struct pgt_thread *th = bpf_map_lookup_elem(&sched_threads, &tid);
	struct pgt_thread nt;

	if (th)
		return th;
	__builtin_memset(&nt, 0, sizeof(nt));
	nt.base_t = BPF_CORE_READ(t, start_time);
	nt.tgid = tgid;
	bpf_map_update_elem(&sched_threads, &tid, &nt, BPF_NOEXIST);
	return bpf_map_lookup_elem(&sched_threads, &tid);
}

/* A traced thread leaves its CPU in D: its period opens (and a read or write it
 * is inside waited for the device, for --io-latency). */
static __always_inline void sched_d_out(struct task_struct *prev, __u32 tid, __u32 tgid)
{
	struct pgt_thread *th = sched_record(prev, tid, tgid);

	if (th && !th->d_since) {
		th->d_since = bpf_ktime_get_ns();
		th->run_delay1 = run_delay1_of(prev);
		__sync_fetch_and_add(dpend_of(tid), 1);
	}
	if (io_latency_on) {
		struct pgt_io_call *c = bpf_map_lookup_elem(&io_calls, &tid);

		if (c)
			c->disk = 1;
	}
}

/* A traced thread whose bucket holds an open D period comes back to a CPU (`in`)
 * or leaves it (a period user space seeded just as the thread woke: it ran since,
 * when is unknown, so the period is dropped). */
static __always_inline void sched_d_close(struct task_struct *t, __u32 tid, int in)
{
	struct pgt_thread *th = bpf_map_lookup_elem(&sched_threads, &tid);
	__u64 now, d;

	if (!th || !th->d_since)
		return;
	if (in) {
		now = bpf_ktime_get_ns();
		if (now > th->d_since) {
			d = now - th->d_since;
			th->d_ns += d - queued_part(t, th, d);
		}
	}
	th->d_since = 0;
	__sync_fetch_and_add(dpend_of(tid), -1);
}


/* The body of both scheduler programs. `st` is the state `prev` leaves its CPU
 * in: the one __schedule acted on (the tracepoint's prev_state, 5.18+) or, on
 * older kernels (`have_state` 0), prev->__state read here. The latter races: a
 * wakeup from another CPU can set it to TASK_WAKING/RUNNING between __schedule's
 * read and the tracepoint, and a device wait then counts as the run queue (its
 * read as a page-cache hit). User space says which program runs. */
static __always_inline int sched_switch(bool preempt, struct task_struct *prev,
					struct task_struct *next, unsigned int st, int have_state)
{
	__u32 tgid, ntgid, tid;

	if (pidns_ino)
		return 0;
	tgid = prev->tgid;
	ntgid = next->tgid;
	if (!pids_overflow) {
		__u32 h = sched_hint;

		if (!(h & (1u << (tgid & 31))) && !(h & (1u << (ntgid & 31))))
			return 0;
	}
	/* Records exist for traced threads only: a bucket's count, then the lookup, test
	 * the tasks without the pid scan, which only a D period's start needs. */
	tid = prev->pid;
	/* A period seeded as the thread woke (see sched_d_close). */
	if (*dpend_of(tid))
		sched_d_close(prev, tid, 0);
	if (!have_state)
		st = task_state(prev);
	/* Preempted (still runnable, whatever its state) or not asleep in D: nothing to
	 * time. */
	if (!preempt && (st & PGT_TASK_UNINTERRUPTIBLE) && is_traced(tgid))
		sched_d_out(prev, tid, tgid);
	tid = next->pid;
	if (*dpend_of(tid))
		sched_d_close(next, tid, 1);
	return 0;
}

/* A traced thread exits (called from pgt_process_exit, in do_exit, for every
 * thread, before a group's last one unfollows the tgid): its times since its
 * window began go to its tgid's totals. The CPU time of its current slice since
 * the last tick is not in sum_exec_runtime yet (up to a tick; it counts as
 * sleep), nor is the rest of do_exit. */
static __always_inline void sched_retire(struct task_struct *t, __u32 tid, __u32 tgid)
{
	struct pgt_thread *th = bpf_map_lookup_elem(&sched_threads, &tid);
	struct pgt_sched_totals *tot;
	__u64 now = bpf_ktime_get_ns(), base_t, base_run = 0, base_rq = 0, d = 0;
	__u64 run, rq = 0;

	if (th) {
		base_t = th->base_t;
		base_run = th->base_run;
		base_rq = th->base_rq;
		d = th->d_ns;
		if (th->d_since)
			__sync_fetch_and_add(dpend_of(tid), -1);
	} else {
		base_t = BPF_CORE_READ(t, start_time);
	}
	run = BPF_CORE_READ(t, se.sum_exec_runtime);
	if (bpf_core_field_exists(t->sched_info.run_delay))
		rq = BPF_CORE_READ(t, sched_info.run_delay);
	tot = bpf_map_lookup_elem(&sched_totals, &tgid);
	if (!tot) {
		struct pgt_sched_totals z = {};

		bpf_map_update_elem(&sched_totals, &tgid, &z, BPF_NOEXIST);
		tot = bpf_map_lookup_elem(&sched_totals, &tgid);
	}
	if (tot) {
		tot->ns[PGT_TOT_RUN] += run > base_run ? run - base_run : 0;
		tot->ns[PGT_TOT_RQ] += rq > base_rq ? rq - base_rq : 0;
		tot->ns[PGT_TOT_DISK] += d;
		tot->ns[PGT_TOT_WINDOW] += now > base_t ? now - base_t : 0;
	}
	if (th)
		bpf_map_delete_elem(&sched_threads, &tid);
}

/* A thread created in a traced process: its record, its window from its start.
 * (A new process is followed, and seeded, by user space.) */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(pgt_sched_fork, struct task_struct *parent, struct task_struct *child)
{
	struct pgt_thread nt;
	__u32 tgid, tid;

	if (pidns_ino || !sched_on)
		return 0;
	tgid = parent->tgid;
	if (child->tgid != tgid || !is_traced(tgid))
		return 0;
	tid = child->pid;
	__builtin_memset(&nt, 0, sizeof(nt));
	nt.base_t = child->start_time;
	nt.tgid = tgid;
	bpf_map_update_elem(&sched_threads, &tid, &nt, BPF_NOEXIST);
	return 0;
}

/* 5.18+: the tracepoint passes the state __schedule acted on. */
SEC("tp_btf/sched_switch")
int BPF_PROG(pgt_sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	return sched_switch(preempt, prev, next, prev_state, 1);
}

/* Before 5.18 (three arguments): the state read from the task, racy (above).
 * Loaded only there (user space turns autoload off on the other one). */
SEC("tp_btf/sched_switch")
int BPF_PROG(pgt_sched_switch_old, bool preempt, struct task_struct *prev,
	     struct task_struct *next)
{
	return sched_switch(preempt, prev, next, 0, 0);
}

/* An empty program on the same tracepoint, for benches/kernel_time.rs only
 * (never loaded by pg_trace): its run time under BPF statistics is their own
 * clock reads and the dispatch, the floor that ours is measured net of. */
SEC("tp_btf/sched_switch")
int pgt_sched_switch_empty(void *ctx)
{
	return 0;
}

/*
 * -- I/O latency (opt-in: --io-latency) -----------------------------------------
 *
 * sys_enter stores, per traced thread inside a read, write or sync call, its
 * entry time; a second sys_exit program (beside the one above, attached only
 * with this) writes one 40-byte record per call to `io_lat` with the call's
 * latency and whether the thread slept in D state meanwhile (set by
 * pgt_sched_switch): a call that never waited for the device was served by
 * the page cache. Layout (little-endian), decoded by src/trace/ebpf/io_latency.rs:
 *   0 u64 ts_ns (exit)  8 u64 latency_ns  16 s64 ret  24 u32 tgid  28 u32 tid
 *  32 s32 fd  36 u16 x86_64 syscall number  38 u16 flags (1: slept in D state)
 *  40 u32 owner: for a PG18 io worker's read, the traced process it read for (0:
 *     the caller's own call; a worker's read for anyone else is not recorded)
 *  44 u32 padding
 */
struct pgt_io_lat {
	__u64 ts_ns;
	__u64 lat_ns;
	__s64 ret;
	__u32 tgid;
	__u32 tid;
	__s32 fd;
	__u16 nr;
	__u16 flags;
	__u32 owner;
	__u32 pad;
};

/* 2 MiB: 50k records, a quarter of a second of a cache-warm scan's reads, while
 * user space drains every 100 ms. (Kernel memory only until --io-latency maps it.) */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 2 << 20);
} io_lat SEC(".maps");

volatile __u64 io_lat_lost;

static __always_inline int io_timed(__u64 nr)
{
	switch (nr) {
	case __NR_read:
	case __NR_pread64:
	case __NR_readv:
	case __NR_preadv:
	case __NR_preadv2:
	case __NR_write:
	case __NR_pwrite64:
	case __NR_writev:
	case __NR_pwritev:
	case __NR_pwritev2:
	case __NR_fsync:
	case __NR_fdatasync:
	case __NR_sync_file_range:
		return 1;
	}
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(pgt_io_enter, struct pt_regs *regs, long nr)
{
	struct pgt_io_call c;
	struct task_struct *task;
	__u64 id;
	__u32 tid;

	if (!io_timed(nr))
		return 0;
	id = current_id();
	if (!is_traced(id >> 32))
		return 0;
	task = bpf_get_current_task_btf();
	if (task->thread_info.status & TS_COMPAT)
		return 0;
	tid = (__u32)id;
	c.ts = bpf_ktime_get_ns();
	c.fd = (__s64)(int)regs->di;
	c.nr = (__u32)nr;
	c.disk = 0;
	bpf_map_update_elem(&io_calls, &tid, &c, BPF_ANY);
	return 0;
}

/* A traced thread inside a timed call submits a block I/O: the call waited for
 * the device even if it never slept in D state. On a VM whose hypervisor
 * serves a virtio request while the guest's notify exits (the data in the
 * host's page cache), the bio completes before the reader would block: a cold
 * scan's reads took 65-90 us with no D-state sleep at all, and counted 85 %
 * page cache. bio_queue runs in the submitter's context. Attached with
 * --io-latency only; one hash lookup per bio of the machine. (A read served from
 * the page cache that starts asynchronous readahead counts as disk too: it did
 * the submission's work.) */
SEC("tp_btf/block_bio_queue")
int BPF_PROG(pgt_bio_queue, struct bio *bio)
{
	struct pgt_io_call *c;
	__u32 tid;

	if (!io_latency_on)
		return 0;
	tid = (__u32)current_id();
	if (!tid)
		return 0;
	c = bpf_map_lookup_elem(&io_calls, &tid);
	if (c)
		c->disk = 1;
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(pgt_io_exit, struct pt_regs *regs, long ret)
{
	__u64 nr = regs->orig_ax, id, now, owner = 0;
	struct pgt_io_call *c;
	struct pgt_io_lat *e;
	__u32 tid;
	int aio = AIO_PLAIN;

	if (!io_timed(nr))
		return 0;
	id = current_id();
	tid = (__u32)id;
	c = bpf_map_lookup_elem(&io_calls, &tid);
	if (!c)
		return 0;
	if (c->nr != nr) {
		bpf_map_delete_elem(&io_calls, &tid);
		return 0;
	}
	now = bpf_ktime_get_ns();
	/* An io worker's read: timed for the traced process it reads for, as the
	 * syscall program credits it; not at all for another backend. */
	if (aio_workers_n && (nr == __NR_pread64 || nr == __NR_preadv || nr == __NR_preadv2)) {
		aio = aio_owner(id >> 32, &owner);
		if (aio == AIO_DROP) {
			bpf_map_delete_elem(&io_calls, &tid);
			return 0;
		}
	}
	e = bpf_ringbuf_reserve(&io_lat, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&io_lat_lost, 1);
	} else {
		e->ts_ns = now;
		e->lat_ns = now > c->ts ? now - c->ts : 0;
		e->ret = ret;
		e->tgid = id >> 32;
		e->tid = tid;
		e->fd = (__s32)c->fd;
		e->nr = (__u16)nr;
		e->flags = c->disk ? 1 : 0;
		e->owner = aio == AIO_OURS ? (__u32)owner : 0;
		e->pad = 0;
		bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	}
	bpf_map_delete_elem(&io_calls, &tid);
	return 0;
}

/*
 * -- Exact wait transitions (opt-in: --exact-waits) -------------------------------
 *
 * Attached to hardware write watchpoints (perf PERF_TYPE_BREAKPOINT,
 * HW_BREAKPOINT_W, 4 bytes) that user space opens on each thread of the traced
 * backend at its PGPROC's wait_event_info. The trap fires after the write: the
 * word holds the new value. Record (little-endian, 16 bytes): u64 ts_ns,
 * u32 tgid, u32 wait_event_info.
 */
struct pgt_wait_rec {
	__u64 ts_ns;
	__u32 tgid;
	__u32 value;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096 * 64);
} wait_trans SEC(".maps");

volatile __u64 wait_trans_lost;

SEC("perf_event")
int pgt_wait_watch(struct bpf_perf_event_data *ctx)
{
	struct pgt_wait_rec *e;
	__u32 v = 0;

	if (bpf_probe_read_user(&v, sizeof(v), (const void *)ctx->addr))
		return 0;
	e = bpf_ringbuf_reserve(&wait_trans, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&wait_trans_lost, 1);
		return 0;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->tgid = current_id() >> 32;
	e->value = v;
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return 0;
}
