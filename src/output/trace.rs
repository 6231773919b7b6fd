//! Line mode of a trace: a few lines (text) or records (NDJSON) per interval, and with
//! `-d` every syscall, enriched with the object it touched.

use crate::model::lines::{file_object, syscall_line};
use crate::model::{FileEntry, LockWaitRec, Model, QueryRec, RelState};
use crate::output::record::{
    self, AttachRecord, FileRecord, LockWaitRecord, ProgressRecord, QueryRecord, Record,
    StatsRecord, SummaryRecord, SyscallEventRecord, SyscallRecord, SyscallTag, UsdtRecord,
};
use crate::output::Format;
use crate::text::{human_bytes, human_duration, visible};
use crate::trace::usdt::UsdtStatus;
use crate::trace::{Event, Pid};
use std::io::Write;
use std::path::Path;

fn secs(model: &Model, ts: u64) -> f64 {
    ts.saturating_sub(model.first_ns.unwrap_or(ts)) as f64 / 1e9
}

pub fn file_record(model: &Model, f: &FileEntry, now: u64) -> Record {
    let r = f.named.relation.as_ref();
    Record::File(FileRecord {
        ts: secs(model, now),
        pid: f.pid,
        fd: f.fd,
        path: f.path.clone(),
        relpath: f.named.relpath.clone(),
        class: f.named.class.to_string(),
        object: f.named.label.clone(),
        schema: r.and_then(|r| r.id.schema.clone()),
        name: r.and_then(|r| r.id.name.clone()),
        kind: r.and_then(|r| r.id.kind).map(str::to_string),
        table: r.and_then(|r| r.id.table.clone()),
        fork: r.map(|r| r.fork.as_str().to_string()),
        segment: r.map(|r| r.segment),
        relation: r.map(|r| r.id.path.clone()),
        known: r.map(|r| r.id.known),
        offset: f.last_offset,
        read_since_attach: f.read_since_attach(),
        estimate: f.estimate,
        highest: f.highest,
        pos: f.pos,
        size: f.size,
        percent: f.percent(),
        bytes_read: f.bytes_read,
        bytes_written: f.bytes_written,
        reads: f.ops.reads,
        writes: f.ops.writes,
        rate_bps: f.rate_bps.round(),
        last_op: f.last_op.map(|s| s.name().to_string()),
        io_worker: f.via_io_worker,
        parallel_worker: f.via_parallel_worker,
    })
}

fn progress_fields(model: &Model, r: &RelState, now: u64) -> ProgressRecord {
    ProgressRecord {
        ts: secs(model, now),
        relation: r.id.path.clone(),
        object: r.id.label.clone(),
        schema: r.id.schema.clone(),
        name: r.id.name.clone(),
        kind: r.id.kind.map(str::to_string),
        table: r.id.table.clone(),
        known: r.id.known,
        size: r.size,
        position: r.position,
        highest: r.highest,
        percent: r.percent(),
        estimate: r.estimate,
        bytes_read: r.bytes_read,
        bytes_written: r.bytes_written,
        reads: r.reads,
        segments: r.segments.iter().copied().collect(),
        forks: r.forks.iter().map(|f| f.to_string()).collect(),
        rate_bps: r.rate_bps.round(),
        write_rate_bps: (r.bytes_written > 0).then(|| r.write_rate_bps.round()),
        eta_s: r.eta_s(),
        // USDT (0 / null without it): buffer__read__done accesses, all forks.
        blocks_hit: r.blocks_hit,
        blocks_read: r.blocks_read,
        hit_ratio: r.hit_ratio(),
        blocks_per_s: r.blocks_per_s.round(),
        last_block: r.last_block,
        coverage_blocks: r.coverage.blocks(),
        coverage: r.size.filter(|&s| s > 0).map(|s| r.coverage.fraction(s)),
        smgr_blocks_read: r.smgr_blocks_read,
        smgr_blocks_written: r.smgr_blocks_written,
        from_shared_buffers_bytes: r.from_shared_buffers_bytes(),
        rest_may_be_in_shared_buffers: r.rest_unknown,
        r#final: false,
    }
}

