//! Which parts of a relation were touched: a bitmap of fixed-size granules over the main
//! fork (segments laid end to end). A sequential scan fills it from the left, an index scan
//! scatters. Memory is bounded: past `MAX_GRANULES` the granule doubles (two bits merge
//! into one), so a 4 TB relation costs the same 128 KiB as a 1 GB one, at coarser detail.

/// One bit per granule; 2^20 bits = 128 KiB per relation at most.
const MAX_GRANULES: u64 = 1 << 20;
/// The finest granule: PostgreSQL's default BLCKSZ.
pub const BLOCK: u64 = 8192;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Coverage {
    granule: u64,
    bits: Vec<u64>,
    touched: u64,
}

impl Default for Coverage {
    fn default() -> Self {
        Coverage::new()
    }
}

impl Coverage {
    pub fn new() -> Coverage {
        Coverage {
            granule: BLOCK,
            bits: Vec::new(),
            touched: 0,
        }
    }

    /// Bytes one bit stands for.
    pub fn granule(&self) -> u64 {
        self.granule
    }

    /// Mark the bytes `[start, start+len)` as touched.
    pub fn mark(&mut self, start: u64, len: u64) {
        if len == 0 {
            return;
        }
        let end = start.saturating_add(len);
        while end.div_ceil(self.granule) > MAX_GRANULES {
            self.coarsen();
        }
        let first = start / self.granule;
        let last = (end - 1) / self.granule;
        let words = (last / 64 + 1) as usize;
        if self.bits.len() < words {
            self.bits.resize(words, 0);
        }
        for g in first..=last {
            let (w, b) = ((g / 64) as usize, g % 64);
            if self.bits[w] & (1 << b) == 0 {
                self.bits[w] |= 1 << b;
                self.touched += 1;
            }
        }
    }

    fn coarsen(&mut self) {
        let old = std::mem::take(&mut self.bits);
        let granules = old.len() as u64 * 64;
        let mut bits = vec![0u64; (granules / 2).div_ceil(64) as usize];
        for g in 0..granules {
            if old[(g / 64) as usize] & (1 << (g % 64)) != 0 {
                let n = g / 2;
                bits[(n / 64) as usize] |= 1 << (n % 64);
            }
        }
        self.touched = bits.iter().map(|w| u64::from(w.count_ones())).sum();
        self.bits = bits;
        self.granule *= 2;
    }

    /// Bytes touched, in whole granules (exact while the granule is one block).
    pub fn touched_bytes(&self) -> u64 {
        self.touched * self.granule
    }

    /// Where the first touched granule begins.
    pub fn first_touched(&self) -> Option<u64> {
        let (w, word) = self.bits.iter().enumerate().find(|(_, w)| **w != 0)?;
        Some((w as u64 * 64 + u64::from(word.trailing_zeros())) * self.granule)
    }

    /// Bytes touched in `[start, end)`, in whole granules.
    pub fn touched_in(&self, start: u64, end: u64) -> u64 {
        let (first, last) = (start / self.granule, end.div_ceil(self.granule));
        (first..last).filter(|&g| self.is_set(g)).count() as u64 * self.granule
    }

    /// Distinct blocks touched (an upper bound once granules are coarser than a block).
    pub fn blocks(&self) -> u64 {
        self.touched * (self.granule / BLOCK)
    }

    fn is_set(&self, g: u64) -> bool {
        self.bits
            .get((g / 64) as usize)
            .is_some_and(|w| w & (1 << (g % 64)) != 0)
    }

    /// Fraction of `size` bytes touched, 0..=1.
    pub fn fraction(&self, size: u64) -> f64 {
        if size == 0 {
            return 0.0;
        }
        (self.touched_bytes() as f64 / size as f64).min(1.0)
    }

