//! What differs between PostgreSQL majors, as data: one row per supported major, chosen
//! once from `PG_VERSION` (or the binary's version) and read by pgdata, process and trace.
//! Code asks the row (`version::of(major)?.pgproc.pid`), never compares majors itself.
//! Sources per field are named on the field; PostgreSQL's headers of each major have the layouts.

use std::ops::RangeInclusive;

/// The majors pg_trace knows: every table below has exactly one row for each.
pub const SUPPORTED: RangeInclusive<u32> = 12..=18;

/// An unknown major, as one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unsupported PostgreSQL {0} (supported: 12 to 18)")]
pub struct UnsupportedMajor(pub u32);

/// Offsets into `PGPROC` (storage/proc.h), verified live on every major.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgprocOffsets {
    pub pid: u64,
    pub wait_event_info: u64,
}

/// How the arguments of the per-block USDT probes are laid out (probes.d).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferReadArgs {
    /// Arguments of `buffer__read__done`; `found` is the last.
    pub done_nargs: u8,
    /// Index of isExtend (12–15 only: 16 dropped it).
    pub is_extend: Option<usize>,
}

/// `ProgressCommandType` (utils/backend_progress.h), as pg_trace names the views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressCommand {
    Vacuum,
    Analyze,
    Cluster,
    CreateIndex,
    BaseBackup,
    Copy,
}

impl ProgressCommand {
    /// The `pg_stat_progress_<name>` view's suffix.
    pub fn name(self) -> &'static str {
        match self {
            ProgressCommand::Vacuum => "vacuum",
            ProgressCommand::Analyze => "analyze",
            ProgressCommand::Cluster => "cluster",
            ProgressCommand::CreateIndex => "create_index",
            ProgressCommand::BaseBackup => "basebackup",
            ProgressCommand::Copy => "copy",
        }
    }

    pub fn from_name(s: &str) -> Option<ProgressCommand> {
        use ProgressCommand::*;
        [Vacuum, Analyze, Cluster, CreateIndex, BaseBackup, Copy]
            .into_iter()
            .find(|c| c.name() == s)
    }
}

/// Which `pg_class` column layout a major has (pgdata/layout.rs holds the offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgClassLayoutId {
    /// 12–17.
    V12,
    /// 18: relallfrozen added before relkind.
    V18,
}

/// Which `pg_database` column layout a major has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgDatabaseLayoutId {
    /// 12–14.
    V12,
    /// 15–16: datlocprovider, datcollversion.
    V15,
    /// 17–18: dathasloginevt.
    V17,
}

/// One major's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Major {
    pub major: u32,
    /// `PG_CONTROL_VERSION` (catalog/pg_control.h) a cluster of this major writes.
    pub pg_control_version: u32,
    pub pg_class: PgClassLayoutId,
    pub pg_database: PgDatabaseLayoutId,
    /// sizeof(PgBackendStatus): st_query_id arrived in 14, st_plan_id in 18.
    pub backend_status_size: usize,
    /// Offset of `PgBackendStatus.st_query_id` (14+, after the progress parameters;
    /// `pg_stat_activity.query_id`); None before 14.
    pub query_id_offset: Option<usize>,
    pub pgproc: PgprocOffsets,
    pub buffer_read: BufferReadArgs,
    /// `BackendType` by value, spelled as `pg_stat_activity.backend_type` spells them
    /// ("" for a value with no name).
    pub backend_types: &'static [&'static str],
    /// `BackendState` by value, as `pg_stat_activity.state` spells them.
    pub backend_states: &'static [&'static str],
    /// `ProgressCommandType` by value.
    pub progress_commands: &'static [Option<ProgressCommand>],
    /// `pg_stat_progress_vacuum`'s columns after `index_vacuum_count`: (name, param).
    pub vacuum_progress_tail: &'static [(&'static str, usize)],
    /// `pg_stat_progress_copy`'s columns after `tuples_excluded`: (name, param).
    pub copy_progress_tail: &'static [(&'static str, usize)],
    /// `LockTagType` names by value (`lock.c`'s LockTagTypeNames): the Lock class's events.
    pub lock_tags: &'static [&'static str],
    /// Wait classes with one event, named after the class (before 17 generated names).
    pub unnamed_wait_classes: &'static [&'static str],
}

