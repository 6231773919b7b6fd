//! Line mode of a trace: a few lines (text) or records (NDJSON) per interval, and with
//! `-d` every syscall, enriched with the object it touched.

use crate::model::{FileEntry, LockWaitRec, Model, QueryRec, RelState};
use crate::output::Format;
use crate::text::{human_bytes, human_duration};
use crate::trace::{Event, EventKind};
use serde_json::{json, Value};
use std::io::Write;

fn secs(model: &Model, ts: u64) -> f64 {
    ts.saturating_sub(model.first_ns.unwrap_or(ts)) as f64 / 1e9
}

/// `sales.orders.3`, `sales.orders_fsm`: the object with its fork and segment suffixes.
pub fn file_object(f: &FileEntry) -> String {
    match &f.named.relation {
        Some(r) => {
            let mut s = r.id.label.clone();
            if r.fork != crate::pgdata::relfile::Fork::Main {
                s.push('_');
                s.push_str(r.fork.as_str());
            }
            if r.segment > 0 {
                s.push_str(&format!(".{}", r.segment));
            }
            s
        }
        None => f.named.label.clone(),
    }
}

pub fn file_record(model: &Model, f: &FileEntry, now: u64) -> Value {
    let r = f.named.relation.as_ref();
    json!({
        "type": "file",
        "ts": secs(model, now),
        "pid": f.pid,
        "fd": f.fd,
        "path": f.path,
        "relpath": f.named.relpath,
        "class": f.named.class,
        "object": f.named.label,
        "schema": r.and_then(|r| r.id.schema.clone()),
        "name": r.and_then(|r| r.id.name.clone()),
        "kind": r.and_then(|r| r.id.kind),
        "table": r.and_then(|r| r.id.table.clone()),
        "fork": r.map(|r| r.fork.as_str()),
        "segment": r.map(|r| r.segment),
        "relation": r.map(|r| r.id.path.clone()),
        "known": r.map(|r| r.id.known),
        "offset": f.last_offset,
        "highest": f.highest,
        "pos": f.pos,
        "size": f.size,
        "percent": f.percent(),
        "bytes_read": f.bytes_read,
        "bytes_written": f.bytes_written,
        "reads": f.ops.reads,
        "writes": f.ops.writes,
        "rate_bps": f.rate_bps.round(),
        "last_op": f.last_op.map(|s| s.name()),
        "io_worker": f.via_io_worker,
        "parallel_worker": f.via_parallel_worker,
    })
}

pub fn progress_record(model: &Model, r: &RelState, now: u64) -> Value {
    json!({
        "type": "progress",
        "ts": secs(model, now),
        "relation": r.id.path,
        "object": r.id.label,
        "schema": r.id.schema,
        "name": r.id.name,
        "kind": r.id.kind,
        "table": r.id.table,
        "known": r.id.known,
        "size": r.size,
        "position": r.position,
        "highest": r.highest,
        "percent": r.percent(),
        "bytes_read": r.bytes_read,
        "bytes_written": r.bytes_written,
        "reads": r.reads,
        "segments": r.segments,
        "forks": r.forks,
        "rate_bps": r.rate_bps.round(),
        "eta_s": r.eta_s(),
        // USDT (0 / null without it): buffer__read__done accesses, all forks.
        "blocks_hit": r.blocks_hit,
        "blocks_read": r.blocks_read,
        "hit_ratio": r.hit_ratio(),
        "blocks_per_s": r.blocks_per_s.round(),
        "last_block": r.last_block,
        "coverage_blocks": r.coverage.blocks(),
        "coverage": r.size.filter(|&s| s > 0).map(|s| r.coverage.fraction(s)),
        "smgr_blocks_read": r.smgr_blocks_read,
        "smgr_blocks_written": r.smgr_blocks_written,
    })
}

pub fn query_record(model: &Model, q: &QueryRec) -> Value {
    json!({
        "type": "query",
        "ts": secs(model, q.ts_ns),
        "pid": q.pid,
        "phase": q.phase,
        "text": q.text,
        "truncated": q.truncated,
        "done": q.done_ns.is_some(),
        "duration_s": q.done_ns.map(|d| d.saturating_sub(q.ts_ns) as f64 / 1e9),
    })
}

pub fn lock_wait_record(model: &Model, w: &LockWaitRec) -> Value {
    let r = w.relation.as_ref();
    json!({
        "type": "lock_wait",
        "ts": secs(model, w.start_ns),
        "pid": w.pid,
        "waiting": w.end_ns.is_none(),
        "duration_s": w.end_ns.map(|e| e.saturating_sub(w.start_ns) as f64 / 1e9),
        "mode": w.mode_name(),
        "locktag_type": w.locktag_type,
        "locktag": w.fields,
        "object": w.object(),
        "relation": r.map(|r| r.path.clone()),
        "schema": r.and_then(|r| r.schema.clone()),
        "name": r.and_then(|r| r.name.clone()),
        "kind": r.and_then(|r| r.kind),
    })
}

