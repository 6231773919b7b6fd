//! Names, query texts and probe names come from databases, process memory and binaries
//! that any database user can fill: an escape sequence in a table name must not reach
//! root's terminal. Every line output goes through this filter; JSON needs none (serde
//! escapes control characters), text gets `?` for each control character.

use std::io::{self, Write};

/// Passes bytes on, with C0 controls (but newline and tab), DEL and UTF-8-encoded C1
/// controls (U+0080..U+009F, which some terminals obey) replaced by `?`.
pub struct SafeText<W: Write> {
    inner: W,
    /// A 0xC2 lead byte seen at the end of the last write: its fate depends on the next.
    pending_c2: bool,
}

impl<W: Write> SafeText<W> {
    pub fn new(inner: W) -> SafeText<W> {
        SafeText {
            inner,
            pending_c2: false,
        }
    }
}

/// Filter `buf` into `out`; returns whether it ended on an undecided 0xC2.
fn filter(buf: &[u8], mut pending_c2: bool, out: &mut Vec<u8>) -> bool {
    for &b in buf {
        if pending_c2 {
            pending_c2 = false;
            if (0x80..=0x9f).contains(&b) {
                out.push(b'?');
                continue;
            }
            out.push(0xc2);
        }
        match b {
            b'\n' | b'\t' => out.push(b),
            0x00..=0x1f | 0x7f => out.push(b'?'),
            0xc2 => pending_c2 = true,
            _ => out.push(b),
        }
    }
    pending_c2
}

impl<W: Write> Write for SafeText<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut out = Vec::with_capacity(buf.len() + 1);
        self.pending_c2 = filter(buf, self.pending_c2, &mut out);
        self.inner.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.pending_c2) {
            self.inner.write_all(&[0xc2])?;
        }
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> Vec<u8> {
        let mut w = SafeText::new(Vec::new());
        for c in chunks {
            w.write_all(c).unwrap();
        }
        w.flush().unwrap();
        w.inner
    }

    #[test]
    fn controls_become_question_marks() {
        assert_eq!(
            run(&[b"public.\x1b]52;c;x\x07t\tok\n"]),
            b"public.?]52;c;x?t\tok\n".to_vec()
        );
        assert_eq!(run(&[b"a\x7fb"]), b"a?b".to_vec());
    }

    #[test]
    fn c1_controls_even_split_across_writes() {
        // U+009B (CSI) as UTF-8 is C2 9B; U+00E9 (é) is C3 A9; U+00A0 is C2 A0.
        assert_eq!(run(&[b"x\xc2\x9by"]), b"x?y".to_vec());
        assert_eq!(run(&[b"x\xc2", b"\x9by"]), b"x?y".to_vec());
        assert_eq!(run(&["é\u{a0}".as_bytes()]), "é\u{a0}".as_bytes().to_vec());
        assert_eq!(run(&[b"end\xc2"]), b"end\xc2".to_vec());
    }
}
