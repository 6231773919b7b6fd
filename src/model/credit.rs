//! Which file the /proc backend's bytes came from. `/proc/PID/io` says how many bytes a
//! process read (`rchar`), not from where; PostgreSQL reads relation files with pread,
//! which leaves the file position alone. So bytes go to a file only on evidence: a sample
//! of `/proc/PID/syscall` that caught the process inside a read of it, or (for files read
//! with read(2)) its position moving. What no evidence covers is counted as unattributed,
//! never put on whichever file happens to be open (a catalog, an index opened earlier).

use crate::trace::Pid;
use std::collections::BTreeMap;

/// Evidence gathered for one process since its last `/proc/PID/io` reading.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Pending {
    /// fd -> (samples that caught a read of it, end of the last read sampled).
    sampled: BTreeMap<i32, (u64, Option<u64>)>,
    /// Bytes already put on files because their position moved (read(2)).
    by_position: u64,
}

/// Per traced process, the evidence of the current interval; and the bytes no evidence
/// covered, since attach.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Credit {
    pending: BTreeMap<Pid, Pending>,
    /// Bytes read by the traced processes that no sample ties to a file (an estimate, like
    /// every figure of the /proc backend). None until two readings of `/proc/PID/io`.
    pub unattributed: Option<u64>,
    /// When `unattributed` last grew (per-interval output reports it when it did).
    pub updated_ns: u64,
}

/// One file's share of an interval's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Share {
    pub fd: i32,
    pub bytes: u64,
    /// Where the last sampled read of it ended: the credited bytes end there.
    pub end: Option<u64>,
}

impl Credit {
    /// A sample caught `pid` reading `fd` (`hits` times), ending at `end` when known.
    pub fn sampled(&mut self, pid: Pid, fd: i32, hits: u32, end: Option<u64>) {
        let e = self
            .pending
            .entry(pid)
            .or_default()
            .sampled
            .entry(fd)
            .or_default();
        e.0 = e.0.saturating_add(u64::from(hits.max(1)));
        if end.is_some() {
            e.1 = end;
        }
    }

    /// `n` bytes of `pid`'s reads were seen as a file position moving.
    pub fn by_position(&mut self, pid: Pid, n: u64) {
        let p = self.pending.entry(pid).or_default();
        p.by_position = p.by_position.saturating_add(n);
    }

    /// `pid`'s rchar grew by `delta`: the shares of the files sampled in this interval, in
    /// proportion to how often each was caught (each share at most `limit(fd, end)`), and
    /// the rest counted as unattributed when `ours` (an io worker reads for every session,
    /// so what it read unseen is no one's). The interval's evidence is used up.
    pub fn split(
        &mut self,
        pid: Pid,
        delta: u64,
        ts: u64,
        ours: bool,
        mut limit: impl FnMut(i32, Option<u64>) -> u64,
    ) -> Vec<Share> {
        let p = self.pending.remove(&pid).unwrap_or_default();
        let left = delta.saturating_sub(p.by_position);
        let hits: u64 = p.sampled.values().map(|(h, _)| *h).sum();
        let mut shares = Vec::new();
        let mut given = 0u64;
        if hits > 0 && left > 0 {
            for (&fd, &(h, end)) in &p.sampled {
                let want = (u128::from(left) * u128::from(h) / u128::from(hits)) as u64;
                let bytes = want.min(limit(fd, end));
                if bytes > 0 {
                    given += bytes;
                    shares.push(Share { fd, bytes, end });
                }
            }
        }
        if ours {
            let u = self.unattributed.get_or_insert(0);
            let rest = left - given;
            if rest > 0 {
                *u = u.saturating_add(rest);
                self.updated_ns = ts;
            }
        }
        shares
    }
}

/// `unattributed reads: ~1.2 GiB (estimate: /proc shows how much, not from which file)`,
/// as the text output and the TUI say it.
pub fn words(bytes: u64) -> String {
    format!(
        "unattributed reads: ~{} (estimate: /proc shows how much was read, not from which file)",
        crate::text::human_bytes(bytes)
    )
}

/// `~1.2 GiB unattributed`, where space is short.
pub fn short_words(bytes: u64) -> String {
    format!("~{} read unattributed", crate::text::human_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_limit(_: i32, _: Option<u64>) -> u64 {
        u64::MAX
    }

    #[test]
    fn no_evidence_is_unattributed() {
        let mut c = Credit::default();
        assert_eq!(c.unattributed, None);
        assert!(c.split(7, 1000, 5, true, no_limit).is_empty());
        assert_eq!(c.unattributed, Some(1000));
        assert_eq!(c.updated_ns, 5);
    }

    #[test]
    fn shares_follow_the_samples() {
        let mut c = Credit::default();
        c.sampled(7, 20, 3, Some(8192));
        c.sampled(7, 21, 1, Some(1 << 20));
        c.by_position(7, 100);
        let s = c.split(7, 4100, 1, true, no_limit);
        assert_eq!(
            s,
            vec![
                Share {
                    fd: 20,
                    bytes: 3000,
                    end: Some(8192)
                },
                Share {
                    fd: 21,
                    bytes: 1000,
                    end: Some(1 << 20)
                }
            ]
        );
        assert_eq!(c.unattributed, Some(0));
        // The evidence is used up: the next interval starts from nothing.
        assert!(c.split(7, 10, 2, true, no_limit).is_empty());
        assert_eq!(c.unattributed, Some(10));
    }

    #[test]
    fn a_limit_leaves_the_rest_unattributed() {
        let mut c = Credit::default();
        c.sampled(7, 20, 1, Some(4096));
        let s = c.split(7, 10_000, 1, true, |_, end| end.unwrap_or(0));
        assert_eq!(s[0].bytes, 4096);
        assert_eq!(c.unattributed, Some(10_000 - 4096));
    }

    #[test]
    fn not_ours_is_not_counted() {
        let mut c = Credit::default();
        assert!(c.split(9, 10_000, 1, false, no_limit).is_empty());
        assert_eq!(c.unattributed, None);
    }

    #[test]
    fn huge_numbers_do_not_overflow() {
        let mut c = Credit::default();
        c.sampled(7, 1, u32::MAX, None);
        c.sampled(7, 2, u32::MAX, None);
        let s = c.split(7, u64::MAX, 1, true, no_limit);
        let total = s.iter().try_fold(0u64, |t, s| t.checked_add(s.bytes));
        assert_eq!(total, Some(u64::MAX - 1), "{s:?}");
        c.split(7, u64::MAX, 2, true, no_limit);
        assert_eq!(c.unattributed, Some(u64::MAX));
    }
}
