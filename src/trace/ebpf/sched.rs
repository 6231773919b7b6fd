//! Scheduler times of the traced processes: the user side of `pgt_sched_switch` (in
//! `bpf/syscalls.bpf.c`, "Scheduler times"). The kernel adds up, per traced thread, the time it spends on a CPU, in the
//! run queue, asleep (S) and in uninterruptible sleep (D), and per tgid those of its
//! threads that exited; here both are read, each thread's state still open is added up to
//! now, and the sum goes out as one [`EventKind::SchedTimes`] per process and tick (no
//! event per context switch).

use anyhow::anyhow;
use libbpf_rs::{Link, MapCore, MapFlags};

use super::skel::{OpenSyscallsSkel, SyscallsSkel};
use crate::trace::{monotonic_ns, Event, EventKind, Pid};

/// `PGT_ST_*` of the BPF side: the index of each state's time in `sched_totals`.
const ST_RUNNING: usize = 0;
const ST_RUNQUEUE: usize = 1;
const ST_SLEEP: usize = 2;
const ST_DISK: usize = 3;
const ST_COUNT: usize = 4;

/// `struct pgt_thread`: u64 since, u32 tgid, u32 state, u64 ns[ST_COUNT], u64 run_delay1
/// (the kernel's own, for the run queue part of the next switch in; 0 from here).
const THREAD_RECORD: usize = 16 + 8 * ST_COUNT + 8;

/// Per-state nanoseconds, indexed by `ST_*`.
pub(super) type Times = [u64; ST_COUNT];

/// The value of `sched_totals`; None when it is not one.
fn decode_totals(v: &[u8]) -> Option<Times> {
    if v.len() != 8 * ST_COUNT {
        return None;
    }
    let mut t = [0u64; ST_COUNT];
    for (i, slot) in t.iter_mut().enumerate() {
        *slot = u64::from_ne_bytes(v.get(i * 8..i * 8 + 8)?.try_into().ok()?);
    }
    Some(t)
}

/// A `sched_threads` value: (since, tgid, state, the thread's closed times).
fn decode_thread(v: &[u8]) -> Option<(u64, u32, usize, Times)> {
    if v.len() != THREAD_RECORD {
        return None;
    }
    let since = u64::from_ne_bytes(v.get(0..8)?.try_into().ok()?);
    let tgid = u32::from_ne_bytes(v.get(8..12)?.try_into().ok()?);
    let state = u32::from_ne_bytes(v.get(12..16)?.try_into().ok()?) as usize;
    let ns = decode_totals(v.get(16..16 + 8 * ST_COUNT)?)?;
    (state < ST_COUNT).then_some((since, tgid, state, ns))
}

fn encode_thread(since: u64, tgid: u32, state: usize) -> [u8; THREAD_RECORD] {
    let mut v = [0u8; THREAD_RECORD];
    v[0..8].copy_from_slice(&since.to_ne_bytes());
    v[8..12].copy_from_slice(&tgid.to_ne_bytes());
    v[12..16].copy_from_slice(&(state as u32).to_ne_bytes());
    v
}

fn add_times(mut a: Times, b: Times) -> Times {
    for (x, y) in a.iter_mut().zip(b) {
        *x = x.saturating_add(y);
    }
    a
}

/// The state a thread is in by its `/proc/PID/task/TID/stat` letter, for a thread the
/// kernel has not seen switch yet. R is taken as running (it may be waiting for a CPU:
/// its first switch tells).
fn state_of_letter(c: char) -> Option<usize> {
    match c {
        'R' => Some(ST_RUNNING),
        'S' => Some(ST_SLEEP),
        'D' => Some(ST_DISK),
        _ => None,
    }
}

