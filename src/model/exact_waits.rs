//! Exact waits (`--exact-waits`): the traced backend's `wait_event_info` transitions, as a
//! watchpoint saw every write, folded into waits per event: how many began, and how long
//! they lasted, in the last interval and since attach. No sampling error.

use std::collections::BTreeMap;

/// One wait event's figures (`wait_event_info` as the server encodes it; 0 is not
/// waiting).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExactCell {
    /// Waits that began.
    pub count: u64,
    pub ns: u64,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ExactWaits {
    /// The value in force and since when.
    current: Option<(u32, u64)>,
    total: BTreeMap<u32, ExactCell>,
    acc: BTreeMap<u32, ExactCell>,
    last: BTreeMap<u32, ExactCell>,
    /// Writes seen that changed the value.
    pub transitions: u64,
    /// The server's major, which names the events (set when watching starts).
    pub major: Option<u32>,
}

fn add(map: &mut BTreeMap<u32, ExactCell>, info: u32, began: bool, ns: u64) {
    let c = map.entry(info).or_default();
    c.count += u64::from(began);
    c.ns = c.ns.saturating_add(ns);
}

impl ExactWaits {
    /// A write of `info` at `ts` (a write of the same value changes nothing).
    pub fn apply(&mut self, info: u32, ts: u64) {
        if let Some((v, since)) = self.current {
            if v == info {
                return;
            }
            self.close(v, since, ts);
        }
        if info != 0 {
            add(&mut self.total, info, true, 0);
            add(&mut self.acc, info, true, 0);
        }
        self.transitions += 1;
        self.current = Some((info, ts));
    }

    fn close(&mut self, v: u32, since: u64, until: u64) {
        if v != 0 {
            let ns = until.saturating_sub(since);
            add(&mut self.total, v, false, ns);
            add(&mut self.acc, v, false, ns);
        }
    }

    /// End of an interval at `now`: a wait still going counts up to now in it.
    pub fn tick(&mut self, now: u64) {
        if let Some((v, since)) = self.current {
            if now > since {
                self.close(v, since, now);
                self.current = Some((v, now));
            }
        }
        self.last = std::mem::take(&mut self.acc);
    }

    pub fn is_empty(&self) -> bool {
        self.current.is_none()
    }

    /// The last interval, by `wait_event_info`.
    pub fn interval(&self) -> &BTreeMap<u32, ExactCell> {
        &self.last
    }

    pub fn total(&self) -> &BTreeMap<u32, ExactCell> {
        &self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLEEP: u32 = 0x0900_0002;

    #[test]
    fn waits_are_counted_and_timed() {
        let mut w = ExactWaits::default();
        w.apply(SLEEP, 100);
        w.apply(SLEEP, 150); // rewritten: same wait
        w.apply(0, 300);
        w.apply(SLEEP, 400);
        w.tick(500);
        assert_eq!(
            w.interval()[&SLEEP],
            ExactCell {
                count: 2,
                ns: 200 + 100
            }
        );
        w.apply(0, 550);
        w.tick(600);
        assert_eq!(w.interval()[&SLEEP], ExactCell { count: 0, ns: 50 });
        assert_eq!(w.total()[&SLEEP], ExactCell { count: 2, ns: 350 });
        assert_eq!(w.transitions, 4);
    }
}
