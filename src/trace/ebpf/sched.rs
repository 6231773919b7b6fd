//! Scheduler times of the traced processes: the user side of `pgt_sched_switch` (in
//! `bpf/syscalls.bpf.c`, "Scheduler times"). Per traced thread, the kernel's own
//! accounting gives the time on a CPU and in the run queue (`/proc/…/schedstat`, read
//! here once a tick); the program adds the D periods and each thread's window, and at a
//! thread's exit its tgid's totals. S is the rest of the window. The sum goes out as one
//! [`EventKind::SchedTimes`] per process and tick (no event per context switch).

use anyhow::anyhow;
use libbpf_rs::{Link, MapCore, MapFlags};

use super::skel::{OpenSyscallsSkel, SyscallsSkel};
use super::store_shared;
use crate::trace::{monotonic_ns, Event, EventKind, Pid};

/// `PGT_TOT_*` of the BPF side: the exited threads' sums in `sched_totals`.
const TOT_RUN: usize = 0;
const TOT_RQ: usize = 1;
const TOT_DISK: usize = 2;
const TOT_WINDOW: usize = 3;
const TOT_COUNT: usize = 4;

/// `struct pgt_thread`: u64 base_t, base_run, base_rq, d_ns, d_since, run_delay1; u32
/// tgid, pad.
const THREAD_RECORD: usize = 6 * 8 + 8;

/// `PGT_DPEND`: buckets of tids with a count of open D periods each.
const DPEND: u32 = 1024;

/// On a CPU, run queue, D, window (ns), indexed by `TOT_*`.
pub(super) type Times = [u64; TOT_COUNT];

/// The value of `sched_totals`; None when it is not one.
fn decode_totals(v: &[u8]) -> Option<Times> {
    if v.len() != 8 * TOT_COUNT {
        return None;
    }
    let mut t = [0u64; TOT_COUNT];
    for (i, slot) in t.iter_mut().enumerate() {
        *slot = u64::from_ne_bytes(v.get(i * 8..i * 8 + 8)?.try_into().ok()?);
    }
    Some(t)
}

/// A `sched_threads` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Thread {
    /// Start of the window, and the kernel's on-CPU and run queue counters then.
    base_t: u64,
    base_run: u64,
    base_rq: u64,
    /// Closed D periods.
    d_ns: u64,
    /// Start of the open D period; 0: none.
    d_since: u64,
    tgid: u32,
}

fn u64_at(v: &[u8], i: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(
        v.get(i * 8..i * 8 + 8)?.try_into().ok()?,
    ))
}

fn decode_thread(v: &[u8]) -> Option<Thread> {
    if v.len() != THREAD_RECORD {
        return None;
    }
    Some(Thread {
        base_t: u64_at(v, 0)?,
        base_run: u64_at(v, 1)?,
        base_rq: u64_at(v, 2)?,
        d_ns: u64_at(v, 3)?,
        d_since: u64_at(v, 4)?,
        tgid: u32::from_ne_bytes(v.get(48..52)?.try_into().ok()?),
    })
}

fn encode_thread(t: &Thread) -> [u8; THREAD_RECORD] {
    let mut v = [0u8; THREAD_RECORD];
    for (i, x) in [t.base_t, t.base_run, t.base_rq, t.d_ns, t.d_since]
        .into_iter()
        .enumerate()
    {
        v[i * 8..i * 8 + 8].copy_from_slice(&x.to_ne_bytes());
    }
    v[48..52].copy_from_slice(&t.tgid.to_ne_bytes());
    v
}

fn add_times(mut a: Times, b: Times) -> Times {
    for (x, y) in a.iter_mut().zip(b) {
        *x = x.saturating_add(y);
    }
    a
}

/// A live thread's times at `now`: its kernel counters (`run`, `rq`) since its window
/// began, its D periods (the open one up to now), and the window.
fn live_times(t: &Thread, run: u64, rq: u64, now: u64) -> Times {
    let open = if t.d_since != 0 {
        now.saturating_sub(t.d_since)
    } else {
        0
    };
    [
        run.saturating_sub(t.base_run),
        rq.saturating_sub(t.base_rq),
        t.d_ns.saturating_add(open),
        now.saturating_sub(t.base_t),
    ]
}

