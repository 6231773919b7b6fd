//! Per-major layouts and enum tables of the backend status array (x86_64), as data.
//! Sources: `src/include/pgstat.h` (12/13), `utils/backend_status.h`,
//! `utils/backend_progress.h`, `miscadmin.h` and `storage/proc.h` (14+).

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

/// sizeof(PgBackendStatus) in `major`.
pub fn entry_size(major: u32) -> Option<usize> {
    Some(crate::version::of(major)?.backend_status_size)
}

/// `PGPROC.pid` and `PGPROC.wait_event_info` offsets.
pub fn pgproc_offsets(major: u32) -> Option<(u64, u64)> {
    let o = crate::version::of(major)?.pgproc;
    Some((o.pid, o.wait_event_info))
}

/// `BackendType` by value, spelled as `pg_stat_activity.backend_type` spells it.
pub fn backend_type_name(major: u32, v: u32) -> Option<&'static str> {
    crate::version::of(major)?.backend_type_name(v)
}

/// `BackendState` by value, spelled as `pg_stat_activity.state` spells it. None for
/// STATE_UNDEFINED (the view shows NULL).
pub fn state_name(major: u32, v: u32) -> Option<&'static str> {
    crate::version::of(major)?.state_name(v)
}

pub use crate::version::ProgressCommand;

/// `ProgressCommandType` by value.
pub fn progress_command(major: u32, v: u32) -> Option<ProgressCommand> {
    crate::version::of(major)?.progress_command(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_values_from_the_reference_table() {
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
