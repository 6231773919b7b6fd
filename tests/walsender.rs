//! Walsenders on real clusters, one per major (12–18), read from shared memory and checked
//! against what the server says over SQL:
//!
//! - **physical**: a standby client speaking the streaming replication protocol (below:
//!   the PG15 `pg_receivewal` here refuses newer servers, and 16–18 ship no client
//!   programs here) streams WAL and reports written, flushed and replayed positions. Each
//!   look at the walsender's memory is bracketed by two reads of `pg_stat_replication` and
//!   `pg_current_wal_insert_lsn()`: every position lies between them, and equals them when
//!   nothing moved in between. `pg_trace` on the walsender writes `walsender` operation
//!   records with the same figures.
//! - **logical**: `pg_recvlogical` with `test_decoding` decodes one big open transaction
//!   that spills (`logical_decoding_work_mem = 64kB`, 13+; 4096 changes in 12): the spill
//!   files pg_trace counts are those in `pg_replslot/<slot>/`, byte for byte, and after
//!   the commit (14+) `pg_stat_replication_slots` counts what was spilled.
//! - **catching up**: a physical standby and a logical client that fell behind by some
//!   28 MiB of WAL read it over a paced link; the ETA pg_trace gave at a quarter of the
//!   catch-up lands within 15 % of its length of the moment it caught up.

mod support;

use pg_trace::output::record::{Record, WalSenderRecord};
use pg_trace::process::server_backup::parse_lsn;
use pg_trace::process::walsender::{spill, Reader, WalSenderSample};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::trace::spawn_trace_every;
use support::Cluster;

const SEG: u64 = 16 << 20;
const XLOG_BLCKSZ: u64 = 8192;
/// Rows of the one big transaction decoding spills.
const ROWS: u64 = 30_000;

/// A minimal physical standby: START_REPLICATION from the current segment, and a status
/// reply (written = flushed = replayed = all received) every 100 ms. Paced, it reads no
/// faster than its rate: a standby on a slow link, which the walsender waits for.
struct Standby {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![kind];
    v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn read_msg(s: &mut UnixStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head)?;
    let len = u32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len.saturating_sub(4)];
    s.read_exact(&mut body)?;
    Ok((head[0], body))
}

impl Standby {
    fn start(c: &Cluster, from: u64) -> Standby {
        Standby::start_paced(c, from, None, None)
    }

