//! Format 5: the times of a frame's events, kept apart from its items (whose events then
//! carry none). An event's time is mostly noise in its low bits (a syscall's few µs,
//! a sleep's jitter): written among the items, each one is a short run of digits zstd
//! can neither match nor code well, and it splits the matches of the events around it
//! (a throttled backup's times were 45 % of its file). Here each time is the difference
//! from the event before (the frame's first from 0), split into a byte that zstd codes
//! well (its sign, its magnitude's highest bit and the bit below it) and the bits below,
//! in a stream of their own, stored as they are when they are noise (most times) and
//! compressed when they repeat (times of a fixed period, a synthetic load's):
//!
//! ```text
//! u32 count, u32 length L, L bytes: zstd of `count` symbol bytes, then the bit stream:
//!     nothing when the symbols need no bits; else u8 0 and the stream as it is, or u8 1
//!     and one zstd frame of it
//! symbol 0: the same time as the event before
//! symbol 1 + 2b + h (1..=126): a difference m > 0, 2^b <= m < 2^(b+1), h the bit below
//!        its highest (0 when b is 0); its b - min(b, 1) lower bits follow in the stream
//! symbol 129 + 2b + h (129..=255): the same for -m (a tracer's clock-tick stamps go back)
//! bit stream: least significant bit first, each value's bits least significant first
//! ```

use anyhow::{bail, Context, Result};

/// The section of times `ts` (absolute, ns), with zstd at `level`; empty for none.
pub fn encode(ts: &[u64], level: i32) -> Result<Vec<u8>> {
    if ts.is_empty() {
        return Ok(Vec::new());
    }
    let mut symbols = Vec::with_capacity(ts.len());
    let mut bits = BitWriter::default();
    let mut prev = 0u64;
    for &t in ts {
        let v = t.wrapping_sub(prev);
        prev = t;
        if v == 0 {
            symbols.push(0);
            continue;
        }
        let neg = (v as i64) < 0;
        let m = if neg { (v as i64).unsigned_abs() } else { v };
        let b = 63 - m.leading_zeros();
        let h = if b == 0 { 0 } else { (m >> (b - 1)) & 1 };
        let base = if neg { 129 } else { 1 };
        symbols.push((base + 2 * b + h as u32) as u8);
        let n = b.saturating_sub(1);
        bits.put(m & ((1u64 << n) - 1), n);
    }
    let count = u32::try_from(ts.len()).context("too many events in a frame")?;
    let z = zstd::bulk::compress(&symbols, level).context("compressing a frame's times")?;
    let zlen = u32::try_from(z.len()).context("too many events in a frame")?;
    let bits = bits.finish();
    let packed = if bits.is_empty() {
        None
    } else {
        Some(zstd::bulk::compress(&bits, level).context("compressing a frame's times")?)
    };
    let mut out = Vec::with_capacity(8 + z.len() + bits.len() + 1);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&zlen.to_le_bytes());
    out.extend_from_slice(&z);
    match packed {
        None => {}
        Some(p) if p.len() < bits.len() => {
            out.push(1);
            out.extend_from_slice(&p);
        }
        Some(_) => {
            out.push(0);
            out.extend_from_slice(&bits);
        }
    }
    Ok(out)
}

/// The times of a section, at most `max` of them (the caller's bound: a hostile count
/// must not allocate).
pub fn decode(section: &[u8], max: usize) -> Result<Vec<u64>> {
    if section.is_empty() {
        return Ok(Vec::new());
    }
    let damaged = "a damaged recording: a frame's times do not decode";
    let (head, rest) = section.split_first_chunk::<8>().context(damaged)?;
    let count = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
    let zlen = u32::from_le_bytes(head[4..].try_into().expect("4 bytes")) as usize;
    if count == 0 || count > max || zlen > rest.len() {
        bail!("{damaged}");
    }
    let (z, stream) = rest.split_at(zlen);
    let symbols = zstd::bulk::decompress(z, count).context(damaged)?;
    if symbols.len() != count {
        bail!("{damaged}");
    }
    // The bits the symbols say follow, before reading them.
    let total: u64 = symbols.iter().map(|&s| u64::from(low_bits(s))).sum();
    let want = usize::try_from(total.div_ceil(8)).context(damaged)?;
    let unpacked;
    let stream = match stream.split_first() {
        None if want == 0 => stream,
        Some((0, raw)) if want > 0 => raw,
        Some((1, z)) if want > 0 => {
            unpacked = zstd::bulk::decompress(z, want).context(damaged)?;
            &unpacked[..]
        }
        _ => bail!("{damaged}"),
    };
    if stream.len() != want {
        bail!("{damaged}");
    }
    let mut bits = BitReader::new(stream);
    let mut out = Vec::with_capacity(count);
    let mut prev = 0u64;
    for s in symbols {
        let v = match s {
            0 => 0,
            1..=126 | 129..=255 => {
                let k = u32::from(if s >= 129 { s - 129 } else { s - 1 });
                let (b, h) = (k / 2, u64::from(k % 2));
                if b == 0 && h == 1 {
                    bail!("{damaged}");
                }
                let n = b.saturating_sub(1);
                let low = bits.take(n).context(damaged)?;
                let m = if b == 0 {
                    1
                } else {
                    (1u64 << b) | (h << (b - 1)) | low
                };
                if s >= 129 {
                    m.wrapping_neg()
                } else {
                    m
                }
            }
            _ => bail!("{damaged}"),
        };
        prev = prev.wrapping_add(v);
        out.push(prev);
    }
    if !bits.at_end() {
        bail!("{damaged}");
    }
    Ok(out)
}

