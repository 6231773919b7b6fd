//! A model fed by scripted events through a fake namer: the trace screen without root,
//! PostgreSQL or a terminal (snapshot tests and the render benchmark).

#![allow(dead_code)]

use pg_trace::model::{Model, Named, Namer, RelIdentity, RelInfo};
use pg_trace::pgdata::relfile::Fork;
use pg_trace::trace::{Event, EventKind, Syscall};
use pg_trace::ui::TraceInfo;
use std::sync::Arc;

pub const SEG: u64 = 1 << 30;
pub const MIB: u64 = 1 << 20;
pub const PID: i32 = 4242;
/// Where the scripted clock starts.
pub const T0: u64 = 1_000_000_000_000;

/// Knows a small `shop` database: sales.orders (1.5 GiB, two segments), its primary key,
/// the TOAST table of sales.docs, a sort spill and a WAL segment.
pub struct FakeNamer;

fn rel(
    key: &str,
    name: &str,
    kind: &'static str,
    table: Option<&str>,
    fork: Fork,
    segment: u32,
) -> Named {
    let label = match table {
        Some(t) => format!("{name} → {t}"),
        None => format!("sales.{name}"),
    };
    let schema = if kind == "toast" { "pg_toast" } else { "sales" };
    Named {
        relpath: Some(key.to_string()),
        class: "relation",
        label: label.clone(),
        relation: Some(Arc::new(RelInfo {
            id: RelIdentity {
                locator: match pg_trace::pgdata::classify(key, 16 << 20) {
                    pg_trace::pgdata::PathClass::Relation(f) => f.locator,
                    other => panic!("{key}: {other:?}"),
                },
                path: key.to_string(),
                label,
                schema: Some(schema.into()),
                name: Some(name.into()),
                kind: Some(kind),
                table: table.map(str::to_string),
                known: true,
            },
            fork,
            segment,
        })),
    }
}

impl Namer for FakeNamer {
    fn name(&mut self, path: &str) -> Named {
        let (file, segment) = match path.rsplit_once('.') {
            Some((f, s)) => (f, s.parse().unwrap_or(0)),
            None => (path, 0),
        };
        let (file, fork) = match file.strip_suffix("_fsm") {
            Some(f) => (f, Fork::Fsm),
            None => (file, Fork::Main),
        };
        match file {
            "base/16385/16388" => rel(file, "orders", "table", None, fork, segment),
            "base/16385/16394" => rel(
                file,
                "orders_pkey",
                "index",
                Some("sales.orders"),
                fork,
                segment,
            ),
            "base/16385/16392" => rel(
                file,
                "pg_toast_16385",
                "toast",
                Some("sales.docs"),
                fork,
                segment,
            ),
            _ if path.starts_with("base/pgsql_tmp/") => Named {
                relpath: Some(path.into()),
                class: "temp_file",
                label: "temp file 2 (pid 4242)".into(),
                relation: None,
            },
            _ if path.starts_with("pg_wal/") => Named {
                relpath: Some(path.into()),
                class: "wal",
                label: format!("WAL {}", &path[7..]),
                relation: None,
            },
            _ => Named {
                relpath: Some(path.into()),
                class: "other",
                label: path.into(),
                relation: None,
            },
        }
    }
    /// sales.orders is pg_class OID 16500 in database 16385 (its filenode is 16388 since a
    /// rewrite; OID 16388 is nothing the catalog knows).
    fn relation_by_oid(&mut self, db: u32, oid: u32) -> Option<RelIdentity> {
        let named = (db, oid) == (16385, 16500);
        named.then(|| self.name("base/16385/16388").relation.unwrap().id.clone())
    }
    fn relation_size(&mut self, rel: &RelInfo) -> Option<u64> {
        Some(match rel.id.path.as_str() {
            "base/16385/16388" => SEG + SEG / 2,
            "base/16385/16394" => 200 * MIB,
            _ => 24 * MIB,
        })
    }
    fn file_size(&mut self, path: &str) -> Option<u64> {
        Some(match path {
            "base/16385/16388" => SEG,
            "base/16385/16388.1" => SEG / 2,
            "base/16385/16388_fsm" => 384 * 1024,
            "base/16385/16394" => 200 * MIB,
            p if p.starts_with("pg_wal/") => 16 * MIB,
            p if p.starts_with("base/pgsql_tmp") => 37 * MIB,
            _ => 24 * MIB,
        })
    }
}