/// The row of `major`, or None outside [`SUPPORTED`].
pub fn of(major: u32) -> Option<&'static Major> {
    MAJORS.iter().find(|m| m.major == major)
}

/// The row of `major`, or the one-line error for it.
pub fn require(major: u32) -> Result<&'static Major, UnsupportedMajor> {
    of(major).ok_or(UnsupportedMajor(major))
}

impl Major {
    pub fn backend_type_name(&self, v: u32) -> Option<&'static str> {
        named(self.backend_types, v)
    }

    /// None for STATE_UNDEFINED (the view shows NULL).
    pub fn state_name(&self, v: u32) -> Option<&'static str> {
        named(self.backend_states, v)
    }

    pub fn progress_command(&self, v: u32) -> Option<ProgressCommand> {
        self.progress_commands.get(v as usize).copied().flatten()
    }
}

fn named(table: &'static [&'static str], v: u32) -> Option<&'static str> {
    table.get(v as usize).copied().filter(|s| !s.is_empty())
}

const BACKEND_TYPES_12: &[&str] = &[
    "autovacuum launcher",
    "autovacuum worker",
    "client backend",
    "background worker",
    "background writer",
    "checkpointer",
    "startup",
    "walreceiver",
    "walsender",
    "walwriter",
];
const BACKEND_TYPES_13: &[&str] = &[
    "",
    "autovacuum launcher",
    "autovacuum worker",
    "client backend",
    "background worker",
    "background writer",
    "checkpointer",
    "startup",
    "walreceiver",
    "walsender",
    "walwriter",
    "archiver",
    "stats collector",
    "logger",
];
const BACKEND_TYPES_15: &[&str] = &[
    "",
    "autovacuum launcher",
    "autovacuum worker",
    "client backend",
    "background worker",
    "background writer",
    "checkpointer",
    "startup",
    "walreceiver",
    "walsender",
    "walwriter",
    "archiver",
    "logger",
];
const BACKEND_TYPES_16: &[&str] = &[
    "",
    "archiver",
    "autovacuum launcher",
    "autovacuum worker",
    "client backend",
    "background worker",
    "background writer",
    "checkpointer",
    "logger",
    "standalone backend",
    "startup",
    "walreceiver",
    "walsender",
    "walwriter",
];
const BACKEND_TYPES_17: &[&str] = &[
    "",
    "client backend",
    "autovacuum launcher",
    "autovacuum worker",
    "background worker",
    "walsender",
    "slotsync worker",
    "standalone backend",
    "archiver",
    "background writer",
    "checkpointer",
    "startup",
    "walreceiver",
    "walsummarizer",
    "walwriter",
    "logger",
];
const BACKEND_TYPES_18: &[&str] = &[
    "",
    "client backend",
    "dead-end client backend",
    "autovacuum launcher",
    "autovacuum worker",
    "background worker",
    "walsender",
    "slotsync worker",
    "standalone backend",
    "archiver",
    "background writer",
    "checkpointer",
    "io worker",
    "startup",
    "walreceiver",
    "walsummarizer",
    "walwriter",
    "logger",
];

const STATES_12: &[&str] = &[
    "",
    "idle",
    "active",
    "idle in transaction",
    "fastpath function call",
    "idle in transaction (aborted)",
    "disabled",
];
/// PG18 inserted STATE_STARTING = 1.
const STATES_18: &[&str] = &[
    "",
    "starting",
    "idle",
    "active",
    "idle in transaction",
    "fastpath function call",
    "idle in transaction (aborted)",
    "disabled",
];

use ProgressCommand::*;
const PROGRESS_12: &[Option<ProgressCommand>] =
    &[None, Some(Vacuum), Some(Cluster), Some(CreateIndex)];
