//! Bytes and durations as people read them, shared by every view (model verdicts, line
//! output, TUI) so that one figure is written the same way everywhere.

/// `n` in the largest binary unit it fills: (value, unit index into B, Ki, Mi, Gi, Ti).
fn scaled(n: u64) -> (f64, usize) {
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < 4 {
        v /= 1024.0;
        i += 1;
    }
    (v, i)
}

pub fn human_bytes(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    match scaled(n) {
        (_, 0) => format!("{n} B"),
        (v, i) => format!("{v:.1} {}", U[i]),
    }
}

/// `300M`, `8.0K`, `512B`: for narrow table cells.
pub fn compact_bytes(n: u64) -> String {
    const U: [&str; 5] = ["B", "K", "M", "G", "T"];
    match scaled(n) {
        (_, 0) => format!("{n}B"),
        (v, i) if v >= 100.0 => format!("{v:.0}{}", U[i]),
        (v, i) => format!("{v:.1}{}", U[i]),
    }
}

/// `4.0M/s`, `-` when there is next to none.
pub fn compact_rate(bps: f64) -> String {
    if bps < 0.5 {
        "-".into()
    } else {
        format!("{}/s", compact_bytes(bps as u64))
    }
}

pub fn human_duration(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// A rate, `-` when there is next to none: `4.0 MiB/s`.
pub fn human_rate(bps: f64) -> String {
    if bps < 0.5 {
        return "-".into();
    }
    format!("{}/s", human_bytes(bps as u64))
}

/// An age in the most readable unit: `3ms`, `1.2s`, `4m05s`.
pub fn human_age(ns: u64) -> String {
    let ms = ns / 1_000_000;
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 10_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        human_duration(ms as f64 / 1000.0)
    }
}
