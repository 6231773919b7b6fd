//! The TUI, whole: scripted sessions replayed through the real event loop on a scripted
//! clock, with scripted keys (and a window resize), every frame snapshotted from
//! ratatui's TestBackend. No root, no PostgreSQL, no terminal, no sleeping.
//! Update: INSTA_UPDATE=always cargo test --test app_tui, then review the diff.

#[path = "support/scripted.rs"]
mod scripted;
#[path = "support/sessions.rs"]
mod sessions;

use pg_trace::session::tui::{event_loop, Pace, Screen, TraceApp};
use pg_trace::ui::Theme;
use ratatui::crossterm::event::Event as TermEvent;
use sessions::{key, Frames, Script, ScriptedKeys, SEC};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Every frame of the TUI on `script` at `w`×`h`, with `keys` typed at their times.
fn run(script: &Script, w: u16, h: u16, keys: Vec<(u64, TermEvent)>) -> String {
    run_with(script, w, h, keys, false)
}

fn run_with(script: &Script, w: u16, h: u16, keys: Vec<(u64, TermEvent)>, debug: bool) -> String {
    let (s, clock) = sessions::session(script);
    let mut screen = Screen::Trace(Box::new(TraceApp::new(s, debug)));
    let mut display = Frames::new(&clock, w, h);
    let mut keys = ScriptedKeys::new(&clock, keys);
    let pace = Pace {
        interval: Duration::from_millis(250),
        // A safety net: every script quits with q.
        duration: Some(Duration::from_secs(30)),
        debug,
    };
    let mut no_attach = |pid| anyhow::bail!("no attaching in a replay (pid {pid})");
    event_loop(
        &mut display,
        &mut keys,
        &mut screen,
        &pace,
        &AtomicBool::new(false),
        &Theme::mono(),
        &clock,
        &mut no_attach,
    )
    .unwrap();
    assert!(display.frames.len() > 5, "{}", display.frames.len());
    display.frames.join("")
}

#[test]
fn scan_across_two_segments_then_exit_with_a_resize() {
    let out = run(
        &sessions::scan(),
        100,
        24,
        vec![
            (2 * SEC, TermEvent::Resize(80, 20)),
            (3 * SEC + SEC / 2, key('l')),
            (7 * SEC, key('q')),
        ],
    );
    assert!(out.contains("sales.orders"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn throttled_base_backup() {
    let out = run(
        &sessions::throttled_backup(),
        120,
        24,
        vec![(6 * SEC, key('q'))],
    );
    assert!(out.contains("⚠ throttled by --max-rate"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn lock_wait_then_exit() {
    let out = run(&sessions::lock_wait(), 100, 24, vec![(5 * SEC, key('q'))]);
    assert!(out.contains("held by pid 5151"), "{out}");
    insta::assert_snapshot!(out);
}

/// `-d`: every syscall in the log panel, named as line mode names it.
#[test]
fn every_syscall_in_the_log() {
    let out = run_with(
        &sessions::scan(),
        120,
        30,
        vec![(SEC / 2, key('l')), (2 * SEC, key('q'))],
        true,
    );
    assert!(out.contains("pread64(fd=24 → sales.orders"), "{out}");
    insta::assert_snapshot!(out);
}
