//! The operation line's file evidence: what the model saw the traced process (and its
//! parallel workers) do to files since the operation began, for the phases whose
//! counters say nothing, and to name what a `COPY` without counters writes.

use super::{OperationState, OperationView, Source, Unit, Want};
use crate::model::{FileEntry, Model, Namer, RelState};
use crate::text::human_bytes;

/// A relation last written longer ago than this is no longer the one the operation
/// writes.
const WRITING_RECENT_NS: u64 = 3_000_000_000;

impl Model {
    /// A status sample of the leader: the operation it runs, if any.
    pub(crate) fn operation_sample(&mut self, s: &crate::process::status::StatusSample, ts: u64) {
        let stmt = super::Statement::of(s);
        match super::reading(s) {
            Some(r) => match self.operation.as_mut() {
                Some(st) if st.same(&r, &stmt) => {
                    st.statement.learn(&stmt);
                    st.update(r, ts)
                }
                prev => {
                    // pg_dump's next table: the whole dump's byte clock runs on.
                    let trail = prev
                        .filter(|p| p.reading.operation == "pg_dump" && r.operation == "pg_dump")
                        .map(|p| std::mem::take(&mut p.dump_trail))
                        .unwrap_or_default();
                    let mut st = OperationState::new(r, s.database_oid, ts);
                    st.dump_trail = trail;
                    st.statement = stmt;
                    self.operation = Some(st);
                }
            },
            None => self.operation = None,
        }
        self.walsender_sample(s, ts);
    }

