//! The layer order of docs/design.md, checked on the source: data flows one way, so a
//! lower layer never names an upper one, and two modules of one layer never name each
//! other (output and ui are two views of the model, not one another's helpers).
//!
//! text → pgdata, process → trace → model → output | ui → commands (cli, session, ...)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layer of each top-level module of `src/`. A module missing here fails the test,
/// so a new one has to be placed on purpose.
const TOP: u8 = 5;

fn rank(module: &str) -> Option<u8> {
    Some(match module {
        "text" | "version" => 0,
        "pgdata" | "process" => 1,
        "trace" => 2,
        "model" => 3,
        "output" | "ui" => 4,
        "lib" | "main" | "cli" | "commands" | "generate" | "naming" | "session" => TOP,
        _ => return None,
    })
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// How many modules deep a file's own module is: `lib.rs` 0, `model/mod.rs` 1,
/// `model/stall.rs` 2.
fn depth_of(src: &Path, file: &Path) -> usize {
    let rel = file.strip_prefix(src).unwrap();
    let n = rel.components().count();
    match rel.file_name().and_then(|f| f.to_str()) {
        Some("mod.rs") => n - 1,
        Some("lib.rs") | Some("main.rs") if n == 1 => 0,
        _ => n,
    }
}

/// The top-level module a file belongs to: `src/model/stall.rs` → `model`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Every top-level module a source text names: through `crate::` (including the ones
/// inside `use crate::{a::X, b::{Y, Z}}` groups), and through a chain of `super::` that
/// climbs to the crate root from a file `depth` modules deep (`super::ui` from
/// `src/model/mod.rs`), or further (from an inline `mod tests`), and lands on a
/// top-level module.
fn named_modules(text: &str, depth: usize) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let code = strip_comments(text);
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue; // `$crate::`, `my_crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = matching_brace(group);
            for part in split_top_level(&group[..end]) {
                let name = ident(part.trim_start());
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    let mut rest = code.as_str();
    while let Some(i) = rest.find("super::") {
        rest = &rest[i..];
        let mut k = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            rest = r;
            k += 1;
        }
        let name = ident(rest);
        if depth > 0 && k >= depth && rank(&name).is_some() {
            out.insert(name);
        }
    }
    out
}

/// The code without `//` and `/* */` comments, and with string literals emptied, so that
/// a path in a comment or a message is not taken for an import.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
                out.push_str("\"\"");
            }
            _ => out.push(c),
        }
    }
    out
}

/// `a::X, b::{Y, Z}` → [`a::X`, `b::{Y, Z}`]: commas of nested groups do not split.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

fn matching_brace(s: &str) -> usize {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    s.len()
}

#[test]
fn no_layer_names_an_upper_or_sibling_one() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(files.len() > 20, "found only {} source files", files.len());
    let mut broken = Vec::new();
    for file in &files {
        let from = module_of(&src, file);
        let Some(from_rank) = rank(&from) else {
            broken.push(format!(
                "{}: module `{from}` has no layer in tests/layers.rs",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for to in named_modules(&text, depth_of(&src, file)) {
            if to == from || to == "self" || to == "super" {
                continue;
            }
            let Some(to_rank) = rank(&to) else {
                broken.push(format!("{}: names unknown module `{to}`", file.display()));
                continue;
            };
            // The commands on top may share their own helpers; below them a layer
            // names only lower ones.
            if to_rank > from_rank || (to_rank == from_rank && from_rank < TOP) {
                broken.push(format!(
                    "{}: `{from}` (layer {from_rank}) names `{to}` (layer {to_rank})",
                    file.strip_prefix(&src).unwrap().display()
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "layer order broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_checker_sees_grouped_and_plain_paths() {
    let text = "use crate::{model::{Model, lines}, text::human_bytes};\nlet x = crate::ui::draw(); // crate::output\n/* crate::session */ let m = \"crate::cli\";\n";
    let names: Vec<_> = named_modules(text, 2).into_iter().collect();
    assert_eq!(names, ["model", "text", "ui"]);
    // From src/model/mod.rs, `super::` is the crate root; from src/model/stall.rs it is
    // model itself.
    let names: Vec<_> = named_modules("use super::ui::draw;", 1)
        .into_iter()
        .collect();
    assert_eq!(names, ["ui"]);
    assert!(named_modules("use super::files::FileEntry;", 2).is_empty());
    // An inline `mod tests` in src/model/mod.rs climbing two levels.
    let names: Vec<_> = named_modules("use super::super::output::Format;", 1)
        .into_iter()
        .collect();
    assert_eq!(names, ["output"]);
}