const PROGRESS_13: &[Option<ProgressCommand>] = &[
    None,
    Some(Vacuum),
    Some(Analyze),
    Some(Cluster),
    Some(CreateIndex),
    Some(BaseBackup),
];
const PROGRESS_14: &[Option<ProgressCommand>] = &[
    None,
    Some(Vacuum),
    Some(Analyze),
    Some(Cluster),
    Some(CreateIndex),
    Some(BaseBackup),
    Some(Copy),
];

const VACUUM_TAIL_12: &[(&str, usize)] = &[("max_dead_tuples", 5), ("num_dead_tuples", 6)];
/// 17 counts dead items in bytes (TidStore) and added the index counters.
const VACUUM_TAIL_17: &[(&str, usize)] = &[
    ("max_dead_tuple_bytes", 5),
    ("dead_tuple_bytes", 6),
    ("num_dead_item_ids", 7),
    ("indexes_total", 8),
    ("indexes_processed", 9),
];
const COPY_TAIL_17: &[(&str, usize)] = &[("tuples_skipped", 7)];

const BUFFER_READ_12: BufferReadArgs = BufferReadArgs {
    done_nargs: 8,
    is_extend: Some(6),
};
const BUFFER_READ_16: BufferReadArgs = BufferReadArgs {
    done_nargs: 7,
    is_extend: None,
};

const PG12: Major = Major {
    major: 12,
    pg_control_version: 1201,
    pg_class: PgClassLayoutId::V12,
    pg_database: PgDatabaseLayoutId::V12,
    backend_status_size: 424,
    query_id_offset: None,
    pgproc: PgprocOffsets {
        pid: 52,
        wait_event_info: 676,
    },
    buffer_read: BUFFER_READ_12,
    backend_types: BACKEND_TYPES_12,
    backend_states: STATES_12,
    progress_commands: PROGRESS_12,
    vacuum_progress_tail: VACUUM_TAIL_12,
    copy_progress_tail: &[],
    lock_tags: LOCK_TAGS_12,
    unnamed_wait_classes: &["BufferPin", "Extension"],
};
const PG13: Major = Major {
    major: 13,
    pg_control_version: 1300,
    lock_tags: LOCK_TAGS_13,
    backend_types: BACKEND_TYPES_13,
    progress_commands: PROGRESS_13,
    pgproc: PgprocOffsets {
        pid: 52,
        wait_event_info: 684,
    },
    ..PG12
};
const PG14: Major = Major {
    major: 14,
    backend_status_size: 432,
    query_id_offset: Some(424),
    progress_commands: PROGRESS_14,
    pgproc: PgprocOffsets {
        pid: 64,
        wait_event_info: 712,
    },
    ..PG13
};
const PG15: Major = Major {
    major: 15,
    pg_database: PgDatabaseLayoutId::V15,
    backend_types: BACKEND_TYPES_15,
    ..PG14
};
const PG16: Major = Major {
    major: 16,
    backend_types: BACKEND_TYPES_16,
    lock_tags: LOCK_TAGS_16,
    buffer_read: BUFFER_READ_16,
    ..PG15
};
const PG17: Major = Major {
    major: 17,
    pg_control_version: 1700,
    unnamed_wait_classes: &[],
    pg_database: PgDatabaseLayoutId::V17,
    backend_types: BACKEND_TYPES_17,
    pgproc: PgprocOffsets {
        pid: 60,
        wait_event_info: 712,
    },
    vacuum_progress_tail: VACUUM_TAIL_17,
    copy_progress_tail: COPY_TAIL_17,
    ..PG16
};
const PG18: Major = Major {
    major: 18,
    pg_control_version: 1800,
    pg_class: PgClassLayoutId::V18,
    backend_status_size: 440,
    backend_types: BACKEND_TYPES_18,
    backend_states: STATES_18,
    ..PG17
};