    /// With `slot`, a logical client of that slot (its changes decoded from where the slot
    /// stands), else a physical standby from `from`.
    fn start_paced(
        c: &Cluster,
        from: u64,
        bytes_per_s: Option<f64>,
        slot: Option<&str>,
    ) -> Standby {
        let path = c.sockdir.join(format!(".s.PGSQL.{}", c.port));
        let mut s = UnixStream::connect(&path).expect("connect for replication");
        let mut startup = Vec::new();
        startup.extend_from_slice(&196608u32.to_be_bytes());
        let replication = if slot.is_some() { "database" } else { "true" };
        for kv in [
            "user",
            "postgres",
            "database",
            "postgres",
            "replication",
            replication,
            "application_name",
            "pg_trace_standby",
        ] {
            startup.extend_from_slice(kv.as_bytes());
            startup.push(0);
        }
        startup.push(0);
        let mut first = ((startup.len() + 4) as u32).to_be_bytes().to_vec();
        first.extend_from_slice(&startup);
        s.write_all(&first).unwrap();
        loop {
            let (k, body) = read_msg(&mut s).unwrap();
            match k {
                b'R' => assert_eq!(&body[..4], &[0, 0, 0, 0], "trust authentication"),
                b'E' => panic!("replication connection: {}", String::from_utf8_lossy(&body)),
                b'Z' => break,
                _ => {}
            }
        }
        let start = from & !(SEG - 1);
        let q = match slot {
            Some(slot) => format!("START_REPLICATION SLOT {slot} LOGICAL 0/0\0"),
            None => format!(
                "START_REPLICATION {:X}/{:X} TIMELINE 1\0",
                start >> 32,
                start & 0xffff_ffff
            ),
        };
        s.write_all(&msg(b'Q', q.as_bytes())).unwrap();
        loop {
            let (k, body) = read_msg(&mut s).unwrap();
            match k {
                b'W' => break,
                b'E' => panic!("START_REPLICATION: {}", String::from_utf8_lossy(&body)),
                _ => {}
            }
        }
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut received = start;
            let mut last_reply = Instant::now() - Duration::from_secs(1);
            let (began, mut read) = (Instant::now(), 0u64);
            while !flag.load(Ordering::Relaxed) {
                if let Some(rate) = bytes_per_s {
                    // Ahead of the link's rate: wait until it has caught up with us.
                    let due = Duration::from_secs_f64(read as f64 / rate);
                    if let Some(early) = due.checked_sub(began.elapsed()) {
                        std::thread::sleep(early.min(Duration::from_millis(50)));
                    }
                }
                match read_msg(&mut s) {
                    Ok((b'd', body)) if body.first() == Some(&b'w') && body.len() >= 25 => {
                        let at = u64::from_be_bytes(body[1..9].try_into().unwrap());
                        received = received.max(at + (body.len() - 25) as u64);
                        read += body.len() as u64;
                    }
                    Ok((b'd', _)) => {}
                    Ok(_) => return,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => return,
                }
                if last_reply.elapsed() >= Duration::from_millis(100) {
                    let mut r = vec![b'r'];
                    for _ in 0..3 {
                        r.extend_from_slice(&received.to_be_bytes());
                    }
                    r.extend_from_slice(&0i64.to_be_bytes());
                    r.push(0);
                    if s.write_all(&msg(b'd', &r)).is_err() {
                        return;
                    }
                    last_reply = Instant::now();
                }
            }
        });
        Standby {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A child process killed (by its pid) and reaped on drop.
struct Reaped(Child);
impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What SQL says of one walsender: state, sent, write, flush, replay, write/flush/replay
/// lag in µs, and the insert position.
#[derive(Debug, Clone, PartialEq)]
struct SqlView {
    state: String,
    lsns: [Option<u64>; 4],
    lags: [Option<i64>; 3],
    insert: u64,
}

fn sql_view(c: &Cluster, pid: i32) -> Option<SqlView> {
    let rows = c.psql(
        "postgres",
        &format!(
            "SELECT state, sent_lsn, write_lsn, flush_lsn, replay_lsn, \
             (extract(epoch from write_lag) * 1e6)::bigint, \
             (extract(epoch from flush_lag) * 1e6)::bigint, \
             (extract(epoch from replay_lag) * 1e6)::bigint, \
             pg_current_wal_insert_lsn() FROM pg_stat_replication WHERE pid = {pid}"
        ),
    );
    let r = rows.first()?;
    let lsn = |i: usize| r[i].as_deref().and_then(parse_lsn);
    let us = |i: usize| r[i].as_deref().and_then(|v| v.parse().ok());
    Some(SqlView {
        state: r[0].clone()?,
        lsns: [lsn(1), lsn(2), lsn(3), lsn(4)],
        lags: [us(5), us(6), us(7)],
        insert: wal_end(lsn(8)?),
    })
}

/// `pg_current_wal_insert_lsn()` as the end of the WAL written: at a segment's or page's
/// start it points past that page's header (40 or 24 bytes), which nothing was written to
/// yet; pg_trace counts a walsender's distance to the boundary.
fn wal_end(insert: u64) -> u64 {
    if insert % SEG == 40 {
        insert - 40
    } else if insert % XLOG_BLCKSZ == 24 {
        insert - 24
    } else {
        insert
    }
}

fn ours(w: &WalSenderSample) -> ([Option<u64>; 4], [Option<i64>; 3]) {
    (
        [w.sent, w.write, w.flush, w.replay],
        [w.write_lag_us, w.flush_lag_us, w.replay_lag_us],
    )
}

/// One look at the walsender bracketed by two SQL reads: every position between them.
/// Returns whether nothing moved (and then all of it matched exactly), and whether lag
/// times were there to compare.
fn bracket(c: &Cluster, reader: &Reader, pid: i32) -> (bool, bool) {
    let a = sql_view(c, pid).expect("walsender in pg_stat_replication");
    let w = reader
        .read(pid)
        .unwrap()
        .expect("walsender in shared memory");
    let b = sql_view(c, pid).expect("walsender in pg_stat_replication");
    let m = c.major;
    let (lsns, lags) = ours(&w);
    for (i, name) in ["sent", "write", "flush", "replay"].iter().enumerate() {
        let (lo, hi, x) = (a.lsns[i], b.lsns[i], lsns[i]);
        assert!(
            lo <= x && x <= hi || (lo.is_none() && hi.is_some()),
            "PG{m}: {name} {x:?} not between {lo:?} and {hi:?}"
        );
    }
    let ins = w.insert.expect("insert position read");
    assert!(
        a.insert <= ins && ins <= b.insert,
        "PG{m}: insert {ins:X} not between {:X} and {:X}",
        a.insert,
        b.insert
    );
    if a != b {
        return (false, false);
    }
    assert_eq!(w.state, a.state, "PG{m}");
    assert_eq!(lsns, a.lsns, "PG{m}");
    assert_eq!(ins, a.insert, "PG{m}");
    // The view rounds through a float: equal within a microsecond.
    for (x, y) in lags.iter().zip(a.lags) {
        assert!(
            match (x, y) {
                (Some(x), Some(y)) => (x - y).abs() <= 1,
                (x, y) => x.is_none() && y.is_none(),
            },
            "PG{m}: lags {lags:?} vs {:?}",
            a.lags
        );
    }
    (true, a.lags.iter().any(Option::is_some))
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn walsender_pid(c: &Cluster, app: &str) -> i32 {
    let mut pid = None;
    wait_until(
        &format!("{app}'s walsender"),
        Duration::from_secs(30),
        || {
            pid = c
                .psql(
                    "postgres",
                    &format!(
                        "SELECT pid FROM pg_stat_replication WHERE application_name = '{app}' \
                     AND state = 'streaming'"
                    ),
                )
                .first()
                .and_then(|r| r[0].as_deref().and_then(|p| p.parse().ok()));
            pid.is_some()
        },
    );
    pid.unwrap()
}

fn walsender_records(records: &[Record]) -> Vec<WalSenderRecord> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Operation(o) if o.operation == "walsender" => o.walsender.as_deref().cloned(),
            _ => None,
        })
        .collect()
}

