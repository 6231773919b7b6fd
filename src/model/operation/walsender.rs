//! A walsender as an operation: how far its client is behind the server's WAL insert
//! position. Physical: sent, and the standby's written, flushed and replayed positions
//! with the server's own lag measurements. Logical: the decoding position (`sentPtr`),
//! the slot's `confirmed_flush` and `restart_lsn`, and the transactions spilled to
//! `pg_replslot/<slot>/`.
//!
//! The line's `done` of `total` is the sent position of the insert position, in bytes of
//! WAL. Its rate is the sent position's over the last seconds; its ETA comes from how fast
//! the distance to the insert position shrinks (the insert position moves too), and is
//! given only while it shrinks.

use super::{OperationView, Source, Unit};
use crate::process::walsender::{spill::Spill, WalSenderSample};
use crate::text::human_bytes;
use std::collections::VecDeque;

/// Rates and ETAs are over this much of the recent past, so that a walsender that has
/// streamed for a day shows how fast it goes now.
const WINDOW_NS: u64 = 10_000_000_000;
/// Below this much time the rate is not trusted (samples' jitter).
const MIN_RATE_NS: u64 = 2_000_000_000;

/// One walsender across samples.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WalSenderState {
    pub last: WalSenderSample,
    /// (ts, sent, behind) of the samples in the window, oldest first, within one state.
    recent: VecDeque<(u64, u64, u64)>,
    /// The most spill files seen at once, and when: they go when the transaction is
    /// decoded to its end (or aborted).
    pub spill_peak: Option<Spill>,
}

fn behind(insert: Option<u64>, at: Option<u64>) -> Option<u64> {
    Some(insert?.saturating_sub(at?))
}

impl WalSenderState {
    pub fn new(w: WalSenderSample, ts: u64) -> WalSenderState {
        let mut st = WalSenderState {
            last: w.clone(),
            recent: VecDeque::new(),
            spill_peak: None,
        };
        st.observe(w, ts);
        st
    }

    /// A later sample of the same walsender.
    pub fn observe(&mut self, w: WalSenderSample, ts: u64) {
        let went_back = matches!((w.sent, self.last.sent), (Some(a), Some(b)) if a < b);
        if w.state != self.last.state || went_back {
            self.recent.clear();
        }
        if let (Some(sent), Some(b)) = (w.sent, behind(w.insert, w.sent)) {
            self.recent.push_back((ts, sent, b));
        }
        while self
            .recent
            .front()
            .is_some_and(|&(t, _, _)| ts.saturating_sub(t) > WINDOW_NS)
            && self.recent.len() > 2
        {
            self.recent.pop_front();
        }
        if let Some(s) = w.slot.as_ref().and_then(|s| s.spill) {
            if self.spill_peak.map_or(true, |p| s.bytes >= p.bytes) {
                self.spill_peak = Some(s);
            }
        }
        self.last = w;
    }

    /// Over the window: (bytes sent per second, bytes of distance closed per second).
    fn rates(&self) -> Option<(f64, f64)> {
        let (&(t0, s0, b0), &(t1, s1, b1)) = (self.recent.front()?, self.recent.back()?);
        let dt = t1.checked_sub(t0).filter(|&d| d >= MIN_RATE_NS)? as f64 / 1e9;
        Some((
            s1.saturating_sub(s0) as f64 / dt,
            (b0 as f64 - b1 as f64) / dt,
        ))
    }

    pub fn view(&self) -> OperationView {
        let w = &self.last;
        let (done, total) = (w.sent, w.insert.filter(|&i| i > 0));
        let percent = match (done, total) {
            (Some(d), Some(t)) => {
                Some(((d as f64 * 100.0 / t as f64).min(100.0) * 10.0).round() / 10.0)
            }
            _ => None,
        };
        let rates = self.rates();
        let left = behind(w.insert, w.sent);
        let eta_s = match (rates, left) {
            (Some((_, closing)), Some(l)) if closing > 0.0 && l > 0 => {
                Some((l as f64 / closing * 10.0).round() / 10.0)
            }
            _ => None,
        };
        OperationView {
            operation: "walsender",
            relation: None,
            schema: None,
            name: None,
            phase: Some(w.state.clone()),
            phase_number: None,
            phases_total: None,
            done,
            total,
            unit: done.map(|_| Unit::Bytes),
            percent,
            rate: rates.map(|(r, _)| (r * 10.0).round() / 10.0),
            eta_s,
            // One phase: the whole operation's ETA is the phase's.
            phase_eta_s: eta_s,
            eta_source: eta_s.map(|_| Source::Memory),
            source: Source::Memory,
            wal_bytes: None,
            table_tuples: None,
            table_read: None,
            table_size: None,
            detail: Some(self.detail()),
        }
    }

