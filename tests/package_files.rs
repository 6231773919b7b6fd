//! What scripts/package.sh puts beside the binary, made by the binary itself: the man
//! pages and shell completions of `pg_trace generate-files` (hidden), and `--version`.
//! The package itself is built, installed and removed by `scripts/package.sh --check`.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_pg_trace");

fn run(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "pg_trace {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn version_is_printed() {
    let v = run(&["--version"]);
    assert_eq!(
        v.trim_end(),
        format!("pg_trace {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn generate_files_is_hidden_from_help() {
    for args in [&["--help"][..], &["help"], &["-h"]] {
        let help = run(args);
        assert!(help.contains("catalog"), "{help}");
        assert!(!help.contains("generate-files"), "{args:?}: {help}");
    }
}

#[test]
fn man_pages_and_completions_come_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let listed = run(&["generate-files", dir.path().to_str().unwrap()]);
    let read = |rel: &str| {
        let p = dir.path().join(rel);
        assert!(
            listed.lines().any(|l| Path::new(l) == p),
            "{rel} not listed: {listed}"
        );
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };

    let man = read("share/man/man1/pg_trace.1");
    assert!(man.contains(".TH pg_trace 1"), "{man}");
    for word in ["\\-\\-usdt\\-probes", "catalog", "resolve", "probes"] {
        assert!(man.contains(word), "man page lacks {word}");
    }
    assert!(
        !man.contains("generate"),
        "the man page names the hidden subcommand"
    );
    for sub in ["catalog", "resolve", "ps", "probes", "record", "replay"] {
        let page = read(&format!("share/man/man1/pg_trace-{sub}.1"));
        assert!(page.contains(&format!(".TH pg_trace-{sub} 1")), "{page}");
    }
    assert!(!dir.path().join("share/man/man1/pg_trace-help.1").exists());

    for rel in [
        "share/bash-completion/completions/pg_trace",
        "share/zsh/vendor-completions/_pg_trace",
        "share/fish/vendor_completions.d/pg_trace.fish",
    ] {
        let text = read(rel);
        assert!(text.contains("usdt-probes"), "{rel} lacks --usdt-probes");
        assert!(
            text.contains("catalog"),
            "{rel} lacks the catalog subcommand"
        );
        assert!(
            !text.contains("generate-files"),
            "{rel} completes the hidden subcommand"
        );
    }
}

#[test]
fn generate_files_reports_an_unwritable_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let out = Command::new(BIN)
        .args(["generate-files", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("pg_trace: error: creating "), "{err}");
}