/// The totals plus what the open states of `threads` add up to at `now`.
pub(super) fn with_open_states(
    mut totals: Times,
    threads: impl IntoIterator<Item = (u64, usize)>,
    now: u64,
) -> Times {
    for (since, state) in threads {
        if let Some(slot) = totals.get_mut(state) {
            *slot = slot.saturating_add(now.saturating_sub(since));
        }
    }
    totals
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
     run queue time and their reads (--io-latency) as page-cache hits";

/// The attached scheduler programs.
pub(super) struct SchedWatch {
    links: Vec<Link>,
}

impl SchedWatch {
    /// Attaches the scheduler tracepoint. None in another PID namespace than the
    /// initial one (the programs would see host pids; they do nothing there).
    pub(super) fn attach(
        skel: &SyscallsSkel<'static>,
        variant: Variant,
    ) -> anyhow::Result<SchedWatch> {
        let prog = match variant {
            Variant::PrevState => &skel.progs.pgt_sched_switch,
            Variant::TaskState => &skel.progs.pgt_sched_switch_old,
        };
        let progs = [(prog, "sched_switch")];
        let mut links = Vec::with_capacity(progs.len());
        for (prog, name) in progs {
            links.push(prog.attach().map_err(|e| {
                let detail = crate::trace::libbpf::last_message().unwrap_or_else(|| e.to_string());
                anyhow!("scheduler times unavailable: attaching to {name} failed ({detail})")
            })?);
        }
        Ok(SchedWatch { links })
    }

    /// Seeds the threads of `pid` the kernel has not seen switch yet (asleep since before
    /// the attach), from their state in /proc: their sleep counts from now, not from
    /// their next wakeup. Best effort.
    pub(super) fn seed(&self, skel: &SyscallsSkel<'static>, pid: Pid) {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return;
        };
        let now = monotonic_ns();
        for entry in dir.flatten() {
            let Some(tid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // "tid (comm) S ...": the state follows the last ')'.
            let Some(letter) = stat
                .rfind(')')
                .and_then(|i| stat.get(i + 1..))
                .and_then(|r| r.trim_start().chars().next())
            else {
                continue;
            };
            let Some(state) = state_of_letter(letter) else {
                continue;
            };
            let v = encode_thread(now, pid as u32, state);
            let _ = skel
                .maps
                .sched_threads
                .update(&tid.to_ne_bytes(), &v, MapFlags::NO_EXIST);
        }
    }

    /// One [`EventKind::SchedTimes`] per pid of `pids`, as of now.
    ///
    /// The threads and the exited threads' totals are read apart while switches go on: a
    /// state closed, or a thread retired, between the reads would count twice or not at
    /// all. So the threads are read on both sides of the totals, and the whole is read
    /// again (three times at most) unless no thread of ours changed meanwhile.
    pub(super) fn read(&self, skel: &SyscallsSkel<'static>, pids: &[Pid], out: &mut Vec<Event>) {
        if pids.is_empty() {
            return;
        }
        type Thread = (u32, u64, u32, usize, Times);
        let threads = || -> Vec<Thread> {
            let mut v: Vec<Thread> = skel
                .maps
                .sched_threads
                .keys()
                .filter_map(|k| {
                    let tid = u32::from_ne_bytes(k.get(..4)?.try_into().ok()?);
                    let v = skel.maps.sched_threads.lookup(&k, MapFlags::ANY).ok()??;
                    let (since, tgid, st, ns) = decode_thread(&v)?;
                    pids.contains(&(tgid as Pid))
                        .then_some((tid, since, tgid, st, ns))
                })
                .collect();
            v.sort_unstable();
            v
        };
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
                .fold([0u64; ST_COUNT], add_times)
        };
        let mut before = threads();
        let (mut totals, mut now);
        let mut tries = 0;
        loop {
            totals = pids.iter().map(|&p| totals_of(p)).collect::<Vec<_>>();
            now = monotonic_ns();
            let after = threads();
            tries += 1;
            if after == before || tries == 3 {
                before = after;
                break;
            }
            before = after;
        }
        for (&pid, &exited) in pids.iter().zip(&totals) {
            let mine = || before.iter().filter(|t| t.2 == pid as u32);
            let closed = mine().fold(exited, |acc, t| add_times(acc, t.4));
            let t = with_open_states(closed, mine().map(|t| (t.1, t.3)), now);
            if t == [0; ST_COUNT] {
                continue;
            }
            out.push(Event {
                ts_ns: now,
                pid,
                kind: EventKind::SchedTimes {
                    running_ns: t[ST_RUNNING],
                    runqueue_ns: t[ST_RUNQUEUE],
                    sleeping_ns: t[ST_SLEEP],
                    blocked_ns: t[ST_DISK],
                },
            });
        }
    }

    /// Forgets a process no longer traced (its pid may come back as another process).
    pub(super) fn forget(&self, skel: &SyscallsSkel<'static>, pid: Pid) {
        let _ = skel.maps.sched_totals.delete(&(pid as u32).to_ne_bytes());
    }

    /// Stops the programs (idempotent).
    pub(super) fn detach(&mut self) {
        self.links.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn open_states_are_added_up_to_now() {
        let t = with_open_states([10, 0, 5, 0], [(100, ST_RUNNING), (150, ST_DISK)], 200);
        assert_eq!(t, [110, 0, 5, 50]);
        // A thread stamped after `now` (read races a switch) adds nothing.
        assert_eq!(
            with_open_states([1, 2, 3, 4], [(300, ST_SLEEP)], 200),
            [1, 2, 3, 4]
        );
    }

    #[test]
    fn records_round_trip_and_reject_garbage() {
        let mut v = encode_thread(42, 7, ST_SLEEP);
        assert_eq!(decode_thread(&v), Some((42, 7, ST_SLEEP, [0; ST_COUNT])));
        v[16 + 8 * ST_DISK] = 3;
        assert_eq!(decode_thread(&v), Some((42, 7, ST_SLEEP, [0, 0, 0, 3])));
        assert_eq!(decode_thread(&encode_thread(1, 1, 9)), None);
        assert_eq!(decode_thread(&v[..15]), None);
        assert_eq!(decode_thread(&v[..THREAD_RECORD - 1]), None);
        assert_eq!(decode_totals(&[0u8; 31]), None);
        assert_eq!(state_of_letter('Z'), None);
    }

    proptest! {
        #[test]
        fn never_panics(v in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = decode_thread(&v);
            let _ = decode_totals(&v);
        }
    }
}
