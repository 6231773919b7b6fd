//! Per-major layouts and enum tables of the backend status array (x86_64), as data.
//! Sources: `src/include/pgstat.h` (12/13), `utils/backend_status.h`,
//! `utils/backend_progress.h`, `miscadmin.h` and `storage/proc.h` (14+); see
//! pg-internals.md §7.

/// `PgBackendStatus` field offsets; identical in 12–18 except for the size.
pub const OFF_CHANGECOUNT: usize = 0;
pub const OFF_PROCPID: usize = 4;
pub const OFF_BACKEND_TYPE: usize = 8;
pub const OFF_PROC_START: usize = 16;
pub const OFF_XACT_START: usize = 24;
pub const OFF_ACTIVITY_START: usize = 32;
pub const OFF_STATE_START: usize = 40;
pub const OFF_DATABASE: usize = 48;
pub const OFF_USER: usize = 52;
pub const OFF_STATE: usize = 232;
pub const OFF_APPNAME: usize = 240;
pub const OFF_ACTIVITY_RAW: usize = 248;
pub const OFF_PROGRESS_COMMAND: usize = 256;
pub const OFF_PROGRESS_TARGET: usize = 260;
pub const OFF_PROGRESS_PARAM: usize = 264;
/// PGSTAT_NUM_PROGRESS_PARAM, 20 in every supported major.
pub const NUM_PROGRESS_PARAM: usize = 20;

pub const MIN_MAJOR: u32 = 12;
pub const MAX_MAJOR: u32 = 18;

/// sizeof(PgBackendStatus): st_query_id arrived in 14, st_plan_id in 18.
pub fn entry_size(major: u32) -> Option<usize> {
    Some(match major {
        12 | 13 => 424,
        14..=17 => 432,
        18 => 440,
        _ => return None,
    })
}

/// `PGPROC.pid` and `PGPROC.wait_event_info` offsets (verified live on every major).
pub fn pgproc_offsets(major: u32) -> Option<(u64, u64)> {
    Some(match major {
        12 => (52, 676),
        13 => (52, 684),
        14..=16 => (64, 712),
        17 | 18 => (60, 712),
        _ => return None,
    })
}

/// `BackendType` by value, spelled as `pg_stat_activity.backend_type` spells it.
pub fn backend_type_name(major: u32, v: u32) -> Option<&'static str> {
    const T12: &[&str] = &[
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
    const T13: &[&str] = &[
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
    const T15: &[&str] = &[
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
    const T16: &[&str] = &[
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
    const T17: &[&str] = &[
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
    const T18: &[&str] = &[
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
    let t = match major {
        12 => T12,
        13 | 14 => T13,
        15 => T15,
        16 => T16,
        17 => T17,
        18 => T18,
        _ => return None,
    };
    t.get(v as usize).copied().filter(|s| !s.is_empty())
}

/// `BackendState` by value, spelled as `pg_stat_activity.state` spells it. None for
/// STATE_UNDEFINED (the view shows NULL).
pub fn state_name(major: u32, v: u32) -> Option<&'static str> {
    const S: &[&str] = &[
        "",
        "idle",
        "active",
        "idle in transaction",
        "fastpath function call",
        "idle in transaction (aborted)",
        "disabled",
    ];
    // PG18 inserted STATE_STARTING = 1.
    const S18: &[&str] = &[
        "",
        "starting",
        "idle",
        "active",
        "idle in transaction",
        "fastpath function call",
        "idle in transaction (aborted)",
        "disabled",
    ];
    let t = if major >= 18 { S18 } else { S };
    t.get(v as usize).copied().filter(|s| !s.is_empty())
}

/// `ProgressCommandType`.
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

pub fn progress_command(major: u32, v: u32) -> Option<ProgressCommand> {
    use ProgressCommand::*;
    match (major, v) {
        (_, 1) => Some(Vacuum),
        (12, 2) => Some(Cluster),
        (12, 3) => Some(CreateIndex),
        (13.., 2) => Some(Analyze),
        (13.., 3) => Some(Cluster),
        (13.., 4) => Some(CreateIndex),
        (13.., 5) => Some(BaseBackup),
        (14.., 6) => Some(Copy),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_values_from_the_reference_table() {
        // client backend / walsender per major (pg-internals.md §7.1).
        for (major, client, walsender) in [
            (12, 2, 8),
            (13, 3, 9),
            (14, 3, 9),
            (15, 3, 9),
            (16, 4, 12),
            (17, 1, 5),
            (18, 1, 6),
        ] {
            assert_eq!(backend_type_name(major, client), Some("client backend"));
            assert_eq!(backend_type_name(major, walsender), Some("walsender"));
        }
        assert_eq!(backend_type_name(18, 12), Some("io worker"));
        assert_eq!(backend_type_name(17, 10), Some("checkpointer"));
        assert_eq!(backend_type_name(13, 0), None);
        assert_eq!(backend_type_name(15, 999), None);
        assert_eq!(state_name(17, 2), Some("active"));
        assert_eq!(state_name(18, 3), Some("active"));
        assert_eq!(state_name(18, 4), Some("idle in transaction"));
        assert_eq!(state_name(15, 0), None);
        assert_eq!(progress_command(12, 3), Some(ProgressCommand::CreateIndex));
        assert_eq!(progress_command(15, 5), Some(ProgressCommand::BaseBackup));
        assert_eq!(progress_command(13, 6), None);
        assert_eq!(entry_size(11), None);
    }
}