/// How many bits of the stream a symbol's value takes (a symbol no writer makes: none,
/// for the reader to refuse).
fn low_bits(s: u8) -> u32 {
    match s {
        1..=126 | 129..=255 => {
            (u32::from(if s >= 129 { s - 129 } else { s - 1 }) / 2).saturating_sub(1)
        }
        _ => 0,
    }
}

#[derive(Default)]
struct BitWriter {
    acc: u128,
    n: u32,
    out: Vec<u8>,
}

impl BitWriter {
    /// The `n` (at most 62) low bits of `v`.
    fn put(&mut self, v: u64, n: u32) {
        self.acc |= u128::from(v) << self.n;
        self.n += n;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    acc: u128,
    n: u32,
}

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8]) -> BitReader<'a> {
        BitReader {
            bytes,
            acc: 0,
            n: 0,
        }
    }

    fn take(&mut self, n: u32) -> Option<u64> {
        while self.n < n {
            let (&b, rest) = self.bytes.split_first()?;
            self.bytes = rest;
            self.acc |= u128::from(b) << self.n;
            self.n += 8;
        }
        let v = (self.acc & ((1u128 << n) - 1)) as u64;
        self.acc >>= n;
        self.n -= n;
        Some(v)
    }

    /// Nothing left but the last byte's zero padding.
    fn at_end(&self) -> bool {
        self.bytes.is_empty() && self.n < 8 && self.acc == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_come_back_as_they_were() {
        let ts = [
            0,
            0,
            1,
            2,
            3,
            1_000,
            44_166_533_414_757,
            44_166_533_414_757,
            44_166_533_417_501,
            // Back in time, to the start, to the end of the clock and round.
            44_166_124_101_966,
            0,
            u64::MAX,
            1 << 63,
            0,
            1 << 63,
            (1 << 63) + 1,
            5,
        ];
        for n in 0..=ts.len() {
            let s = encode(&ts[..n], 9).unwrap();
            assert_eq!(decode(&s, n).unwrap(), &ts[..n]);
            if n > 0 {
                assert!(decode(&s, n - 1).is_err(), "the bound holds");
            }
        }
    }

    #[test]
    fn a_section_that_does_not_add_up_is_an_error() {
        let s = encode(&[10, 20, 1 << 40], 9).unwrap();
        // Nothing is no times (a frame without events); anything else must add up.
        assert!(decode(&[], 10).unwrap().is_empty());
        for cut in 1..s.len() {
            assert!(decode(&s[..cut], 10).is_err(), "cut at {cut}");
        }
        let mut more = s.clone();
        more.push(0);
        assert!(decode(&more, 10).is_err());
        let mut bad = s.clone();
        bad[0] = 0;
        assert!(decode(&bad, 10).is_err());
    }

    /// Times of a fixed period cost next to nothing (their low bits repeat: compressed);
    /// noisy ones about their bits (stored as they are).
    #[test]
    fn periodic_times_fold_and_noise_stays_as_it_is() {
        let periodic: Vec<u64> = (0..20_000u64).map(|i| 5_000_000 + i * 50_000).collect();
        let s = encode(&periodic, 3).unwrap();
        assert!(s.len() < 200, "{} bytes", s.len());
        assert_eq!(decode(&s, periodic.len()).unwrap(), periodic);
        let mut x = 12345u64;
        let noisy: Vec<u64> = (0..20_000u64)
            .map(|i| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                i * 50_000 + (x >> 52)
            })
            .collect();
        let s = encode(&noisy, 3).unwrap();
        assert_eq!(decode(&s, noisy.len()).unwrap(), noisy);
        let zlen = u32::from_le_bytes(s[4..8].try_into().unwrap()) as usize;
        assert_eq!(s[8 + zlen], 0, "noise is stored as it is");
    }

    proptest::proptest! {
        #[test]
        fn any_times_come_back(ts in proptest::collection::vec(proptest::prelude::any::<u64>(), 0..200),
                               small in proptest::collection::vec(0u64..100_000, 0..200)) {
            for ts in [ts, small.iter().scan(0u64, |a, d| { *a += d; Some(*a) }).collect()] {
                let s = encode(&ts, 3).unwrap();
                proptest::prop_assert_eq!(decode(&s, ts.len()).unwrap(), ts);
            }
        }

        /// Bytes flipped anywhere: an error or some times, never a panic.
        #[test]
        fn damaged_sections_never_panic(at in 0usize..4096, byte in 1u8..=255) {
            let ts: Vec<u64> = (0..300u64).map(|i| i * i * 7919).collect();
            let mut s = encode(&ts, 3).unwrap();
            let i = at % s.len();
            s[i] ^= byte;
            let _ = decode(&s, ts.len());
        }
    }
}