    /// Once per interval: name the relation, add file evidence, draw the line.
    pub(crate) fn operation_tick(&mut self, namer: &mut impl Namer) {
        if self.leader_exited() {
            // Its last sample's operation did not run on.
            self.operation = None;
            self.walsender = None;
        }
        if let Some(st) = self.operation.as_mut() {
            if let (None, Some(db), Some(oid)) = (&st.relation, st.db, st.reading.relid) {
                st.relation = namer.relation_by_oid(db, oid);
            }
            if let (None, Some(db), Some(oid), "cluster" | "vacuum full") =
                (st.indexes, st.db, st.reading.relid, st.reading.operation)
            {
                st.indexes = namer.index_count(db, oid);
            }
        }
        let Some(st) = self.operation.as_ref() else {
            // A walsender the server says streams is no base backup, whatever its
            // system calls look like (decoding reads and writes files too).
            self.operation_view = self
                .walsender
                .as_ref()
                .map(|w| w.view())
                .or_else(|| self.backup_operation());
            return;
        };
        let since = st.since_ns;
        let table = st.relation.as_ref().map(|r| r.label.clone());
        let mut detail = None;
        let mut evidence = None;
        let wal = self.wal_written(since);
        let mut dump_file = None;
        let mut dump_unplaced = false;
        let mut dump_bytes = None;
        match st.reading.want {
            Want::IndexPass => {
                if let Some(ix) = self.last_read_rel(since, |r| {
                    r.id.kind == Some("index") && table.is_some() && r.id.table == table
                }) {
                    detail = Some(format!("index {}", ix.id.label));
                    evidence = Some((
                        ix.position.unwrap_or(ix.highest),
                        ix.size,
                        Unit::Bytes,
                        Source::Files,
                    ));
                }
            }
            Want::SortTempFiles => {
                let (written, read) = self.temp_bytes(since);
                if written > 0 {
                    detail = Some(format!("sort spilled {}", human_bytes(written)));
                    evidence = Some((read, Some(written), Unit::Bytes, Source::Files));
                }
            }
            Want::CopySource => {
                if let Some(f) = self.copy_source(since) {
                    detail = Some(format!("from {}", f.named.label));
                    evidence = Some((f.highest, f.size, Unit::Bytes, Source::Files));
                }
            }
            Want::SampledTable => {
                if let Some(t) = self.scanned_table(since) {
                    detail = Some(format!("sampling {}", t.id.label));
                    evidence = Some((t.highest, t.size, Unit::Bytes, Source::Inferred));
                }
            }
            Want::Statement => {
                if let Some(t) = self.scanned_table(since) {
                    evidence = Some((
                        t.position.unwrap_or(t.highest),
                        t.size,
                        Unit::Bytes,
                        Source::Files,
                    ));
                }
                let mut words: Vec<String> = self.growing(since).into_iter().collect();
                if wal > 0 {
                    words.push(format!("WAL {} written", human_bytes(wal)));
                }
                detail = (!words.is_empty()).then(|| words.join(", "));
            }
            // Read in the index's order: where the last read fell says nothing of how far
            // it is; how many of its blocks were visited at least once is a fact.
            Want::OldHeap => {
                if let Some(t) = self.scanned_table(since) {
                    let seen = t.coverage.blocks();
                    detail = Some(match t.size {
                        Some(size) => format!(
                            "old heap: {seen} of {} blocks visited, in index order",
                            size.div_ceil(crate::model::coverage::BLOCK)
                        ),
                        None => format!("old heap: {seen} blocks visited, in index order"),
                    });
                }
            }
            Want::NewHeap => {
                let phase_since = st.phase_start.0;
                if let Some(h) = self.last_read_rel(phase_since, |r| {
                    r.id.kind != Some("index")
                        && !matches!(
                            r.id.schema.as_deref(),
                            Some("pg_catalog" | "information_schema" | "pg_toast")
                        )
                }) {
                    detail = Some(format!("reading new heap {}", h.id.label));
                    evidence = Some((
                        h.position.unwrap_or(h.highest),
                        h.size,
                        Unit::Bytes,
                        Source::Files,
                    ));
                }
            }
            Want::Dump => {
                if let (Some(db), Some(cur)) = (st.db, &st.reading.dump_table) {
                    match namer.dump_position(db, cur).filter(|_| !st.dump_unplaced) {
                        Some((done, n)) => {
                            evidence = Some((done, Some(n), Unit::Tables, Source::Inferred));
                        }
                        None => dump_unplaced = true,
                    }
                    dump_file = self
                        .relations
                        .values()
                        .filter(|r| {
                            r.bytes_read > 0
                                && r.last_ns >= since
                                && r.id.kind == Some("table")
                                && r.id.schema.as_deref() == Some(cur.0.as_str())
                                && r.id.name.as_deref() == Some(cur.1.as_str())
                        })
                        .max_by_key(|r| r.last_ns)
                        .map(|r| (r.position.unwrap_or(r.highest), r.size));
                    if let (false, Some((at, size))) =
                        (st.dump_unplaced || dump_unplaced, dump_file)
                    {
                        dump_bytes = namer
                            .dump_bytes(db, cur)
                            .map(|(before, all)| (before + size.map_or(at, |s| at.min(s)), all));
                    }
                }
            }
            Want::Nothing => {}
        }
        if detail.is_none() {
            detail = self.growing(since);
        }
        if let Some(n) = &st.reading.note {
            detail = Some(match detail {
                Some(d) => format!("{n}, {d}"),
                None => n.clone(),
            });
        }
        let named_by_files = st.reading.want == Want::CopySource;
        let written_rel = named_by_files
            .then(|| self.last_written_rel(since).map(|r| r.id.clone()))
            .flatten();
        let read_rel = matches!(st.reading.want, Want::SampledTable | Want::Statement)
            .then(|| self.scanned_table(since).map(|r| r.id.clone()))
            .flatten();
        let Some(st) = self.operation.as_mut() else {
            return;
        };
        st.dump_unplaced |= dump_unplaced;
        let now = self.last_tick_ns.unwrap_or(st.last_ts);
        let dump_eta = dump_bytes.and_then(|(done, all)| st.dump_eta(now, done, all));
        if st.relation.is_none() {
            st.relation = written_rel.or(read_rel);
        }
        // Without counters, only what the files show is said: a statement that has read
        // or written nothing yet (waiting on a lock, say) has no line.
        if let (Want::Dump, Some(cur)) = (st.reading.want, &st.reading.dump_table) {
            let mut words = Vec::new();
            if let Some(n) = st.reading.extra.tuples {
                words.push(format!("{n} tuples"));
            }
            if let Some((at, size)) = dump_file {
                words.push(match size {
                    Some(size) => format!("read {} of {}", human_bytes(at), human_bytes(size)),
                    None => format!("read {}", human_bytes(at)),
                });
            }
            if evidence.is_none() {
                // No catalog (a replay): the table is still said.
                words.insert(0, format!("COPY {}.{}", cur.0, cur.1));
            }
            detail = (!words.is_empty()).then(|| words.join(", "));
        }
        if st.reading.source != Source::Memory && evidence.is_none() && detail.is_none() {
            self.operation_view = None;
            return;
        }
        if let Some((done, total, unit, source)) = evidence {
            st.evidence(done, total, unit, source);
        }
        let mut view = st.view(detail);
        view.wal_bytes = Some(wal).filter(|&w| w > 0);
        if let Some((schema, name)) = &st.reading.dump_table {
            if view.relation.is_none() {
                view.relation = Some(format!("{schema}.{name}"));
                (view.schema, view.name) = (Some(schema.clone()), Some(name.clone()));
            }
            (view.table_read, view.table_size) =
                dump_file.map_or((None, None), |(at, size)| (Some(at), size));
            if let Some(eta) = dump_eta {
                (view.eta_s, view.eta_source) = (Some(eta), Some(Source::Files));
            }
        }
        self.operation_view = Some(view);
    }

    /// The relation matching `f` read last since `since` (by its reads: a `VACUUM`'s
    /// index done a moment ago is still written back while the next one is read).
    fn last_read_rel(&self, since: u64, f: impl Fn(&RelState) -> bool) -> Option<&RelState> {
        self.relations
            .values()
            .filter(|r| r.last_read_ns >= since && r.last_read_ns > 0 && f(r))
            .max_by_key(|r| r.last_read_ns)
    }

