//! Quoting file content in an error line: a damaged file can hold megabytes, newlines and
//! escape sequences, and the line it ends up in must stay one short, inert line.

/// At most this many characters of file content appear in a message.
pub const MAX_CHARS: usize = 40;

/// `bytes` as visible text, at most [`MAX_CHARS`] characters, `…` when cut: newlines,
/// tabs and backslashes as `\n`, `\t`, `\\`, other controls and invalid UTF-8 as `\xNN`,
/// C1 controls and invisible format characters as `\u{NNNN}` (see [`super::visible`]).
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut shown = 0;
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if shown == MAX_CHARS {
                out.push('…');
                return out;
            }
            shown += 1;
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                c => super::visible::push(c, &mut out),
            }
        }
        for b in chunk.invalid() {
            if shown == MAX_CHARS {
                out.push('…');
                return out;
            }
            shown += 1;
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// [`escape`] in double quotes.
pub fn quote(bytes: &[u8]) -> String {
    format!("\"{}\"", escape(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_inert() {
        assert_eq!(quote(b"15\n"), r#""15\n""#);
        assert_eq!(
            escape(b"a\x1b[2J\tb\xff\xc2\x9b"),
            r"a\x1b[2J\tb\xff\u{009b}"
        );
        assert_eq!(escape("x\u{202e}y".as_bytes()), r"x\u{202e}y");
        let long = escape(&[b'7'; 10_000]);
        assert_eq!(long, format!("{}…", "7".repeat(MAX_CHARS)));
    }
}
