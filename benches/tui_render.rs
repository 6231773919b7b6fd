//! What the TUI costs while following a busy process: one frame of the trace screen
//! (rendered into a TestBackend, so terminal I/O is left out) and the folding of events into
//! the model. Frames come once per tick whatever the event rate, so the CPU share is
//! `frames/s × frame time + events/s × fold time`; the target is < 5 % of one core at
//! 100,000 events/s with the default 250 ms tick.
//!
//!     cargo bench --bench tui_render

#[path = "../tests/support/scripted.rs"]
mod scripted;

use pg_trace::model::Model;
use pg_trace::ui::log::{Level, LogRing};
use pg_trace::ui::{draw_trace, ScreenState, Theme};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use scripted::*;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The scripted scan plus many more open files and relations than a backend usually has.
fn busy_model() -> (Model, u64) {
    let (mut m, mut now) = scan_model();
    for i in 0..300 {
        let fd = 100 + i;
        apply(&mut m, open(now, fd, &format!("base/16385/{}", 20000 + i)));
        apply(&mut m, pread(now + 1, fd, (i as u64) * 8192, 8192));
        now += 10;
    }
    tick(&mut m, now);
    (m, now)
}

fn frame_time(m: &Model, now: u64, w: u16, h: u16, log: &LogRing) -> Duration {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    let st = ScreenState {
        show_log: true,
        ..ScreenState::default()
    };
    let i = info(now);
    let th = Theme::from_env();
    let mut v = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        term.draw(|f| draw_trace(f, m, &i, log, &st, &th)).unwrap();
        v.push(t.elapsed());
    }
    median(v)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("tui_render: benchmark only runs under `cargo bench`");
        return;
    }
    let (m, now) = busy_model();
    let mut log = LogRing::new();
    for k in 0..5000u64 {
        log.push(T0 + k, Level::Info, format!("open  fd {k} sales.orders"));
    }
    // Folding: sequential 8 KiB preads through a 1 GiB segment, as a scan does.
    let mut fm = Model::new(PID, SEG);
    apply(&mut fm, open(T0, 24, "base/16385/16388"));
    let n = 1_000_000u64;
    let t = Instant::now();
    for k in 0..n {
        apply(&mut fm, pread(T0 + k * 10_000, 24, (k * 8192) % SEG, 8192));
    }
    let fold = t.elapsed() / n as u32;
    let ticks_per_s = 4.0;
    for (w, h) in [(80, 24), (200, 50), (400, 120)] {
        let f = frame_time(&m, now, w, h, &log);
        let share = ticks_per_s * f.as_secs_f64() * 100.0;
        println!(
            "tui_render: frame {w}x{h}: {:.0} µs -> {share:.2}% of a core at 4 frames/s",
            f.as_secs_f64() * 1e6
        );
    }
    // The coverage strip of a relation whose bitmap is at its cap (2^20 granules, a 4 TiB
    // relation half read): the per-row cost that grows with relation size, not event rate.
    let mut cov = pg_trace::model::coverage::Coverage::new();
    let size: u64 = 4 << 40;
    for k in 0..20_000u64 {
        cov.mark(k * (size / 20_000), size / 40_000);
    }
    let mut v = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        std::hint::black_box(cov.slices(size, 120));
        v.push(t.elapsed());
    }
    let strip = median(v);
    println!(
        "tui_render: coverage strip of a 4 TiB relation (2^20 granules): {:.0} µs per visible row",
        strip.as_secs_f64() * 1e6
    );
    let fold_share = 100_000.0 * fold.as_secs_f64() * 100.0;
    println!(
        "tui_render: fold one event: {} ns -> {fold_share:.2}% of a core at 100k events/s",
        fold.as_nanos()
    );
}