    /// The table a statement scans: of the user tables read since `since`, the one read
    /// most. System catalogs never: a statement's first reads on a cold cache are the
    /// catalogs it is planned from (all of `pg_proc`, say), which would otherwise show as
    /// the statement's table, 100 % done.
    fn scanned_table(&self, since: u64) -> Option<&RelState> {
        self.relations
            .values()
            .filter(|r| {
                r.bytes_read > 0
                    && r.last_ns >= since
                    && r.id.kind == Some("table")
                    && !matches!(
                        r.id.schema.as_deref(),
                        Some("pg_catalog" | "information_schema")
                    )
            })
            .max_by_key(|r| r.bytes_read)
    }

    /// The relation written last, if it was written lately: an index built earlier in
    /// the operation and read now (a `CREATE INDEX CONCURRENTLY`'s validation) is not
    /// being written.
    fn last_written_rel(&self, since: u64) -> Option<&RelState> {
        let now = self.last_tick_ns.unwrap_or(0).max(self.last_ns);
        self.relations
            .values()
            .filter(|r| {
                r.bytes_written > 0
                    && r.last_write_ns >= since
                    && r.last_write_ns.saturating_add(WRITING_RECENT_NS) >= now
            })
            .max_by_key(|r| r.last_write_ns)
    }

    fn our_files(&self, since: u64) -> impl Iterator<Item = &FileEntry> {
        self.files
            .values()
            .chain(self.closed.iter())
            .filter(move |f| !f.via_io_worker && f.last_ns >= since)
    }

    /// Temp files (a sort's runs) written and read back since `since`.
    fn temp_bytes(&self, since: u64) -> (u64, u64) {
        self.our_files(since)
            .filter(|f| f.named.class == "temp_file")
            .fold((0, 0), |(w, r), f| (w + f.bytes_written, r + f.bytes_read))
    }

    /// Bytes the leader wrote to WAL files since `since`.
    fn wal_written(&self, since: u64) -> u64 {
        self.our_files(since)
            .filter(|f| f.pid == self.leader && f.named.class == "wal")
            .map(|f| f.bytes_written)
            .sum()
    }

    /// The file a `COPY FROM` reads: outside the cluster, read by the leader, read last.
    fn copy_source(&self, since: u64) -> Option<&FileEntry> {
        self.files
            .values()
            .filter(|f| {
                f.pid == self.leader
                    && f.named.class == "other"
                    && f.named
                        .relpath
                        .as_deref()
                        .map_or(true, |r| r.starts_with('/'))
                    && f.bytes_read > 0
                    && f.last_ns >= since
            })
            .max_by_key(|f| f.last_ns)
    }

    /// The relation written last, and its size: a new index, a new heap growing.
    fn growing(&self, since: u64) -> Option<String> {
        let r = self.last_written_rel(since)?;
        Some(match r.size {
            Some(s) => format!("writing {} ({})", r.id.label, human_bytes(s)),
            None => format!("writing {}", r.id.label),
        })
    }

    /// A base backup's progress as an operation line. Its rate is the phase's, from the
    /// first tick that showed it (a throttled backup streams in bursts: an interval's rate
    /// swings around the limit).
    fn backup_operation(&self) -> Option<OperationView> {
        // A copier's low-level backup is no base backup: its own `backup` record says it.
        let b = self
            .backup
            .as_ref()
            .filter(|b| b.started() && !b.ended && b.copier.is_none())?;
        let line = crate::model::lines::BackupLine::of(b);
        // The backup record's rate and ETA: the phase's (`BackupState::tick`).
        let rate = b.phase_rate_bps();
        let eta_s = b.eta_s().map(|e| (e * 10.0).round() / 10.0);
        let source = match line.source {
            "memory" => Source::Memory,
            "files" => Source::Files,
            _ => Source::Inferred,
        };
        let phases = crate::process::progress::BASEBACKUP_PHASES.len() as u32;
        Some(OperationView {
            operation: "basebackup",
            relation: None,
            schema: None,
            name: None,
            phase: Some(line.phase.clone()),
            phase_number: u32::try_from(b.phase)
                .ok()
                .map(|p| p + 1)
                .filter(|&p| p <= phases),
            phases_total: Some(phases),
            done: Some(line.streamed),
            total: line.total,
            unit: Some(Unit::Bytes),
            percent: line.percent.map(|p| (p * 10.0).round() / 10.0),
            rate: rate.map(|r| r.round()),
            eta_s,
            phase_eta_s: eta_s,
            eta_source: eta_s.map(|_| source),
            wal_bytes: None,
            table_tuples: None,
            table_read: None,
            table_size: None,
            source,
            detail: line.file.clone(),
        })
    }
}
