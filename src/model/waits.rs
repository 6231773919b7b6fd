//! The wait profile: rounds of wait-event samples folded per process into counts per wait
//! event (CPU apart: no wait event set, as `pg_wait_sampling` counts it) and per query,
//! over three scopes: since attach, since the last interval, and the last 10 seconds.
//!
//! CPU per query: the process's CPU clock (`/proc/PID/schedstat`, utime+stime at
//! nanosecond resolution) read at every sample; the time between two samples is the
//! query's that was active at the first of them (none when the backend was not active).
//! A query that starts and ends between two samples is not seen; its CPU goes to the
//! query active before it, if any, else to no query.

use crate::process::status::sampler::{Round, WaitEvent, WaitSample};
use crate::trace::Pid;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Looked up for every sample of every process: a fast hasher (the keys are the server's
/// event names and query ids, not chosen in bulk by an attacker).
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// What a wait sample counts under: None is CPU.
pub type EventKey = Option<Arc<WaitEvent>>;

/// How a query is told apart: the server's query id, else its normalised text.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum QueryKey {
    Id(i64),
    Text(Arc<str>),
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QueryProfile {
    /// The text shown: normalised when there is no id, else as first seen.
    pub text: Option<Arc<str>>,
    pub samples: u64,
    pub events: HashMap<EventKey, u64>,
    /// Nanoseconds on CPU while the query was active; None when not measured.
    pub cpu_ns: Option<u64>,
}

/// One more sample of `e`: looked up by reference first, so that an event seen before
/// costs no `Arc` clone and drop (two atomic operations per sample and scope).
fn count(events: &mut HashMap<EventKey, u64>, e: &EventKey) {
    match events.get_mut(e) {
        Some(n) => *n += 1,
        None => {
            events.insert(e.clone(), 1);
        }
    }
}

/// One scope of one process.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Profile {
    pub samples: u64,
    pub events: HashMap<EventKey, u64>,
    pub queries: HashMap<QueryKey, QueryProfile>,
    pub first_ns: Option<u64>,
    pub last_ns: Option<u64>,
}

impl Profile {
    fn add(&mut self, t_ns: u64, s: &WaitSample, key: Option<&QueryKey>, text: Option<&Arc<str>>) {
        self.samples += 1;
        self.first_ns.get_or_insert(t_ns);
        self.last_ns = Some(t_ns);
        count(&mut self.events, &s.event);
        if let Some(k) = key {
            // Looked up by reference first: a query seen before costs no clone.
            let q = match self.queries.get_mut(k) {
                Some(q) => q,
                None => self.queries.entry(k.clone()).or_default(),
            };
            if q.text.is_none() {
                q.text = text.cloned();
            }
            q.samples += 1;
            count(&mut q.events, &s.event);
        }
    }

    fn add_cpu(&mut self, key: &QueryKey, ns: u64) {
        if let Some(q) = self.queries.get_mut(key) {
            *q.cpu_ns.get_or_insert(0) += ns;
        }
    }

    /// Seconds covered: first to last sample, plus one period.
    pub fn window_s(&self, hz: f64) -> f64 {
        match (self.first_ns, self.last_ns) {
            (Some(a), Some(b)) => (b.saturating_sub(a)) as f64 / 1e9 + 1.0 / hz,
            _ => 0.0,
        }
    }

    /// Events, most samples first (ties by name, CPU first).
    pub fn ranked(events: &HashMap<EventKey, u64>) -> Vec<(EventKey, u64)> {
        let mut v: Vec<(EventKey, u64)> = events.iter().map(|(k, n)| (k.clone(), *n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }

    /// Queries, most samples first.
    pub fn ranked_queries(&self) -> Vec<(&QueryKey, &QueryProfile)> {
        let mut v: Vec<_> = self.queries.iter().collect();
        v.sort_by(|a, b| b.1.samples.cmp(&a.1.samples).then_with(|| a.0.cmp(b.0)));
        v
    }

    /// The most sampled event and its share.
    pub fn top(&self) -> Option<(EventKey, f64)> {
        let (k, n) = Profile::ranked(&self.events).into_iter().next()?;
        Some((k, n as f64 / self.samples.max(1) as f64))
    }
}

/// The last seconds of one process, sample by sample.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Recent {
    samples: VecDeque<(u64, EventKey)>,
}

impl Recent {
    pub const SPAN_NS: u64 = 10_000_000_000;