fn lock_wait_line(model: &Model, w: &LockWaitRec) -> String {
    match w.end_ns {
        None => format!(
            "pid {} WAITS for {} on {} (since {:.1}s)",
            w.pid,
            w.mode_name(),
            w.object(),
            secs(model, w.start_ns)
        ),
        Some(e) => format!(
            "pid {} waited {:.3}s for {} on {}",
            w.pid,
            e.saturating_sub(w.start_ns) as f64 / 1e9,
            w.mode_name(),
            w.object()
        ),
    }
}

fn relation_line(r: &RelState) -> String {
    let mut s = format!("{} ({})", r.id.label, r.id.kind.unwrap_or("relation"));
    if let Some(seg) = r.segments.last() {
        s.push_str(&format!(" seg {seg}"));
    }
    if let Some(p) = r.position {
        s.push_str(&format!(" at {}", human_bytes(p)));
    }
    match (r.percent(), r.size) {
        (Some(pc), Some(size)) => s.push_str(&format!(" = {pc:.1}% of {}", human_bytes(size))),
        (_, Some(size)) => s.push_str(&format!(" of {}", human_bytes(size))),
        _ => {}
    }
    // Seen only through USDT, there are no bytes moved: the block rate says it.
    if r.bytes_read + r.bytes_written > 0 || r.hit_ratio().is_none() {
        s.push_str(&format!(", {}/s", human_bytes(r.rate_bps as u64)));
    }
    if let Some(h) = r.hit_ratio() {
        s.push_str(&format!(
            ", {:.0} blk/s, {} blocks ({:.1}% hit)",
            r.blocks_per_s,
            r.blocks_hit + r.blocks_read,
            h * 100.0
        ));
        if let Some(b) = r.last_block {
            s.push_str(&format!(", block {b}"));
        }
    }
    if let Some(eta) = r.eta_s() {
        s.push_str(&format!(", ETA {}", human_duration(eta)));
    }
    s
}

/// More than one clock tick (4 ms at HZ=250, 10 ms at HZ=100).
const CLOCK_SLACK_NS: u64 = 20_000_000;

/// What changed since `since_ns`: per-interval output.
pub fn write_interval(
    out: &mut impl Write,
    model: &Model,
    since_ns: u64,
    now: u64,
    eps: f64,
    format: Format,
    first: bool,
) -> std::io::Result<()> {
    // pread64 events carry clock-tick timestamps (eBPF), which can fall a tick before the
    // previous interval's end although they arrived after it: look back a little further,
    // or the last reads before a stop are never reported (at worst a file is reported
    // twice).
    let io_since = since_ns.saturating_sub(CLOCK_SLACK_NS);
    let active_files: Vec<&FileEntry> = model
        .files
        .values()
        .filter(|f| first || f.last_ns > io_since || f.opened_ns > io_since)
        .filter(|f| !f.via_io_worker || f.last_ns > io_since)
        .collect();
    let active_rels: Vec<&RelState> = model
        .relations
        .values()
        .filter(|r| r.last_ns > io_since)
        .collect();
    match format {
        Format::Json => {
            for f in &active_files {
                serde_json::to_writer(&mut *out, &file_record(model, f, now))?;
                out.write_all(b"\n")?;
            }
            for r in &active_rels {
                serde_json::to_writer(&mut *out, &progress_record(model, r, now))?;
                out.write_all(b"\n")?;
            }
            for q in model.queries.iter().filter(|q| q.updated_ns > since_ns) {
                serde_json::to_writer(&mut *out, &query_record(model, q))?;
                out.write_all(b"\n")?;
            }
            for w in model.lock_waits.iter().filter(|w| w.updated_ns > since_ns) {
                serde_json::to_writer(&mut *out, &lock_wait_record(model, w))?;
                out.write_all(b"\n")?;
            }
            if let Some(v) = &model.status {
                let rec = super::status::status_record(model, v, secs(model, now));
                serde_json::to_writer(&mut *out, &rec)?;
                out.write_all(b"\n")?;
            }
            if let Some(b) = model.backup.as_ref().filter(|b| b.started()) {
                serde_json::to_writer(
                    &mut *out,
                    &super::status::backup_record(b, secs(model, now)),
                )?;
                out.write_all(b"\n")?;
            }
            serde_json::to_writer(&mut *out, &stats_record(model, now, eps))?;
            out.write_all(b"\n")?;
        }
        Format::Text => {
            let lost: u64 = model.lost.values().sum();
            let t = secs(model, now);
            write!(out, "[{t:7.1}s] {} events ({eps:.0}/s)", model.events)?;
            if lost > 0 {
                write!(out, ", LOST {lost}")?;
            }
            out.write_all(b"\n")?;
            if let Some(v) = &model.status {
                writeln!(out, "    {}", super::status::status_line(v))?;
            }
            if let Some(b) = model.backup.as_ref().filter(|b| b.started()) {
                writeln!(out, "    {}", super::status::backup_line(b))?;
            }
            for q in model.queries.iter().filter(|q| q.updated_ns > since_ns) {
                let state = if q.done_ns.is_some() {
                    "done"
                } else {
                    "running"
                };
                let text: String = q
                    .text
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                writeln!(out, "    query (pid {}, {state}): {text}", q.pid)?;
            }
            for w in model.lock_waits.iter().filter(|w| w.updated_ns > since_ns) {
                writeln!(out, "    lock: {}", lock_wait_line(model, w))?;
            }
            for r in &active_rels {
                writeln!(out, "    {}", relation_line(r))?;
            }
            for f in active_files
                .iter()
                .filter(|f| f.named.relation.is_none() && f.last_ns > io_since)
            {
                writeln!(
                    out,
                    "    {} (fd {}): read {}, written {}",
                    f.named.label,
                    f.fd,
                    human_bytes(f.bytes_read),
                    human_bytes(f.bytes_written)
                )?;
            }
        }
    }
    out.flush()
}

