//! Any database user can put terminal escape sequences into names and query texts; none
//! may reach root's terminal through pg_trace's text output (JSON escapes them itself).

mod support;

use std::process::Command;
use support::Cluster;

#[test]
fn escape_sequences_in_names_and_queries_are_neutralised() {
    let c = Cluster::start(15);
    // ESC ] 0 ; title BEL sets the window title; U+009B is a one-character CSI.
    c.execute(
        "postgres",
        "CREATE TABLE \"evil\u{1b}]0;pwned\u{7}\u{9b}31m\" (x int)",
    );
    c.execute("postgres", "CHECKPOINT");
    let mut held = c.hold_backend("postgres");
    let pid = held.pid;
    let sleeper = std::thread::spawn(move || {
        let r = held
            .client
            .batch_execute("SELECT pg_sleep(30) /* \u{1b}[2J wipe */");
        assert!(r.is_err(), "cancelled");
    });
    let bin = env!("CARGO_BIN_EXE_pg_trace");
    let catalog = Command::new(bin)
        .args(["catalog", "--pgdata"])
        .arg(&c.datadir)
        .output()
        .unwrap();
    assert!(catalog.status.success());
    let text = String::from_utf8_lossy(&catalog.stdout);
    assert!(text.contains(r"evil\x1b]0;pwned\x07\u{009b}31m"), "{text}");
    // The query text, as `ps` reads it from shared memory, once the sleep shows there.
    let t = std::time::Instant::now();
    let ps = loop {
        let ps = Command::new(bin)
            .args(["ps", "--pgdata"])
            .arg(&c.datadir)
            .output()
            .unwrap();
        assert!(
            ps.status.success(),
            "{}",
            String::from_utf8_lossy(&ps.stderr)
        );
        if String::from_utf8_lossy(&ps.stdout).contains("pg_sleep(30)") {
            break ps;
        }
        assert!(
            t.elapsed().as_secs() < 30,
            "the sleeping query never showed"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let json = Command::new(bin)
        .args(["catalog", "--format", "json", "--pgdata"])
        .arg(&c.datadir)
        .output()
        .unwrap();
    for out in [&catalog.stdout, &ps.stdout, &json.stdout] {
        assert!(
            !out.iter().any(|&b| b == 0x1b || b == 0x07),
            "a raw control character reached the output"
        );
        assert!(!out.windows(2).any(|w| w == [0xc2, 0x9b]), "a raw C1 CSI");
    }
    assert!(String::from_utf8_lossy(&ps.stdout).contains(r"/* \x1b[2J wipe"));
    let mut canceller = c.connect("postgres");
    canceller
        .execute("SELECT pg_cancel_backend($1)", &[&pid])
        .unwrap();
    sleeper.join().unwrap();
}
