//! The one escaping of outside text (names, queries, titles, file content) for a terminal:
//! whatever could move the cursor, rewrite the screen or the window title, reorder what is
//! shown or break one record into two lines is written as visible text instead.

use std::borrow::Cow;

/// Characters a terminal would obey or that hide or reorder text: C0 controls (newline
/// and tab included: inside a field they forge rows or columns), DEL, C1 controls, and
/// the invisible format characters (bidi marks, overrides and isolates, zero-width
/// space (but not ZWJ/ZWNJ, which scripts and emoji need), the BOM, interlinear annotations, the line and paragraph separators).
pub fn is_hidden(c: char) -> bool {
    matches!(c,
        '\0'..='\x1f'
        | '\x7f'..='\u{9f}'
        | '\u{ad}'
        | '\u{61c}'
        | '\u{180e}'
        | '\u{200b}'
        | '\u{200e}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{206f}'
        | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}')
}

/// Push `c` to `out`, as `\n`, `\r`, `\t`, `\xNN` (other C0 and DEL) or `\u{NNNN}` when it
/// is [`is_hidden`], else as itself.
pub fn push(c: char, out: &mut String) {
    use std::fmt::Write;
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\0'..='\x1f' | '\x7f' => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if is_hidden(c) => {
            let _ = write!(out, "\\u{{{:04x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// `s` with every [`is_hidden`] character written visibly; printable text (any script)
/// is returned as it is, without copying. The result is one line and inert.
pub fn visible(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_hidden) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push(c, &mut out);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_is_shown() {
        assert_eq!(
            visible("t\x1b[2J\x1b]0;PWNED\x07\nx\u{202e}y\u{9b}\t\x7f"),
            r"t\x1b[2J\x1b]0;PWNED\x07\nx\u{202e}y\u{009b}\t\x7f"
        );
        assert_eq!(visible("a\u{2066}b\u{200b}"), r"a\u{2066}b\u{200b}");
    }

    #[test]
    fn printable_unchanged() {
        for s in ["Straße", "表", "public.orders", "a\\b \"q\"", "é\u{a0}", ""] {
            assert!(matches!(visible(s), Cow::Borrowed(_)), "{s}");
        }
    }
}