fn physical(c: &Cluster) {
    let m = c.major;
    c.execute("postgres", "CREATE TABLE w (a int, b text)");
    let now = parse_lsn(
        c.psql("postgres", "SELECT pg_current_wal_lsn()")[0][0]
            .as_deref()
            .unwrap(),
    )
    .unwrap();
    let _standby = Standby::start(c, now);
    let pid = walsender_pid(c, "pg_trace_standby");
    let reader = Reader::open(pid, m, &c.datadir, SEG, XLOG_BLCKSZ).expect("open walsender memory");
    let (mut exact, mut lags) = (0, 0);
    for i in 0..60 {
        if i % 2 == 0 {
            c.execute(
                "postgres",
                "INSERT INTO w SELECT g, 'x' FROM generate_series(1, 2000) g",
            );
        }
        let (still, lag) = bracket(c, &reader, pid);
        exact += u32::from(still);
        lags += u32::from(lag);
        if exact >= 3 && lags >= 1 && i >= 10 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        exact >= 1,
        "PG{m}: pg_stat_replication never held still across a read"
    );
    assert!(lags >= 1, "PG{m}: never a lag time to compare");
    let w = reader.read(pid).unwrap().unwrap();
    assert!(
        w.slot.is_none(),
        "PG{m}: a standby without a slot holds none"
    );

    // The same through pg_trace, while WAL is written.
    let mut t = spawn_trace_every(pid, "procfs", 200, &[]);
    t.wait_for("a walsender record with a replay position", |r| {
        walsender_records(r)
            .iter()
            .any(|w| w.state == "streaming" && w.replay_lsn.is_some())
    });
    c.execute(
        "postgres",
        "INSERT INTO w SELECT g, 'x' FROM generate_series(1, 20000) g",
    );
    let target = c.psql("postgres", "SELECT pg_current_wal_insert_lsn()")[0][0]
        .clone()
        .unwrap();
    let target = parse_lsn(&target).unwrap();
    t.wait_for("the standby to have replayed the insert", |r| {
        walsender_records(r).iter().any(|w| {
            w.replay_lsn
                .as_deref()
                .and_then(parse_lsn)
                .is_some_and(|l| l >= target)
        })
    });
    let recs = t.finish();
    let ws = walsender_records(&recs);
    for w in &ws {
        let l = |s: &Option<String>| s.as_deref().and_then(parse_lsn);
        let (ins, sent, wr, fl, rp) = (
            l(&w.insert_lsn),
            l(&w.sent_lsn),
            l(&w.write_lsn),
            l(&w.flush_lsn),
            l(&w.replay_lsn),
        );
        assert!(
            rp <= fl && fl <= wr && wr <= sent && sent <= ins,
            "PG{m}: {w:?}"
        );
        assert_eq!(w.sent_behind, Some(ins.unwrap() - sent.unwrap()), "PG{m}");
    }
    let last = recs
        .iter()
        .rev()
        .find_map(|r| match r {
            Record::Operation(o) if o.operation == "walsender" => Some(o.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (last.unit.as_deref(), last.source.as_str()),
        (Some("bytes"), "memory")
    );
    assert_eq!(
        last.done,
        last.walsender
            .as_ref()
            .and_then(|w| w.sent_lsn.as_deref())
            .and_then(parse_lsn)
    );
    eprintln!(
        "PG{m}: physical: {} walsender records, {exact} exact brackets, {lags} with lag times",
        ws.len()
    );
}

/// Spill files in a slot's directory now.
fn spill_on_disk(dir: &Path) -> spill::Spill {
    let entries: Vec<(String, u64)> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    Some((
                        e.file_name().to_str()?.to_string(),
                        e.metadata().ok()?.len(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    spill::tally(entries.iter().map(|(n, s)| (n.as_str(), *s)))
}

fn logical(c: &Cluster) {
    let m = c.major;
    let client = support::bin_dir(15).join("pg_recvlogical");
    if !client.exists() {
        support::skip(
            &format!("walsender logical PG{m}"),
            "no pg_recvlogical (PostgreSQL 15 client)",
        );
        return;
    }
    c.execute("postgres", "CREATE TABLE big (a int, b text)");
    c.execute(
        "postgres",
        "SELECT pg_create_logical_replication_slot('wsl', 'test_decoding')",
    );
    let mut cmd = c.command(client.to_str().unwrap());
    cmd.arg("-h")
        .arg(&c.sockdir)
        .arg("-p")
        .arg(c.port.to_string())
        .args([
            "-U", "postgres", "-d", "postgres", "-S", "wsl", "--start", "-f", "-",
        ])
        .stdout(Stdio::null());
    let _client = Reaped(cmd.spawn().expect("spawn pg_recvlogical"));
    let pid = walsender_pid(c, "pg_recvlogical");
    let reader = Reader::open(pid, m, &c.datadir, SEG, XLOG_BLCKSZ).expect("open walsender memory");
    let w = reader.read(pid).unwrap().unwrap();
    let slot = w.slot.clone().expect("the walsender's slot");
    assert_eq!((slot.name.as_str(), slot.logical), ("wsl", true), "PG{m}");
    let row = |c: &Cluster| {
        let r = c.psql(
            "postgres",
            "SELECT restart_lsn, confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'wsl'",
        );
        (
            r[0][0].as_deref().and_then(parse_lsn),
            r[0][1].as_deref().and_then(parse_lsn),
        )
    };

    let mut tx = c.hold_backend("postgres");
    tx.client.batch_execute("BEGIN").unwrap();
    tx.client
        .batch_execute(&format!(
            "INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, {ROWS}) g"
        ))
        .unwrap();
    let end = c.psql("postgres", "SELECT pg_current_wal_insert_lsn()")[0][0]
        .clone()
        .unwrap();
    let end = parse_lsn(&end).unwrap();
    let dir = c.datadir.join("pg_replslot/wsl");
    // Decoded to the insert's end, and the files no longer growing.
    let mut last = spill::Spill::default();
    wait_until(
        "the open transaction decoded and spilled",
        Duration::from_secs(60),
        || {
            let sent = reader.read(pid).ok().flatten().and_then(|w| w.sent);
            let now = spill_on_disk(&dir);
            let steady = now == last && now.files > 0 && sent.is_some_and(|s| s >= end);
            last = now;
            if !steady {
                std::thread::sleep(Duration::from_millis(200));
            }
            steady
        },
    );
    let disk = last;
    let w = reader.read(pid).unwrap().unwrap();
    assert_eq!(w.slot.as_ref().and_then(|s| s.spill), Some(disk), "PG{m}");
    let (restart, confirmed) = row(c);
    let s = w.slot.as_ref().unwrap();
    assert_eq!(
        (s.restart_lsn, s.confirmed_flush),
        (restart, confirmed),
        "PG{m}"
    );

    let mut t = spawn_trace_every(pid, "procfs", 200, &[]);
    t.wait_for("the spill files in a walsender record", |r| {
        walsender_records(r).iter().any(|w| {
            w.logical
                && w.slot.as_deref() == Some("wsl")
                && w.spill_files == Some(disk.files)
                && w.spill_bytes == Some(disk.bytes)
        })
    });
    tx.client.batch_execute("COMMIT").unwrap();
    wait_until("the spill files to go", Duration::from_secs(60), || {
        spill_on_disk(&dir).files == 0
    });
    // Decoding the commit first writes the changes still in memory to the files, then
    // reads them back and removes them: the peak pg_trace saw is at least what was on
    // disk before the commit.
    let t0 = Instant::now();
    let peak = loop {
        let ws = walsender_records(&t.records());
        if let Some(p) = ws
            .iter()
            .find(|w| w.spill_files == Some(0))
            .and_then(|w| w.spill_bytes_peak)
        {
            break p;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "PG{m}: no record with the spill files gone; last: {:?}",
            ws.last()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        peak >= disk.bytes,
        "PG{m}: peak {peak} < {disk:?} seen on disk"
    );
    let recs = t.finish();
    let line = recs
        .iter()
        .find_map(|r| match r {
            Record::Operation(o) if o.operation == "walsender" => Some(o.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(line.phase.as_deref(), Some("streaming"), "PG{m}");

    if m >= 14 {
        let mut stats = None;
        wait_until(
            "pg_stat_replication_slots to count the spill",
            Duration::from_secs(30),
            || {
                let r = c.psql(
                    "postgres",
                    "SELECT spill_txns, spill_count, spill_bytes FROM pg_stat_replication_slots \
                 WHERE slot_name = 'wsl'",
                );
                let v: Vec<u64> = r
                    .first()
                    .map(|r| {
                        r.iter()
                            .filter_map(|x| x.as_deref()?.parse().ok())
                            .collect()
                    })
                    .unwrap_or_default();
                stats = Some(v.clone());
                v.len() == 3 && v[2] > 0
            },
        );
        let v = stats.unwrap();
        let (txns, count, bytes) = (v[0], v[1], v[2]);
        eprintln!(
            "PG{m}: spill on disk {} files {} bytes (peak seen {peak}); pg_stat_replication_slots spill_txns {txns} spill_count {count} spill_bytes {bytes}",
            disk.files, disk.bytes
        );
        assert_eq!(txns, 1, "PG{m}: one transaction spilled");
        // The view counts each change's size in memory; a file holds each change with
        // its 8-byte length word in front (`ReorderBufferDiskChange`): a little more,
        // at most 8 bytes per row. The last changes (under 64 kB) are spilled at the
        // commit, which a sample may miss.
        let seen = peak.max(disk.bytes);
        assert!(
            seen + (64 << 10) >= bytes && seen <= bytes + 8 * ROWS,
            "PG{m}: {seen} bytes seen on disk, {bytes} counted"
        );
    } else {
        eprintln!(
            "PG{m}: spill on disk {} files {} bytes (no pg_stat_replication_slots before 14)",
            disk.files, disk.bytes
        );
    }
}

/// A standby that has fallen behind by `LAG_BYTES` of WAL and catches up over a link of
/// `LINK_BYTES_PER_S`: the walsender's ETA, taken when a quarter of the catch-up has
/// passed, must land within 15 % of the catch-up's length of the moment it caught up (the
/// first record with less than a page left to send). The WAL is written before the
/// standby connects, and nothing else writes meanwhile, so the distance only shrinks.
/// Physical, then logical (`test_decoding`, in transactions of 2,000 rows: its output is
/// about as long as the WAL, so the link paces the decoding too).
fn lagging_standby(major: u32) {
    lagging(major, false);
    lagging(major, true);
}

fn lagging(major: u32, logical: bool) {
    let kind = if logical { "logical" } else { "physical" };
    const LAG_BYTES: u64 = 28 << 20;
    const LINK_BYTES_PER_S: f64 = 3.0 * (1 << 20) as f64;
    let keep = if major >= 13 {
        ("wal_keep_size", "1GB")
    } else {
        ("wal_keep_segments", "64")
    };
    let c = Cluster::start_with(
        major,
        &[
            ("max_wal_senders", "4"),
            ("max_replication_slots", "4"),
            ("wal_level", "logical"),
            ("autovacuum", "off"),
            ("max_wal_size", "4GB"),
            ("checkpoint_timeout", "1h"),
            keep,
        ],
    );
    let lsn = |c: &Cluster| {
        parse_lsn(
            c.psql("postgres", "SELECT pg_current_wal_insert_lsn()")[0][0]
                .as_deref()
                .unwrap(),
        )
        .unwrap()
    };
    c.execute("postgres", "CREATE TABLE w (a int, b text)");
    let slot = logical.then(|| {
        c.execute(
            "postgres",
            "SELECT pg_create_logical_replication_slot('lag', 'test_decoding')",
        );
        "lag"
    });
    let from = lsn(&c);
    while lsn(&c) - from < LAG_BYTES {
        c.execute(
            "postgres",
            "INSERT INTO w SELECT g, repeat('x', 200) FROM generate_series(1, 2000) g",
        );
    }
    let _standby = Standby::start_paced(&c, from, Some(LINK_BYTES_PER_S), slot);
    let mut pid = None;
    wait_until(
        "the lagging standby's walsender",
        Duration::from_secs(30),
        || {
            pid = c
            .psql(
                "postgres",
                "SELECT pid FROM pg_stat_replication WHERE application_name = 'pg_trace_standby'",
            )
            .first()
            .and_then(|r| r[0].as_deref().and_then(|p| p.parse().ok()));
            pid.is_some()
        },
    );
    let pid = pid.unwrap();
    let mut t = spawn_trace_every(pid, "procfs", 100, &[]);
    // Less than a page: the bgwriter may log a few bytes (running transactions) meanwhile.
    let caught_up = |w: &WalSenderRecord| w.sent_behind.is_some_and(|b| b < XLOG_BLCKSZ);
    t.wait_for("the standby to catch up", |r| {
        walsender_records(r).iter().any(caught_up)
    });
    let ops: Vec<_> = t
        .finish()
        .into_iter()
        .filter_map(|r| match r {
            Record::Operation(o) if o.operation == "walsender" && o.walsender.is_some() => Some(o),
            _ => None,
        })
        .collect();
    let start = ops[0].ts;
    let end = ops
        .iter()
        .find(|o| caught_up(o.walsender.as_deref().unwrap()))
        .unwrap()
        .ts;
    let dur = end - start;
    assert!(
        dur >= 6.0,
        "PG{major} {kind}: caught up in {dur:.1}s: too quick to time (the link's pace did not hold)"
    );
    let quarter = start + dur / 4.0;
    let at = ops
        .iter()
        .find(|o| o.ts >= quarter && o.eta_s.is_some())
        .unwrap_or_else(|| panic!("PG{major} {kind}: no ETA from {quarter:.2}s on: {ops:?}"));
    assert!(
        at.ts <= start + dur * 0.35,
        "PG{major} {kind}: the first ETA from a quarter on came {:.0} % into the catch-up",
        (at.ts - start) * 100.0 / dur
    );
    let predicted = at.ts + at.eta_s.unwrap();
    let err = (predicted - end).abs() / dur;
    eprintln!(
        "PG{major}: {kind} walsender catch-up {start:.2}s..{end:.2}s ({dur:.1}s); at {:.2}s ({:?}, {:?} of {:?} bytes) ETA {:.1}s → {predicted:.2}s: error {:.1} %",
        at.ts,
        at.phase,
        at.done,
        at.total,
        at.eta_s.unwrap(),
        err * 100.0
    );
    if std::env::var("OPERATION_DEBUG").is_ok() {
        for o in &ops {
            eprintln!(
                "  {:.2} {:?} {:?}/{:?} rate {:?} eta {:?}",
                o.ts, o.phase, o.done, o.total, o.rate, o.eta_s
            );
        }
    }
    assert!(
        err <= 0.15,
        "PG{major}: the {kind} walsender's ETA at a quarter was {:.1} % of the catch-up off",
        err * 100.0
    );
}

#[test]
fn a_lagging_standby_catches_up_when_its_eta_said() {
    support::on_every_major_at_most(4, lagging_standby);
}

#[test]
fn walsenders_physical_and_logical() {
    support::on_every_major(|m| {
        let mut conf = vec![
            ("wal_level", "logical"),
            ("max_wal_senders", "4"),
            ("max_replication_slots", "4"),
        ];
        if m >= 13 {
            conf.push(("logical_decoding_work_mem", "64kB"));
        }
        let c = Cluster::start_with(m, &conf);
        physical(&c);
        logical(&c);
    });
}