    fn push(&mut self, t_ns: u64, e: EventKey) {
        self.samples.push_back((t_ns, e));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| t_ns.saturating_sub(*t) > Self::SPAN_NS)
        {
            self.samples.pop_front();
        }
    }

    /// The last 10 s as a profile (events only).
    pub fn profile(&self) -> Profile {
        let mut p = Profile::default();
        for (t, e) in &self.samples {
            p.samples += 1;
            p.first_ns.get_or_insert(*t);
            p.last_ns = Some(*t);
            *p.events.entry(e.clone()).or_default() += 1;
        }
        p
    }
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProcWaits {
    pub total: Profile,
    pub interval: Profile,
    pub recent: Recent,
    /// The previous sample's CPU clock and the query active then.
    last_cpu: Option<(u64, Option<QueryKey>)>,
    /// The raw text last normalised, and its normal form (a backend repeats its query).
    last_text: Option<(Arc<str>, Arc<str>)>,
}

/// Every sampled process.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Waits {
    pub hz: f64,
    pub procs: BTreeMap<Pid, ProcWaits>,
    pub rounds: u64,
    /// Since attach only: no interval, no last 10 s (`ps --waits`, which shows neither).
    pub total_only: bool,
    /// When processes no longer sampled were last forgotten.
    forgot_at_ns: u64,
}

/// Processes no longer sampled are forgotten after this long (the picker's list).
const FORGET_NS: u64 = 30_000_000_000;

