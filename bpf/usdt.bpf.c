// SPDX-License-Identifier: MIT OR GPL-2.0
/*
 * pg_trace: PostgreSQL's own USDT probes (provider `postgresql`, probes.d) as
 * records in a ring buffer, decoded by src/trace/usdt.rs.
 *
 * One `SEC("usdt")` program per probe, attached by user space with
 * bpf_program__attach_usdt(pid, "/proc/PID/exe", "postgresql", name) for each
 * traced process: the kernel installs the uprobes only in those processes, so
 * there is no pid filter here. libbpf reads each probe's argument specs from
 * the binary's SDT note (`4@(%r12) 2@12(%r12) 1@14(%r12) ...`) and
 * bpf_usdt_arg() decodes them, with their real widths and signedness: the
 * declarations in probes.d are not what the compiler emitted.
 *
 * The programs do no PostgreSQL-specific decoding: they copy the probe's
 * arguments as 64-bit values (at most PGT_USDT_MAX_ARGS, and how many there
 * were), and for the text probes the string arg0 points to. Which argument
 * means what, per major (buffer__read__* lost isExtend in 16), is decided in
 * user space, where it is data and tested.
 *
 * The per-block probe (buffer__read__done, attached by default) is the hot
 * path: one fixed-size reservation, no string, no wakeup. Records are
 * submitted with BPF_RB_NO_WAKEUP and drained on user space's timer; what does
 * not fit is counted in the per-CPU `lost` array.
 *
 * Record layout (little-endian, no padding):
 *
 *   offset size  field
 *        0    8  ts_ns     CLOCK_MONOTONIC (per-block probes: to the clock
 *                          tick, see coarse_ns)
 *        8    4  tgid
 *       12    2  probe     PGT_USDT_* below
 *       14    1  nargs     arguments the probe has (bpf_usdt_arg_cnt)
 *       15    1  flags     PGT_UF_* below
 *       16    2  text_len  bytes of text after the header (no NUL)
 *       18    2  reserved
 *       20    4  tid
 *       24   64  args[8]   s64 each; arguments beyond nargs are 0
 *       88    -  text      text probes only: up to PGT_USDT_TEXT_CAP-1 bytes
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

/* GPL-compatible: bpf_probe_read_user_str is a GPL-only helper. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define PGT_USDT_MAX_ARGS 8
#define PGT_USDT_HDR 88
/* Query text is cut here (NUL included): a bounded record, read once. */
#define PGT_USDT_TEXT_CAP 1024

enum {
	PGT_USDT_BUFFER_READ_DONE = 0,
	PGT_USDT_BUFFER_READ_START = 1,
	PGT_USDT_SMGR_READ_START = 2,
	PGT_USDT_SMGR_READ_DONE = 3,
	PGT_USDT_SMGR_WRITE_START = 4,
	PGT_USDT_SMGR_WRITE_DONE = 5,
	PGT_USDT_QUERY_START = 6,
	PGT_USDT_QUERY_DONE = 7,
	PGT_USDT_STATEMENT_STATUS = 8,
	PGT_USDT_LOCK_WAIT_START = 9,
	PGT_USDT_LOCK_WAIT_DONE = 10,
	PGT_USDT_SORT_START = 11,
	PGT_USDT_SORT_DONE = 12,
	PGT_USDT_CHECKPOINT_START = 13,
	PGT_USDT_CHECKPOINT_DONE = 14,
};

/* flags */
#define PGT_UF_TEXT 0x01            /* text follows */
#define PGT_UF_TEXT_TRUNCATED 0x02  /* ... cut at PGT_USDT_TEXT_CAP */
#define PGT_UF_TEXT_UNREADABLE 0x04 /* arg0 was NULL or unreadable */