pub fn stats_record(model: &Model, now: u64, eps: f64) -> Value {
    json!({
        "type": "stats",
        "ts": secs(model, now),
        "events": model.events,
        "events_per_s": eps.round(),
        "lost": model.lost,
        "files_open": model.files.len(),
        "sorts": model.sorts,
        "sorts_external": model.sorts_external,
    })
}

/// One decoded I/O syscall, ready to print.
struct SyscallLine {
    name: &'static str,
    fd: i32,
    text: String,
    offset: Option<u64>,
    bytes: Option<u64>,
    result: Option<i64>,
}

fn syscall_line(model: &Model, ev: &Event) -> Option<SyscallLine> {
    let obj = |fd: i32| {
        model
            .files
            .get(&(ev.pid, fd))
            .map(file_object)
            .unwrap_or_else(|| "?".into())
    };
    Some(match &ev.kind {
        EventKind::Open {
            syscall,
            path,
            fd,
            flags,
            ..
        } => SyscallLine {
            name: syscall.name(),
            fd: *fd,
            text: format!(
                "{}(\"{path}\" → {}, flags={flags:#o}) = {fd}",
                syscall.name(),
                obj(*fd)
            ),
            offset: None,
            bytes: None,
            result: Some(i64::from(*fd)),
        },
        EventKind::Close { fd } => SyscallLine {
            name: "close",
            fd: *fd,
            text: format!("close(fd={fd} → {})", obj(*fd)),
            offset: None,
            bytes: None,
            result: None,
        },
        EventKind::Read {
            syscall,
            fd,
            offset,
            requested,
            result,
        }
        | EventKind::Write {
            syscall,
            fd,
            offset,
            requested,
            result,
        } => {
            let at = offset.map(|o| format!(" @ {o}")).unwrap_or_default();
            SyscallLine {
                name: syscall.name(),
                fd: *fd,
                text: format!(
                    "{}(fd={fd} → {}, {requested}{at}) = {result}",
                    syscall.name(),
                    obj(*fd)
                ),
                offset: *offset,
                bytes: Some(*requested),
                result: Some(*result),
            }
        }
        EventKind::Seek {
            fd,
            offset,
            whence,
            result,
        } => {
            let whence = match *whence {
                0 => "SEEK_SET",
                1 => "SEEK_CUR",
                2 => "SEEK_END",
                _ => "?",
            };
            SyscallLine {
                name: "lseek",
                fd: *fd,
                text: format!(
                    "lseek(fd={fd} → {}, {offset}, {whence}) = {result}",
                    obj(*fd)
                ),
                offset: u64::try_from(*offset).ok(),
                bytes: None,
                result: Some(*result),
            }
        }
        _ => return None,
    })
}

/// The original `-d`: one line per syscall, e.g.
/// `pread64(fd=23 → sales.orders.3, 8192 @ 1073733632) = 8192`.
pub fn write_syscall(
    out: &mut impl Write,
    model: &Model,
    ev: &Event,
    format: Format,
) -> std::io::Result<()> {
    let ts = secs(model, ev.ts_ns);
    let Some(line) = syscall_line(model, ev) else {
        // Everything else (stat, getdents64, send, exit...) as its event record.
        let mut v = serde_json::to_value(&ev.kind).unwrap_or(Value::Null);
        return match format {
            Format::Json => {
                if let Value::Object(m) = &mut v {
                    m.insert("type".into(), json!("syscall"));
                    m.insert("ts".into(), json!(ts));
                    m.insert("pid".into(), json!(ev.pid));
                }
                serde_json::to_writer(&mut *out, &v)?;
                out.write_all(b"\n")
            }
            Format::Text => writeln!(out, "{ts:>10.6} {} {v}", ev.pid),
        };
    };
    match format {
        Format::Json => {
            let f = model.files.get(&(ev.pid, line.fd));
            let v = json!({
                "type": "syscall",
                "ts": ts,
                "pid": ev.pid,
                "syscall": line.name,
                "fd": line.fd,
                "path": f.map(|f| f.path.clone()),
                "object": f.map(file_object),
                "offset": line.offset,
                "bytes": line.bytes,
                "result": line.result,
            });
            serde_json::to_writer(&mut *out, &v)?;
            out.write_all(b"\n")
        }
        Format::Text => writeln!(out, "{ts:>10.6} {} {}", ev.pid, line.text),
    }
}