/// `LockTagType` names. 12 got LOCKTAG_DATABASE_FROZEN_IDS in a minor release, appended
/// to keep the numbers (13 has it in third place); seen in 12.22's LockTagTypeNames.
pub const LOCK_TAGS_12: &[&str] = &[
    "relation",
    "extend",
    "page",
    "tuple",
    "transactionid",
    "virtualxid",
    "speculative token",
    "object",
    "userlock",
    "advisory",
    "frozenid",
];
pub const LOCK_TAGS_13: &[&str] = &[
    "relation",
    "extend",
    "frozenid",
    "page",
    "tuple",
    "transactionid",
    "virtualxid",
    "spectoken",
    "object",
    "userlock",
    "advisory",
];
pub const LOCK_TAGS_16: &[&str] = &[
    "relation",
    "extend",
    "frozenid",
    "page",
    "tuple",
    "transactionid",
    "virtualxid",
    "spectoken",
    "object",
    "userlock",
    "advisory",
    "applytransaction",
];

const MAJORS: &[Major] = &[PG12, PG13, PG14, PG15, PG16, PG17, PG18];

/// The newest supported major's row.
pub const NEWEST: &Major = &PG18;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_supported_major_in_order() {
        let majors: Vec<u32> = MAJORS.iter().map(|m| m.major).collect();
        assert_eq!(majors, SUPPORTED.collect::<Vec<_>>());
        assert_eq!(NEWEST.major, *SUPPORTED.end());
        assert!(of(11).is_none() && of(19).is_none());
        assert_eq!(
            require(19).unwrap_err().to_string(),
            "unsupported PostgreSQL 19 (supported: 12 to 18)"
        );
    }

    #[test]
    fn rows_from_the_reference_tables() {
        // client backend / walsender per major (backend_status.h, miscadmin.h).
        for (major, client, walsender) in [
            (12, 2, 8),
            (13, 3, 9),
            (14, 3, 9),
            (15, 3, 9),
            (16, 4, 12),
            (17, 1, 5),
            (18, 1, 6),
        ] {
            let m = of(major).unwrap();
            assert_eq!(m.backend_type_name(client), Some("client backend"));
            assert_eq!(m.backend_type_name(walsender), Some("walsender"));
        }
        let m = |v| of(v).unwrap();
        assert_eq!(m(18).backend_type_name(12), Some("io worker"));
        assert_eq!(m(13).backend_type_name(0), None);
        assert_eq!(m(17).state_name(2), Some("active"));
        assert_eq!(m(18).state_name(3), Some("active"));
        assert_eq!(m(15).state_name(0), None);
        assert_eq!(m(12).progress_command(3), Some(CreateIndex));
        assert_eq!(m(15).progress_command(5), Some(BaseBackup));
        assert_eq!(m(13).progress_command(6), None);
        assert_eq!(m(14).progress_command(6), Some(Copy));
        assert_eq!(m(14).progress_command(99), None);
        let sizes: Vec<usize> = MAJORS.iter().map(|m| m.backend_status_size).collect();
        assert_eq!(sizes, [424, 424, 432, 432, 432, 432, 440]);
        let pgproc: Vec<(u64, u64)> = MAJORS
            .iter()
            .map(|m| (m.pgproc.pid, m.pgproc.wait_event_info))
            .collect();
        assert_eq!(
            pgproc,
            [
                (52, 676),
                (52, 684),
                (64, 712),
                (64, 712),
                (64, 712),
                (60, 712),
                (60, 712)
            ]
        );
        let nargs: Vec<u8> = MAJORS.iter().map(|m| m.buffer_read.done_nargs).collect();
        assert_eq!(nargs, [8, 8, 8, 8, 7, 7, 7]);
        let control: Vec<u32> = MAJORS.iter().map(|m| m.pg_control_version).collect();
        assert_eq!(control, [1201, 1300, 1300, 1300, 1300, 1700, 1800]);
        assert!(m(16).copy_progress_tail.is_empty());
        assert_eq!(m(17).vacuum_progress_tail.len(), 5);
    }
}