pub fn progress_record(model: &Model, r: &RelState, now: u64) -> Record {
    Record::Progress(progress_fields(model, r, now))
}

pub fn query_record(model: &Model, q: &QueryRec) -> Record {
    Record::Query(QueryRecord {
        ts: secs(model, q.ts_ns),
        pid: q.pid,
        phase: q.phase,
        text: q.text.clone(),
        truncated: q.truncated,
        done: q.done_ns.is_some(),
        duration_s: q.done_ns.map(|d| d.saturating_sub(q.ts_ns) as f64 / 1e9),
    })
}

pub fn lock_wait_record(model: &Model, w: &LockWaitRec) -> Record {
    let r = w.relation.as_ref();
    Record::LockWait(LockWaitRecord {
        ts: secs(model, w.start_ns),
        pid: w.pid,
        waiting: w.end_ns.is_none(),
        duration_s: w.end_ns.map(|e| e.saturating_sub(w.start_ns) as f64 / 1e9),
        mode: w.mode_name().to_string(),
        locktag_type: w.locktag_type,
        locktag: w.fields,
        object: w.object(),
        relation: r.map(|r| r.path.clone()),
        schema: r.and_then(|r| r.schema.clone()),
        name: r.and_then(|r| r.name.clone()),
        kind: r.and_then(|r| r.kind).map(str::to_string),
    })
}

/// The attach record's `usdt`: whether probes are on, and what they were expected to cost.
pub fn usdt_record(
    usdt: &UsdtStatus,
    cost: Option<crate::output::record::UsdtCostRecord>,
) -> UsdtRecord {
    UsdtRecord {
        active: usdt.active,
        reason: usdt.reason.clone(),
        probes: usdt.probes.clone(),
        cost,
    }
}

/// The first record of a trace: what it attached to and how.
pub fn attach_record(
    pid: Pid,
    title: &str,
    backend: &str,
    limitations: &[String],
    usdt: UsdtRecord,
    datadir: &Path,
    major: u32,
) -> Record {
    Record::Attach(AttachRecord {
        pid,
        title: title.to_string(),
        backend: backend.to_string(),
        limitations: limitations.to_vec(),
        usdt,
        datadir: datadir.to_string_lossy().into_owned(),
        major,
    })
}