/// (running, run queue, S, D) of a sum of windows: S is what the others leave.
fn split(t: Times) -> [u64; 4] {
    let (run, rq, d) = (t[TOT_RUN], t[TOT_RQ], t[TOT_DISK]);
    let s = t[TOT_WINDOW]
        .saturating_sub(run)
        .saturating_sub(rq)
        .saturating_sub(d);
    [run, rq, s, d]
}

/// `/proc/…/schedstat`: nanoseconds on a CPU, nanoseconds waiting on a run queue.
fn parse_schedstat(s: &str) -> Option<(u64, u64)> {
    let mut it = s.split_ascii_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn schedstat(tgid: u32, tid: u32) -> Option<(u64, u64)> {
    parse_schedstat(&std::fs::read_to_string(format!("/proc/{tgid}/task/{tid}/schedstat")).ok()?)
}

/// Whether this kernel keeps the per-task scheduler accounting the figures come from
/// (CONFIG_SCHED_INFO: without it schedstat reads "0 0 0" or is missing).
pub(super) fn kernel_keeps_sched_info() -> bool {
    let Some((run, _)) = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .as_deref()
        .and_then(parse_schedstat)
    else {
        return false;
    };
    run > 0
}

/// The thread's state letter in `/proc/…/stat` ("tid (comm) S …": after the last ')').
fn state_letter(stat: &str) -> Option<char> {
    stat.rfind(')')
        .and_then(|i| stat.get(i + 1..))
        .and_then(|r| r.trim_start().chars().next())
}

/// Which scheduler program this kernel gets (see `sched_switch` in the BPF source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Variant {
    /// 5.18+: the state the thread left its CPU in is the tracepoint's `prev_state`.
    PrevState,
    /// Older: read from the task in the tracepoint, after a wakeup may have changed it.
    TaskState,
}

/// Whether the kernel's `sched_switch` tracepoint passes `prev_state`: its BTF type
/// `btf_trace_sched_switch` is a pointer to a function of (void *, preempt, prev, next,
/// prev_state) since 5.18, without the last before. None when the kernel's BTF does not
/// say (then the old program, which loads everywhere).
fn has_prev_state() -> Option<bool> {
    use libbpf_rs::btf::{types, Btf};
    let btf = Btf::from_vmlinux().ok()?;
    let td = btf.type_by_name::<types::Typedef<'_>>("btf_trace_sched_switch")?;
    let proto = td.next_type()?.next_type()?;
    let proto = types::FuncProto::try_from(proto).ok()?;
    Some(proto.len() >= 5)
}

/// Before the load: one of the two programs, by what the kernel's tracepoint passes (a
/// program reading an argument the tracepoint lacks would fail the load of the whole
/// object), and never the bench's empty one unless asked.
pub(super) fn configure(open: &mut OpenSyscallsSkel<'_>, empty_program: bool) -> Variant {
    // Debug builds: tests/kernel_time.rs runs the old program on a new kernel too.
    #[cfg(debug_assertions)]
    let forced_old = std::env::var_os("PG_TRACE_TEST_SCHED_TASK_STATE").is_some();
    #[cfg(not(debug_assertions))]
    let forced_old = false;
    let v = if !forced_old && has_prev_state() == Some(true) {
        Variant::PrevState
    } else {
        Variant::TaskState
    };
    open.progs
        .pgt_sched_switch
        .set_autoload(v == Variant::PrevState);
    open.progs
        .pgt_sched_switch_old
        .set_autoload(v == Variant::TaskState);
    open.progs
        .pgt_sched_switch_empty
        .set_autoload(empty_program);
    v
}

/// What the old program cannot tell, for `limitations`.
pub(super) const TASK_STATE_NOTE: &str = "scheduler times: this kernel's sched_switch \
     tracepoint does not pass the state the thread left in (before 5.18): it is read from \
     the task, where a wakeup can already have changed it, so some device waits count as \
     sleep (S) and their reads (--io-latency) as page-cache hits";

/// The attached scheduler programs.
pub(super) struct SchedWatch {
    links: Vec<Link>,
}

impl SchedWatch {
    /// Attaches the scheduler programs, after [`SchedWatch::seed`] has written the threads
    /// of the processes traced so far. None in another PID namespace than the initial one
    /// (the programs would see host pids; they do nothing there).
    pub(super) fn attach(
        skel: &mut SyscallsSkel<'static>,
        variant: Variant,
    ) -> anyhow::Result<SchedWatch> {
        set_on(skel, true);
        let attached = Self::attach_programs(skel, variant);
        if attached.is_err() {
            set_on(skel, false);
        }
        attached
    }