    /// `replay 40 KiB behind (0.300s), flush …, write …` for a physical client;
    /// `slot sub1: spilled 3 files 1.1 MiB, confirmed 1.2 MiB behind, restart 3 MiB behind`
    /// for a logical one.
    pub fn detail(&self) -> String {
        let w = &self.last;
        let lag = |us: Option<i64>| {
            us.map(|u| format!(" ({:.3}s)", u as f64 / 1e6))
                .unwrap_or_default()
        };
        let pos = |name: &str, at: Option<u64>, lag_us: Option<i64>| match behind(w.insert, at) {
            Some(b) => format!("{name} {} behind{}", human_bytes(b), lag(lag_us)),
            None => format!("{name} not reported"),
        };
        match &w.slot {
            Some(s) if s.logical => {
                // Spill files first: a narrow line cuts the end.
                let spilled = match s.spill {
                    Some(sp) if sp.files > 0 => format!(
                        "spilled {} file{} {}, ",
                        sp.files,
                        if sp.files == 1 { "" } else { "s" },
                        human_bytes(sp.bytes)
                    ),
                    Some(_) => "nothing spilled, ".into(),
                    None => String::new(),
                };
                format!(
                    "slot {}: {spilled}{}, {}",
                    s.name,
                    pos("confirmed", s.confirmed_flush, None),
                    pos("restart", s.restart_lsn, None)
                )
            }
            slot => {
                // Replay first: how far the standby is, the end a narrow line keeps.
                let mut t = format!(
                    "{}, {}, {}",
                    pos("replay", w.replay, w.replay_lag_us),
                    pos("flush", w.flush, w.flush_lag_us),
                    pos("write", w.write, w.write_lag_us)
                );
                if let Some(s) = slot {
                    t.push_str(&format!(", slot {}", s.name));
                }
                t
            }
        }
    }
}

impl crate::model::Model {
    /// A status sample of the leader: its walsender state, when it streams WAL or changes
    /// (`catchup`, `streaming`, `stopping`). A replication connection that runs no
    /// command yet (`startup`) has no line; a base backup (`backup`) has its own.
    pub(crate) fn walsender_sample(&mut self, s: &crate::process::status::StatusSample, ts: u64) {
        let w = s.walsender.clone().filter(|w| {
            matches!(w.state.as_str(), "catchup" | "streaming" | "stopping")
                && s.progress_command.is_none()
        });
        match (w, self.walsender.as_mut()) {
            (Some(w), Some(st)) => st.observe(w, ts),
            (Some(w), None) => self.walsender = Some(WalSenderState::new(w, ts)),
            (None, _) => self.walsender = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::walsender::SlotSample;

    const S: u64 = 1_000_000_000;

    fn w(state: &str, sent: u64, insert: u64) -> WalSenderSample {
        WalSenderSample {
            state: state.into(),
            sent: Some(sent),
            write: Some(sent),
            flush: Some(sent.saturating_sub(1024)),
            replay: None,
            write_lag_us: Some(1500),
            insert: Some(insert),
            ..Default::default()
        }
    }

    #[test]
    fn catching_up_has_an_eta_from_the_distance_closed() {
        // Sends 3 MB/s while the server writes 1 MB/s: 2 MB/s closed.
        let mut st = WalSenderState::new(w("catchup", 0, 20_000_000), 0);
        for i in 1..=4u64 {
            st.observe(
                w("catchup", 3_000_000 * i, 20_000_000 + 1_000_000 * i),
                i * S,
            );
        }
        let v = st.view();
        assert_eq!(v.phase.as_deref(), Some("catchup"));
        assert_eq!((v.done, v.total), (Some(12_000_000), Some(24_000_000)));
        assert_eq!((v.rate, v.unit), (Some(3_000_000.0), Some(Unit::Bytes)));
        assert_eq!(v.eta_s, Some(6.0));
        assert_eq!(v.percent, Some(50.0));
        // Falling further behind: no ETA.
        st.observe(w("catchup", 12_000_000, 30_000_000), 5 * S);
        st.observe(w("catchup", 12_000_000, 40_000_000), 6 * S);
        assert_eq!(st.view().eta_s, None);
        // A new state starts its window again.
        st.observe(w("streaming", 40_000_000, 40_000_000), 7 * S);
        assert_eq!(st.view().rate, None);
        assert!(
            st.detail() == "replay not reported, flush 1.0 KiB behind, write 0 B behind (0.002s)",
            "{}",
            st.detail()
        );
    }

    #[test]
    fn only_a_streaming_walsender_has_a_line() {
        let mut m = crate::model::Model::new(1, 1 << 30);
        let mut s = crate::process::status::StatusSample {
            pid: 1,
            backend_type: Some("walsender".into()),
            walsender: Some(w("startup", 0, 100)),
            ..Default::default()
        };
        m.walsender_sample(&s, 0);
        assert!(m.walsender.is_none(), "a connection running no command yet");
        s.walsender = Some(w("backup", 0, 100));
        m.walsender_sample(&s, 0);
        assert!(m.walsender.is_none(), "a base backup has its own line");
        s.walsender = Some(w("streaming", 100, 100));
        m.walsender_sample(&s, 0);
        assert!(m.walsender.is_some());
        s.progress_command = Some("basebackup".into());
        m.walsender_sample(&s, S);
        assert!(m.walsender.is_none());
    }

    #[test]
    fn logical_detail_and_spill_peak() {
        let mut s = w("streaming", 5000, 9000);
        s.slot = Some(SlotSample {
            name: "sub1".into(),
            logical: true,
            restart_lsn: Some(1000),
            confirmed_flush: Some(4000),
            spill: Some(Spill {
                files: 2,
                bytes: 3 << 20,
            }),
        });
        let mut st = WalSenderState::new(s.clone(), 0);
        assert_eq!(
            st.detail(),
            "slot sub1: spilled 2 files 3.0 MiB, confirmed 4.9 KiB behind, restart 7.8 KiB behind"
        );
        s.slot.as_mut().unwrap().spill = Some(Spill::default());
        st.observe(s, S);
        assert_eq!(
            st.spill_peak,
            Some(Spill {
                files: 2,
                bytes: 3 << 20
            })
        );
        assert!(st.detail().contains("nothing spilled"));
    }
}