/// The last records of a trace: every relation once more (`final`), then the summary.
pub fn summary_records(model: &Model, now: u64) -> Vec<Record> {
    let leader = model.procs.get(&model.leader);
    let mut v: Vec<Record> = model
        .relations
        .values()
        .map(|r| {
            Record::Progress(ProgressRecord {
                r#final: true,
                ..progress_fields(model, r, now)
            })
        })
        .collect();
    v.push(Record::Summary(SummaryRecord {
        pid: model.leader,
        exited: leader.is_some_and(|p| p.exited),
        exit_code: leader.and_then(|p| p.exit_code),
        exit_signal: leader.and_then(|p| p.exit_signal),
        events: model.events,
        lost: model.lost.clone(),
        relations: model.relations.len() as u64,
    }));
    v
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
    let approx = if r.estimate { "~" } else { "" };
    match (r.percent(), r.size) {
        (Some(pc), Some(size)) => {
            s.push_str(&format!(" = {approx}{pc:.1}% of {}", human_bytes(size)))
        }
        (_, Some(size)) => s.push_str(&format!(" of {}", human_bytes(size))),
        _ => {}
    }
    // Seen only through USDT, there are no bytes moved: the block rate says it.
    if r.bytes_read > 0 || (r.bytes_written == 0 && r.hit_ratio().is_none()) {
        s.push_str(&format!(", {}/s", human_bytes(r.rate_bps as u64)));
    }
    if r.bytes_written > 0 {
        s.push_str(&format!(
            ", writing {}/s",
            human_bytes(r.write_rate_bps as u64)
        ));
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
    if let Some(note) = r.shared_buffers_note() {
        s.push_str(&format!(" ({note})"));
    }
    if let Some(eta) = r.eta_s().filter(|_| r.completed_ns.is_none()) {
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
    // Files closed during the interval (every file of a process that exited) were active
    // in it too: without them the last interval of a backend that exits loses its files
    // whenever the exit is seen in the same poll as its last reads.
    let active_files: Vec<&FileEntry> = model
        .files
        .values()
        .filter(|f| first || f.last_ns > io_since || f.opened_ns > io_since)
        .chain(
            model
                .closed
                .iter()
                .filter(|f| f.last_ns > io_since || f.opened_ns > io_since),
        )
        .filter(|f| !f.via_io_worker || f.last_ns > io_since)
        .collect();
    let active_rels: Vec<&RelState> = model
        .relations
        .values()
        .filter(|r| r.last_ns > io_since || r.updated_ns > since_ns)
        .collect();
    match format {
        Format::Json => {
            for f in &active_files {
                record::write(out, &file_record(model, f, now))?;
            }
            for r in &active_rels {
                record::write(out, &progress_record(model, r, now))?;
            }
            for q in model.queries.iter().filter(|q| q.updated_ns > since_ns) {
                record::write(out, &query_record(model, q))?;
            }
            for w in model.lock_waits.iter().filter(|w| w.updated_ns > since_ns) {
                record::write(out, &lock_wait_record(model, w))?;
            }
            if let Some(v) = &model.status {
                let ts = secs(model, now);
                record::write(out, &super::status::status_record(model, v, ts))?;
            }
            if let Some(b) = model.backup.as_ref().filter(|b| b.started()) {
                record::write(out, &super::status::backup_record(b, secs(model, now)))?;
            }
            if let Some(o) = &model.operation_view {
                record::write(out, &operation_record(model, o, now))?;
            }
            record::write(out, &stats_record(model, now, eps))?;
        }
        Format::Text => {
            let lost: u64 = model.lost.values().sum();
            let t = secs(model, now);
            write!(out, "[{t:7.1}s] {} events ({eps:.0}/s)", model.events)?;
            if lost > 0 {
                write!(out, ", LOST {lost}")?;
            }
            if let Some(c) = &model.cost.now {
                write!(out, "; cost: {}", c.words())?;
            }
            out.write_all(b"\n")?;
            if let Some(v) = &model.status {
                writeln!(out, "    {}", visible(&super::status::status_line(v)))?;
            }
            for l in super::kernel_time::waits_text(model, since_ns, now) {
                writeln!(out, "  {l}")?;
            }
            if let Some(b) = model.backup.as_ref().filter(|b| b.started()) {
                writeln!(
                    out,
                    "    {}",
                    visible(&crate::model::lines::BackupLine::of(b).full())
                )?;
            }
            if let Some(o) = &model.operation_view {
                writeln!(out, "    {}", visible(&o.line()))?;
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
                writeln!(
                    out,
                    "    query (pid {}, {state}): {}",
                    q.pid,
                    visible(&text)
                )?;
            }
            for w in model.lock_waits.iter().filter(|w| w.updated_ns > since_ns) {
                writeln!(out, "    lock: {}", visible(&lock_wait_line(model, w)))?;
            }
            for r in &active_rels {
                writeln!(out, "    {}", visible(&relation_line(r)))?;
            }
            if let Some(u) = model
                .credit
                .unattributed
                .filter(|_| first || model.credit.updated_ns > io_since)
            {
                writeln!(out, "    {}", crate::model::credit::words(u))?;
            }
            // A hash join in a thousand batches has a thousand temp files open: the ones
            // touched last, then the rest in one line.
            let mut files: Vec<_> = active_files
                .iter()
                .filter(|f| f.named.relation.is_none() && f.last_ns > io_since)
                .collect();
            files.sort_by_key(|f| std::cmp::Reverse(f.last_ns));
            let rest = files.split_off(files.len().min(TEXT_FILES_SHOWN));
            for f in files {
                writeln!(
                    out,
                    "    {} (fd {}): read {}, written {}",
                    visible(&f.named.label),
                    f.fd,
                    human_bytes(f.bytes_read),
                    human_bytes(f.bytes_written)
                )?;
            }
            if !rest.is_empty() {
                let temp = rest.iter().all(|f| f.named.class == "temp_file");
                writeln!(
                    out,
                    "    and {} more {} touched in this interval: read {}, written {} in all",
                    rest.len(),
                    if temp { "temp files" } else { "files" },
                    human_bytes(rest.iter().map(|f| f.bytes_read).sum()),
                    human_bytes(rest.iter().map(|f| f.bytes_written).sum())
                )?;
            }
        }
    }
    out.flush()
}

/// Files other than relations listed one per line in a text interval; more are summed up.
const TEXT_FILES_SHOWN: usize = 8;

pub fn operation_record(
    model: &Model,
    o: &crate::model::operation::OperationView,
    now: u64,
) -> Record {
    Record::Operation(record::OperationRecord {
        ts: secs(model, now),
        pid: model.leader,
        operation: o.operation.to_string(),
        relation: o.relation.clone(),
        schema: o.schema.clone(),
        name: o.name.clone(),
        phase: o.phase.clone(),
        phase_number: o.phase_number,
        phases_total: o.phases_total,
        done: o.done,
        total: o.total,
        unit: o.unit.map(|u| u.name().to_string()),
        percent: o.percent,
        rate: o.rate,
        eta_s: o.eta_s,
        source: o.source.name().to_string(),
        walsender: model
            .walsender
            .as_ref()
            .filter(|_| o.operation == "walsender")
            .map(|w| Box::new(record::WalSenderRecord::of(&w.last, w.spill_peak))),
        phase_eta_s: o.phase_eta_s,
        eta_source: o.eta_source.map(|s| s.name().to_string()),
        wal_bytes: o.wal_bytes,
        table_tuples: o.table_tuples,
        table_read: o.table_read,
        table_size: o.table_size,
    })
}

pub fn stats_record(model: &Model, now: u64, eps: f64) -> Record {
    let cost = model.cost.now.as_ref();
    Record::Stats(StatsRecord {
        ts: secs(model, now),
        events: model.events,
        events_per_s: eps.round(),
        lost: model.lost.clone(),
        files_open: model.files.len() as u64,
        sorts: model.sorts,
        sorts_external: model.sorts_external,
        unattributed: model
            .credit
            .unattributed
            .map(|bytes_read| record::UnattributedReads {
                bytes_read,
                estimate: true,
            }),
        probe_ns_per_s: cost.and_then(|c| c.probe_ns_per_s).map(f64::round),
        probe_runs_per_s: cost.and_then(|c| c.probe_runs_per_s).map(f64::round),
        usdt_runs_per_s: cost.and_then(|c| c.usdt_runs_per_s).map(f64::round),
        // Four decimals: a hundredth of a per cent of a core.
        self_cpu: cost
            .and_then(|c| c.self_cpu)
            .map(|f| (f * 1e4).round() / 1e4),
        self_rss_bytes: cost.and_then(|c| c.self_rss_bytes),
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
        return match format {
            Format::Json => record::write(
                out,
                &Record::SyscallEvent(SyscallEventRecord {
                    event: ev.kind.clone(),
                    tag: SyscallTag::Syscall,
                    ts,
                    pid: ev.pid,
                }),
            ),
            Format::Text => {
                let v = serde_json::to_value(&ev.kind).unwrap_or(serde_json::Value::Null);
                writeln!(out, "{ts:>10.6} {} {}", ev.pid, visible(&v.to_string()))
            }
        };
    };
    match format {
        Format::Json => {
            let f = model.files.get(&(ev.pid, line.fd));
            record::write(
                out,
                &Record::Syscall(SyscallRecord {
                    ts,
                    pid: ev.pid,
                    syscall: line.name.to_string(),
                    fd: line.fd,
                    path: f.map(|f| f.path.clone()),
                    object: f.map(file_object),
                    offset: line.offset,
                    bytes: line.bytes,
                    result: line.result,
                }),
            )
        }
        Format::Text => writeln!(out, "{ts:>10.6} {} {}", ev.pid, visible(&line.text)),
    }
}