/* lost-event causes (indexes of `lost`) */
#define PGT_ULOST_RINGBUF 0
#define PGT_ULOST_COUNT 1

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PGT_ULOST_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/*
 * Reading the clock costs more than the rest of a per-block record on this
 * kind of VM (bpf_ktime_get_ns was ~1.5 us here; bpf_ktime_get_coarse_ns is
 * refused in tracing programs). Per-block records carry the time this CPU last
 * read in the current clock tick, read only on the tick's first record: at
 * most one tick (1/HZ) early.
 */
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

static __always_inline __u64 coarse_ns(void)
{
	__u32 zero = 0;
	struct tick_clock *c = bpf_map_lookup_elem(&tick_clock, &zero);
	__u64 j = bpf_jiffies64();
	__u64 ns;

	if (c && c->jiffies == j)
		return c->ns;
	ns = bpf_ktime_get_ns();
	if (c) {
		c->jiffies = j;
		c->ns = ns;
	}
	return ns;
}

struct hdr {
	__u64 ts_ns;
	__u32 tgid;
	__u16 probe;
	__u8 nargs;
	__u8 flags;
	__u16 text_len;
	__u16 reserved;
	__u32 tid;
	__s64 args[PGT_USDT_MAX_ARGS];
};

struct text_rec {
	struct hdr h;
	char text[PGT_USDT_TEXT_CAP];
};

_Static_assert(sizeof(struct hdr) == PGT_USDT_HDR, "header layout");