pub fn ev(ts: u64, kind: EventKind) -> Event {
    Event {
        ts_ns: ts,
        pid: PID,
        kind,
    }
}

pub fn open(ts: u64, fd: i32, path: &str) -> Event {
    ev(
        ts,
        EventKind::Open {
            syscall: Syscall::Openat,
            dirfd: None,
            path: path.into(),
            flags: 0,
            fd,
        },
    )
}

pub fn pread(ts: u64, fd: i32, off: u64, n: u64) -> Event {
    ev(
        ts,
        EventKind::Read {
            syscall: Syscall::Pread64,
            fd,
            offset: Some(off),
            requested: n,
            result: n as i64,
        },
    )
}

pub fn write(ts: u64, fd: i32, off: u64, n: u64) -> Event {
    ev(
        ts,
        EventKind::Write {
            syscall: Syscall::Write,
            fd,
            offset: Some(off),
            requested: n,
            result: n as i64,
        },
    )
}

/// A scan 80% through sales.orders (into segment 1) at 100 MiB/s, index lookups scattered
/// over orders_pkey, a few TOAST reads, a sort spill being written, WAL written. Ticks
/// every 250 ms as the TUI does. Returns the model and the scripted "now".
pub fn scan_model() -> (Model, u64) {
    let mut m = Model::new(PID, SEG);
    let mut n = FakeNamer;
    let mut t = T0;
    let mut next_tick = T0 + 250_000_000;
    let mut events = vec![
        open(t, 21, "base/16385/16388_fsm"),
        open(t, 22, "base/16385/16394"),
        open(t, 23, "base/16385/16392"),
        open(t, 24, "base/16385/16388"),
        open(t, 26, "pg_wal/000000010000000A000000F3"),
    ];
    events.push(pread(t, 21, 0, 8192));
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let chunk = MIB;
    let total = (SEG + SEG / 2) * 8 / 10;
    let mut pos = 0u64;
    let mut k = 0u64;
    while pos < total {
        t += 10_000_000;
        if pos == SEG {
            events.push(open(t, 25, "base/16385/16388.1"));
        }
        let (fd, off) = if pos < SEG {
            (24, pos)
        } else {
            (25, pos - SEG)
        };
        events.push(pread(t + 6, fd, off, chunk));
        if k % 4 == 0 {
            let blk = rnd() % (200 * MIB / 8192);
            events.push(pread(t + 1, 22, blk * 8192, 8192));
        }
        if k % 50 == 0 {
            events.push(pread(t + 2, 23, (k / 50) * 8192 * 7, 8192));
            events.push(write(t + 3, 26, (k / 50) * 65536, 65536));
        }
        if k == 300 {
            events.push(open(t + 4, 27, "base/pgsql_tmp/pgsql_tmp4242.2"));
        }
        if k >= 300 && k % 3 == 0 {
            events.push(write(t + 5, 27, (k - 300) / 3 * 262_144, 262_144));
        }
        pos += chunk;
        k += 1;
        for e in events.drain(..) {
            m.apply(&e, &mut n);
        }
        if t >= next_tick {
            m.tick(next_tick, &mut n);
            next_tick += 250_000_000;
        }
    }
    (m, t + 3_000_000)
}

pub fn apply(m: &mut Model, e: Event) {
    m.apply(&e, &mut FakeNamer);
}

pub fn tick(m: &mut Model, now: u64) {
    m.tick(now, &mut FakeNamer);
}

pub fn info(now: u64) -> TraceInfo {
    TraceInfo {
        pid: PID,
        title: "postgres: alice shop [local] SELECT".into(),
        title_now: None,
        datadir: "/var/lib/postgresql/15/main".into(),
        port: Some(5432),
        major: 15,
        methods: "ebpf".into(),
        limitations: vec![
            "eBPF: pread64 times have clock-tick resolution (4 ms); other calls are timed exactly"
                .into(),
        ],
        elapsed_s: (now - T0) as f64 / 1e9,
        events_per_s: 12_345.0,
        now_ns: now,
        start_ns: T0,
        proc_state: Some("running".into()),
        error: None,
    }
}