    fn attach_programs(
        skel: &SyscallsSkel<'static>,
        variant: Variant,
    ) -> anyhow::Result<SchedWatch> {
        let prog = match variant {
            Variant::PrevState => &skel.progs.pgt_sched_switch,
            Variant::TaskState => &skel.progs.pgt_sched_switch_old,
        };
        let progs = [
            (prog, "sched_switch"),
            (&skel.progs.pgt_sched_fork, "sched_process_fork"),
        ];
        let mut links = Vec::with_capacity(progs.len());
        for (prog, name) in progs {
            links.push(prog.attach().map_err(|e| {
                let detail = crate::trace::libbpf::last_message().unwrap_or_else(|| e.to_string());
                anyhow!("scheduler times unavailable: attaching to {name} failed ({detail})")
            })?);
        }
        Ok(SchedWatch { links })
    }

    /// Writes the record of each thread of `pid`: its window starts now, from the kernel's
    /// counters now, and a thread asleep in D has its period open from now. Called before
    /// the process is traced (the programs then find every thread's record). Best effort.
    pub(super) fn seed(skel: &mut SyscallsSkel<'static>, pid: Pid) {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return;
        };
        for entry in dir.flatten() {
            let Some(tid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Some((run, rq)) = schedstat(pid as u32, tid) else {
                continue;
            };
            let now = monotonic_ns();
            let in_d = std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|s| state_letter(&s))
                == Some('D');
            let t = Thread {
                base_t: now,
                base_run: run,
                base_rq: rq,
                d_ns: 0,
                d_since: if in_d { now } else { 0 },
                tgid: pid as u32,
            };
            if in_d {
                // Before the record: a switch that finds the count finds the record or
                // nothing, never an open period it was not told of.
                if let Some(bss) = skel.maps.bss_data.as_deref_mut() {
                    // Atomic: the programs change the bucket on other CPUs meanwhile.
                    let slot = &mut bss.sched_dpend[(tid % DPEND) as usize];
                    // SAFETY: `slot` is a valid, aligned u32 of the mmapped .bss for the
                    // call; the kernel's programs update it only atomically too.
                    unsafe { std::sync::atomic::AtomicU32::from_ptr(slot) }
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
            let _ = skel.maps.sched_threads.update(
                &tid.to_ne_bytes(),
                &encode_thread(&t),
                MapFlags::NO_EXIST,
            );
        }
    }

    /// One [`EventKind::SchedTimes`] per pid of `pids`, as of now.
    ///
    /// The live threads (their records and /proc) and the exited threads' totals are read
    /// apart while threads exit: one retired between the reads would count twice or not
    /// at all. So the totals are read on both sides of the threads, and the whole again
    /// (three times at most) unless they did not change meanwhile.
    pub(super) fn read(&self, skel: &SyscallsSkel<'static>, pids: &[Pid], out: &mut Vec<Event>) {
        if pids.is_empty() {
            return;
        }
        // Per CPU in the kernel: summed here.
        let totals_of = |pid: Pid| {
            let per_cpu = skel
                .maps
                .sched_totals
                .lookup_percpu(&(pid as u32).to_ne_bytes(), MapFlags::ANY)
                .ok()
                .flatten()
                .unwrap_or_default();
            per_cpu
                .iter()
                .filter_map(|v| decode_totals(v))
                .fold([0u64; TOT_COUNT], add_times)
        };
        let all_totals = || pids.iter().map(|&p| totals_of(p)).collect::<Vec<_>>();
        let live = || -> (Vec<(u32, Times)>, u64) {
            let mut v: Vec<(u32, Thread, u64, u64)> = skel
                .maps
                .sched_threads
                .keys()
                .filter_map(|k| {
                    let tid = u32::from_ne_bytes(k.get(..4)?.try_into().ok()?);
                    let t =
                        decode_thread(&skel.maps.sched_threads.lookup(&k, MapFlags::ANY).ok()??)?;
                    if !pids.contains(&(t.tgid as Pid)) {
                        return None;
                    }
                    let (run, rq) = schedstat(t.tgid, tid)?;
                    Some((tid, t, run, rq))
                })
                .collect();
            v.sort_unstable_by_key(|t| t.0);
            let now = monotonic_ns();
            (
                v.iter()
                    .map(|(_, t, run, rq)| (t.tgid, live_times(t, *run, *rq, now)))
                    .collect(),
                now,
            )
        };
        let mut before = all_totals();
        let (mut threads, mut now);
        let mut tries = 0;
        loop {
            (threads, now) = live();
            let after = all_totals();
            tries += 1;
            if after == before || tries == 3 {
                before = after;
                break;
            }
            before = after;
        }
        for (&pid, &exited) in pids.iter().zip(&before) {
            let t = threads
                .iter()
                .filter(|t| t.0 == pid as u32)
                .fold(exited, |acc, t| add_times(acc, t.1));
            if t == [0; TOT_COUNT] {
                continue;
            }
            let [running_ns, runqueue_ns, sleeping_ns, blocked_ns] = split(t);
            out.push(Event {
                ts_ns: now,
                pid,
                kind: EventKind::SchedTimes {
                    running_ns,
                    runqueue_ns,
                    sleeping_ns,
                    blocked_ns,
                },
            });
        }
    }

    /// Forgets a process no longer traced (its pid may come back as another process):
    /// its exited threads' totals, and the records of its threads still alive.
    pub(super) fn forget(&self, skel: &SyscallsSkel<'static>, pid: Pid) {
        let _ = skel.maps.sched_totals.delete(&(pid as u32).to_ne_bytes());
        let mine: Vec<Vec<u8>> = skel
            .maps
            .sched_threads
            .keys()
            .filter(|k| {
                skel.maps
                    .sched_threads
                    .lookup(k, MapFlags::ANY)
                    .ok()
                    .flatten()
                    .and_then(|v| decode_thread(&v))
                    .is_some_and(|t| t.tgid == pid as u32)
            })
            .collect();
        for k in mine {
            let _ = skel.maps.sched_threads.delete(&k);
        }
    }

    /// Stops the programs (idempotent).
    pub(super) fn detach(&mut self) {
        self.links.clear();
    }
}

/// Whether the exit program retires the threads' times (see `sched_on` in the BPF source).
fn set_on(skel: &mut SyscallsSkel<'static>, on: bool) {
    if let Some(bss) = skel.maps.bss_data.as_deref_mut() {
        store_shared(&mut bss.sched_on, on as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn thread(base_t: u64, d_ns: u64, d_since: u64) -> Thread {
        Thread {
            base_t,
            base_run: 100,
            base_rq: 10,
            d_ns,
            d_since,
            tgid: 7,
        }
    }

    #[test]
    fn a_live_thread_counts_from_its_window_and_s_is_the_rest() {
        // Window 1000 ns from 500; 300 on a CPU and 50 queued since; 200 in D closed,
        // one open since 1400.
        let t = live_times(&thread(500, 200, 1400), 400, 60, 1500);
        assert_eq!(t, [300, 50, 300, 1000]);
        assert_eq!(split(t), [300, 50, 350, 300]);
        // A window the counters overrun (a read racing a switch) leaves S at 0.
        assert_eq!(split([900, 200, 0, 1000]), [900, 200, 0, 0]);
        // Counters behind the base (never: a pid reused) count 0.
        assert_eq!(live_times(&thread(500, 0, 0), 50, 5, 600), [0, 0, 0, 100]);
    }

    #[test]
    fn records_round_trip_and_reject_garbage() {
        let t = thread(42, 3, 9);
        let v = encode_thread(&t);
        assert_eq!(decode_thread(&v), Some(t));
        assert_eq!(decode_thread(&v[..THREAD_RECORD - 1]), None);
        assert_eq!(decode_totals(&[0u8; 31]), None);
        assert_eq!(
            decode_totals(&[1u8; 32]).map(|t| t[3]),
            Some(0x0101010101010101)
        );
        assert_eq!(parse_schedstat("123 45 6\n"), Some((123, 45)));
        assert_eq!(parse_schedstat("x 45 6"), None);
        assert_eq!(parse_schedstat(""), None);
        assert_eq!(state_letter("12 (post (gres)) D 1 2"), Some('D'));
        assert_eq!(state_letter("12 (x"), None);
    }

    proptest! {
        #[test]
        fn never_panics(v in proptest::collection::vec(any::<u8>(), 0..64), s in ".{0,40}") {
            let _ = decode_thread(&v);
            let _ = decode_totals(&v);
            let _ = parse_schedstat(&s);
            let _ = state_letter(&s);
        }
    }
}