static __always_inline void count_lost(void)
{
	__u32 k = PGT_ULOST_RINGBUF;
	__u64 *v = bpf_map_lookup_elem(&lost, &k);

	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline void fill(struct pt_regs *ctx, struct hdr *h, __u16 probe,
				 int exact_time)
{
	__u64 id = bpf_get_current_pid_tgid();
	int n = bpf_usdt_arg_cnt(ctx);

	h->ts_ns = exact_time ? bpf_ktime_get_ns() : coarse_ns();
	h->tgid = id >> 32;
	h->tid = (__u32)id;
	h->probe = probe;
	h->nargs = n < 0 ? 0 : (n > 255 ? 255 : n);
	h->flags = 0;
	h->text_len = 0;
	h->reserved = 0;
#pragma unroll
	for (int i = 0; i < PGT_USDT_MAX_ARGS; i++) {
		long v = 0;

		if (i < n && bpf_usdt_arg(ctx, i, &v))
			v = 0;
		h->args[i] = v;
	}
}

/*
 * The per-block fast path. bpf_usdt_arg() is a BPF subprogram that, per
 * argument, looks the spec up again and reads the register and the memory with
 * a probe-read each: ~1 us for buffer__read__done's 8 arguments, more than the
 * uprobe itself. Here the spec is looked up once, registers are read straight
 * from the context, and memory arguments come from at most NCHUNK reads of
 * CHUNK bytes: the buffer tag's four fields sit side by side (`4@0(%r13) ...
 * -4@12(%r13)`), and fork, block and found are stack slots a few bytes apart.
 * The decoding rules (constant, register, register + offset, widths and sign
 * from arg_bitshift/arg_signed) are libbpf's, from the spec libbpf filled in
 * when it attached the probe; anything else falls back to bpf_usdt_arg().
 */
#define NCHUNK 3
#define CHUNK 64
/* A chunk starts this far below the first address asked of it: arguments
 * listed later may sit lower (isExtend at -149(%rbp) after fork at -136). */
#define CHUNK_LEAD 24

struct chunks {
	__u64 base[NCHUNK];
	__u8 buf[NCHUNK][CHUNK];
	int used;
};

/* A register by its offset in struct pt_regs, as libbpf records it (x86_64).
 * Each case is a load at a constant offset from the context, written in asm:
 * left to itself clang folds the cases into one load at ctx + table[off],
 * which the verifier refuses (a modified context pointer). */
#define REG_CASE(field)                                                        \
	case __builtin_offsetof(struct pt_regs, field):                        \
		asm volatile("%[out] = *(u64 *)(%[base] + %[off])"             \
			     : [out] "=r"(x)                                   \
			     : [base] "r"(ctx),                                \
			       [off] "i"(__builtin_offsetof(struct pt_regs, field))); \
		break

static __always_inline int reg_by_off(struct pt_regs *ctx, short off, __u64 *v)
{
	__u64 x;

	switch (off) {
	REG_CASE(r15);
	REG_CASE(r14);
	REG_CASE(r13);
	REG_CASE(r12);
	REG_CASE(bp);
	REG_CASE(bx);
	REG_CASE(r11);
	REG_CASE(r10);
	REG_CASE(r9);
	REG_CASE(r8);
	REG_CASE(ax);
	REG_CASE(cx);
	REG_CASE(dx);
	REG_CASE(si);
	REG_CASE(di);
	REG_CASE(sp);
	REG_CASE(ip);
	default:
		return -1;
	}
	*v = x;
	return 0;
}

/* 8 bytes of user memory at addr (what libbpf reads for any width), from an
 * already read chunk when it covers them. */
static __always_inline int read_user_u64(__u64 addr, __u64 *v, struct chunks *c)
{
#pragma unroll
	for (int i = 0; i < NCHUNK; i++) {
		if (i < c->used && addr >= c->base[i] && addr - c->base[i] <= CHUNK - 8) {
			__u32 d = (__u32)(addr - c->base[i]) & (CHUNK - 1);

			if (d > CHUNK - 8)
				return -1;
			__builtin_memcpy(v, &c->buf[i][d], 8);
			return 0;
		}
	}
#pragma unroll
	for (int i = 0; i < NCHUNK; i++) {
		if (i == c->used) {
			/* Near the edge of a mapping the wide read fails: then just
			 * the 8 bytes. */
			if (addr < CHUNK_LEAD ||
			    bpf_probe_read_user(c->buf[i], CHUNK, (const void *)(addr - CHUNK_LEAD)))
				break;
			c->base[i] = addr - CHUNK_LEAD;
			c->used = i + 1;
			__builtin_memcpy(v, &c->buf[i][CHUNK_LEAD], 8);
			return 0;
		}
	}
	return bpf_probe_read_user(v, 8, (const void *)addr);
}

static __always_inline void fill_args_fast(struct pt_regs *ctx, struct hdr *h)
{
	struct chunks c;
	struct __bpf_usdt_spec *spec;
	int spec_id = __bpf_usdt_spec_id(ctx);
	int n;

	__builtin_memset(&c, 0, sizeof(c));
	spec = spec_id < 0 ? NULL : bpf_map_lookup_elem(&__bpf_usdt_specs, &spec_id);
	n = spec ? spec->arg_cnt : 0;
	h->nargs = n < 0 ? 0 : (n > 255 ? 255 : n);
#pragma unroll
	for (int i = 0; i < PGT_USDT_MAX_ARGS; i++) {
		__u64 v = 0;

		if (spec && i < n && i < BPF_USDT_MAX_ARG_CNT) {
			struct __bpf_usdt_arg_spec *a = &spec->args[i];
			int shift = a->arg_bitshift & 63;
			long slow = 0;

			switch (a->arg_type) {
			case BPF_USDT_ARG_CONST:
				v = a->val_off;
				break;
			case BPF_USDT_ARG_REG:
				if (reg_by_off(ctx, a->reg_off, &v))
					v = 0;
				break;
			case BPF_USDT_ARG_REG_DEREF:
				if (reg_by_off(ctx, a->reg_off, &v) ||
				    read_user_u64(v + a->val_off, &v, &c))
					v = 0;
				break;
			default:
				bpf_usdt_arg(ctx, i, &slow);
				v = slow;
				shift = 0;
				break;
			}
			v <<= shift;
			if (a->arg_signed)
				v = (__u64)((__s64)v >> shift);
			else
				v >>= shift;
		}
		h->args[i] = v;
	}
}

static __always_inline int emit_block(struct pt_regs *ctx, __u16 probe)
{
	struct hdr *h = bpf_ringbuf_reserve(&events, sizeof(*h), 0);
	__u64 id;

	if (!h) {
		count_lost();
		return 0;
	}
	id = bpf_get_current_pid_tgid();
	h->ts_ns = coarse_ns();
	h->tgid = id >> 32;
	h->tid = (__u32)id;
	h->probe = probe;
	h->flags = 0;
	h->text_len = 0;
	h->reserved = 0;
	fill_args_fast(ctx, h);
	bpf_ringbuf_submit(h, BPF_RB_NO_WAKEUP);
	return 0;
}

static __always_inline int emit(struct pt_regs *ctx, __u16 probe, int exact_time)
{
	struct hdr *h = bpf_ringbuf_reserve(&events, sizeof(*h), 0);

	if (!h) {
		count_lost();
		return 0;
	}
	fill(ctx, h, probe, exact_time);
	bpf_ringbuf_submit(h, BPF_RB_NO_WAKEUP);
	return 0;
}

/* Probes whose arg0 is a C string (query text). */
static __always_inline int emit_text(struct pt_regs *ctx, __u16 probe)
{
	struct text_rec *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	long ptr = 0;
	long len;

	if (!r) {
		count_lost();
		return 0;
	}
	fill(ctx, &r->h, probe, 1);
	ptr = r->h.args[0];
	len = ptr ? bpf_probe_read_user_str(r->text, sizeof(r->text), (const void *)ptr) : -1;
	if (len > 0) {
		/* len counts the NUL */
		r->h.text_len = len - 1;
		r->h.flags = PGT_UF_TEXT;
		if (len == sizeof(r->text))
			r->h.flags |= PGT_UF_TEXT_TRUNCATED;
	} else {
		r->h.flags = PGT_UF_TEXT_UNREADABLE;
	}
	bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
	return 0;
}

/* Per-block probes: clock-tick time. */
#define BLOCK_PROBE(fn, id)                                                    \
	SEC("usdt")                                                            \
	int fn(struct pt_regs *ctx) { return emit_block(ctx, id); }

#define PROBE(fn, id)                                                          \
	SEC("usdt")                                                            \
	int fn(struct pt_regs *ctx) { return emit(ctx, id, 1); }

#define TEXT_PROBE(fn, id)                                                     \
	SEC("usdt")                                                            \
	int fn(struct pt_regs *ctx) { return emit_text(ctx, id); }

BLOCK_PROBE(buffer__read__done, PGT_USDT_BUFFER_READ_DONE)
BLOCK_PROBE(buffer__read__start, PGT_USDT_BUFFER_READ_START)
BLOCK_PROBE(smgr__md__read__start, PGT_USDT_SMGR_READ_START)
BLOCK_PROBE(smgr__md__read__done, PGT_USDT_SMGR_READ_DONE)
BLOCK_PROBE(smgr__md__write__start, PGT_USDT_SMGR_WRITE_START)
BLOCK_PROBE(smgr__md__write__done, PGT_USDT_SMGR_WRITE_DONE)
TEXT_PROBE(query__start, PGT_USDT_QUERY_START)
TEXT_PROBE(query__done, PGT_USDT_QUERY_DONE)
TEXT_PROBE(statement__status, PGT_USDT_STATEMENT_STATUS)
PROBE(lock__wait__start, PGT_USDT_LOCK_WAIT_START)
PROBE(lock__wait__done, PGT_USDT_LOCK_WAIT_DONE)
PROBE(sort__start, PGT_USDT_SORT_START)
PROBE(sort__done, PGT_USDT_SORT_DONE)
PROBE(checkpoint__start, PGT_USDT_CHECKPOINT_START)
PROBE(checkpoint__done, PGT_USDT_CHECKPOINT_DONE)