impl Waits {
    pub fn new(hz: f64) -> Waits {
        Waits {
            hz,
            ..Default::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rounds == 0
    }

    /// Fold one round.
    pub fn add(&mut self, r: &Round) {
        self.rounds += 1;
        for s in &r.samples {
            let p = self.procs.entry(s.pid).or_default();
            let (key, text) = if s.active {
                query_key(p, s)
            } else {
                (None, None)
            };
            if let Some(cpu) = s.cpu_ns {
                if let Some((before, Some(k))) = &p.last_cpu {
                    let d = cpu.saturating_sub(*before);
                    p.total.add_cpu(k, d);
                    p.interval.add_cpu(k, d);
                }
            }
            p.total.add(r.t_ns, s, key.as_ref(), text.as_ref());
            if !self.total_only {
                p.interval.add(r.t_ns, s, key.as_ref(), text.as_ref());
            }
            if let Some(k) = &key {
                // Measured from its first sample on: zero until the next one says more.
                for prof in [&mut p.total, &mut p.interval] {
                    if s.cpu_ns.is_some() {
                        if let Some(q) = prof.queries.get_mut(k) {
                            q.cpu_ns.get_or_insert(0);
                        }
                    }
                }
            }
            if !self.total_only {
                p.recent.push(r.t_ns, s.event.clone());
            }
            if let Some(cpu) = s.cpu_ns {
                p.last_cpu = Some((cpu, key));
            }
        }
        // Looked at once a second, not per round (a walk over every process).
        let t = r.t_ns;
        if t.saturating_sub(self.forgot_at_ns) >= 1_000_000_000 {
            self.forgot_at_ns = t;
            self.procs.retain(|_, p| {
                p.total
                    .last_ns
                    .is_some_and(|l| t.saturating_sub(l) < FORGET_NS)
            });
        }
    }

    /// Start a new interval (after its records were written).
    pub fn next_interval(&mut self) {
        for p in self.procs.values_mut() {
            p.interval = Profile::default();
        }
    }
}

fn query_key(p: &mut ProcWaits, s: &WaitSample) -> (Option<QueryKey>, Option<Arc<str>>) {
    let raw = match &s.query {
        Some(q) => q,
        None => return (s.query_id.map(QueryKey::Id), None),
    };
    let norm = match &p.last_text {
        Some((r, n)) if Arc::ptr_eq(r, raw) || r == raw => Arc::clone(n),
        _ => {
            let n: Arc<str> = normalise(raw).into();
            p.last_text = Some((Arc::clone(raw), Arc::clone(&n)));
            n
        }
    };
    match s.query_id {
        Some(id) => (Some(QueryKey::Id(id)), Some(Arc::clone(raw))),
        None => (Some(QueryKey::Text(Arc::clone(&norm))), Some(norm)),
    }
}

/// A query's text with its constants taken out, as `pg_stat_statements` shows it:
/// string and number literals become `$1`, `$2`, … in order; runs of white space one
/// space. Comments are kept (they may say who sent the query).
pub fn normalise(q: &str) -> String {
    let mut out = String::with_capacity(q.len());
    let b = q.as_bytes();
    let mut n = 0u32;
    let mut i = 0;
    let mut space = false;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            space = true;
            i += 1;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        let prev_ident = out.as_bytes().last().is_some_and(|&p| ident(p));
        if c == b'\'' {
            // A string constant; '' inside it is a quote.
            i += 1;
            while i < b.len() {
                if b[i] == b'\'' {
                    if b.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
            n += 1;
            out.push_str(&format!("${n}"));
            continue;
        }
        if c.is_ascii_digit() && !prev_ident {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_') {
                i += 1;
            }
            n += 1;
            out.push_str(&format!("${n}"));
            continue;
        }
        if c == b'"' {
            // A quoted identifier, kept as it is.
            let end = b[i + 1..]
                .iter()
                .position(|&x| x == b'"')
                .map_or(b.len(), |p| i + 2 + p);
            out.push_str(&String::from_utf8_lossy(&b[i..end]));
            i = end;
            continue;
        }
        // Copy one UTF-8 character whole.
        let len = utf8_len(c);
        let end = (i + len).min(b.len());
        out.push_str(&String::from_utf8_lossy(&b[i..end]));
        i = end;
    }
    out
}

fn utf8_len(c: u8) -> usize {
    match c {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(class: &str, name: &str) -> EventKey {
        Some(Arc::new(WaitEvent {
            class: class.into(),
            name: name.into(),
        }))
    }

    fn sample(pid: Pid, e: EventKey, q: Option<&str>, cpu: Option<u64>) -> WaitSample {
        WaitSample {
            pid,
            event: e,
            active: q.is_some(),
            query_id: None,
            query: q.map(Into::into),
            cpu_ns: cpu,
        }
    }

    #[test]
    fn normalise_constants() {
        assert_eq!(
            normalise("select  *\n from t where a = 42 and b = 'it''s' and c1 = 1.5e3"),
            "select * from t where a = $1 and b = $2 and c1 = $3"
        );
        assert_eq!(
            normalise("select \"a 1\" from x2"),
            "select \"a 1\" from x2"
        );
        assert_eq!(normalise("select 'open"), "select $1");
        assert_eq!(normalise("select é, 1"), "select é, $1");
    }

    #[test]
    fn cpu_apart_and_per_query() {
        let mut w = Waits::new(100.0);
        let sleep = ev("Timeout", "PgSleep");
        let q = "select pg_sleep(1)";
        // 3 samples asleep, 1 on CPU in the query, then 2 idle in ClientRead.
        let script = [
            (sleep.clone(), Some(q), 1_000),
            (sleep.clone(), Some(q), 1_000),
            (sleep.clone(), Some(q), 2_000),
            (None, Some(q), 9_000),
            (ev("Client", "ClientRead"), None, 10_000),
            (ev("Client", "ClientRead"), None, 10_000),
        ];
        for (i, (e, q, cpu)) in script.into_iter().enumerate() {
            w.add(&Round {
                t_ns: i as u64 * 10_000_000,
                samples: vec![sample(7, e, q, Some(cpu))],
            });
        }
        let p = &w.procs[&7].total;
        assert_eq!(p.samples, 6);
        assert_eq!(p.events[&None], 1);
        assert_eq!(p.events[&sleep], 3);
        assert_eq!(p.top().unwrap().0, sleep);
        let (k, qp) = p.ranked_queries()[0];
        assert_eq!(k, &QueryKey::Text("select pg_sleep($1)".into()));
        assert_eq!(qp.samples, 4);
        // 1000→1000→2000→9000 while active, then 9000→10000 from the last active sample.
        assert_eq!(qp.cpu_ns, Some(9_000));
        assert!((p.window_s(100.0) - 0.06).abs() < 1e-9);
        w.next_interval();
        assert_eq!(w.procs[&7].interval.samples, 0);
        assert_eq!(w.procs[&7].recent.profile().samples, 6);
    }

    #[test]
    fn recent_keeps_ten_seconds() {
        let mut w = Waits::new(1.0);
        for i in 0..30u64 {
            w.add(&Round {
                t_ns: i * 1_000_000_000,
                samples: vec![sample(1, None, None, None)],
            });
        }
        assert_eq!(w.procs[&1].recent.profile().samples, 11);
        assert_eq!(w.procs[&1].total.samples, 30);
    }
}