    /// `n` equal slices of a relation of `size` bytes, each with the fraction of its
    /// granules touched: the coverage strip.
    pub fn slices(&self, size: u64, n: usize) -> Vec<f32> {
        if n == 0 || size == 0 {
            return vec![0.0; n];
        }
        let granules = size.div_ceil(self.granule);
        (0..n as u64)
            .map(|k| {
                let lo = granules * k / n as u64;
                let hi = (granules * (k + 1) / n as u64).max(lo + 1).min(granules);
                if lo >= hi {
                    return 0.0;
                }
                let set = (lo..hi).filter(|&g| self.is_set(g)).count();
                set as f32 / (hi - lo) as f32
            })
            .collect()
    }
}

/// Most stretches kept: past it new ones are not added (the figure only undercounts).
const MAX_STRETCHES: usize = 1 << 16;

/// Disjoint byte stretches `[start, end)` of a relation: the parts counted as passed
/// because shared buffers held them, less whatever was read from the file since.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stretches {
    map: std::collections::BTreeMap<u64, u64>,
    bytes: u64,
}

impl Stretches {
    /// Bytes in all stretches.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Add `[start, end)`, merging with what it touches.
    pub fn add(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut lo, mut hi) = (start, end);
        let touching: Vec<(u64, u64)> = self
            .map
            .range(..=end)
            .rev()
            .take_while(|(_, &e)| e >= start)
            .map(|(&s, &e)| (s, e))
            .collect();
        if touching.is_empty() && self.map.len() >= MAX_STRETCHES {
            return;
        }
        for (s, e) in touching {
            self.map.remove(&s);
            self.bytes -= e - s;
            lo = lo.min(s);
            hi = hi.max(e);
        }
        self.map.insert(lo, hi);
        self.bytes += hi - lo;
    }

    /// Take `[start, end)` out (it was read from the file after all).
    pub fn remove(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let hit: Vec<(u64, u64)> = self
            .map
            .range(..end)
            .rev()
            .take_while(|(_, &e)| e > start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in hit {
            self.map.remove(&s);
            self.bytes -= e - s;
            if s < start {
                self.map.insert(s, start);
                self.bytes += start - s;
            }
            if e > end {
                self.map.insert(end, e);
                self.bytes += e - end;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_fills_from_the_left() {
        let mut c = Coverage::new();
        c.mark(0, 5 * BLOCK);
        assert_eq!(c.blocks(), 5);
        let s = c.slices(10 * BLOCK, 10);
        assert_eq!(&s[..5], &[1.0; 5]);
        assert_eq!(&s[5..], &[0.0; 5]);
        assert!((c.fraction(10 * BLOCK) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn rereads_count_once_and_partial_blocks_count_whole() {
        let mut c = Coverage::new();
        c.mark(100, 10);
        c.mark(0, BLOCK);
        c.mark(3 * BLOCK + 1, 1);
        assert_eq!(c.blocks(), 2);
    }

    #[test]
    fn huge_offsets_coarsen_instead_of_growing() {
        let mut c = Coverage::new();
        c.mark(0, BLOCK);
        c.mark(4 << 40, BLOCK); // 4 TiB in
        assert!(c.bits.len() as u64 * 64 <= MAX_GRANULES);
        assert!(c.granule() > BLOCK);
        assert_eq!(c.touched, 2);
        let s = c.slices((4 << 40) + BLOCK, 4);
        assert!(s[0] > 0.0 && s[3] > 0.0 && s[1] == 0.0);
    }

    #[test]
    fn stretches_merge_and_split() {
        let mut s = Stretches::default();
        s.add(10, 20);
        s.add(30, 40);
        s.add(20, 30);
        assert_eq!((s.bytes(), s.map.len()), (30, 1));
        s.remove(15, 25);
        assert_eq!(s.bytes(), 20);
        assert_eq!(s.map.len(), 2);
        s.remove(0, 100);
        assert_eq!(s.bytes(), 0);
        s.add(5, 5);
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn empty_and_zero_sizes() {
        let c = Coverage::new();
        assert_eq!(c.slices(0, 3), vec![0.0; 3]);
        assert_eq!(c.fraction(0), 0.0);
        assert!(c.slices(BLOCK, 0).is_empty());
    }
}
