//! Every NDJSON record pg_trace writes, as one serde type: what a script reads is exactly
//! what these structs say. `docs/json.md` documents each record and field, and
//! `tests/json_doc.rs` fails when the two disagree.
//!
//! Field order is declaration order, and a field is absent only where a
//! `skip_serializing_if` says so: both are part of the contract, so keep them.

mod catalog;
mod operation;
mod probes;
mod server_backup;
mod status;
mod trace;
mod waits;

pub use catalog::{
    PathClassRecord, PathRecord, RelFileRecord, RelationRecord, TempFileRecord, WalRecord,
};
pub use operation::{OperationRecord, WalSenderRecord};
pub use probes::{ProbeRecord, ProbesRecord};
pub use server_backup::{ArchiveRecord, LowLevelBackupRecord};
pub use status::{
    BackupRecord, CopierProcess, ProcessRecord, ProgressRow, ServerBackupRecord, StatusRecord,
    TablespaceRow,
};
pub use trace::{
    AttachRecord, FileRecord, LockWaitRecord, ProgressRecord, QueryRecord, StatsRecord,
    SummaryRecord, SyscallEventRecord, SyscallRecord, SyscallTag, UnattributedReads,
    UsdtCostRecord, UsdtRecord,
};
pub use waits::{ExactWait, IoLatencyRow, QueryWaits, WaitShare, WaitsRecord};

use serde::{Deserialize, Serialize};
use std::io::{self, Write};

/// One line of NDJSON output; `type` names the variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// `pg_trace catalog`: one relation file.
    Relation(RelationRecord),
    /// `pg_trace resolve`: what one path is.
    Path(PathRecord),
    /// A trace: first, how it attached.
    Attach(AttachRecord),
    /// A trace: one open file, per interval.
    File(FileRecord),
    /// A trace: one relation read or written, per interval (and once more at the end).
    Progress(ProgressRecord),
    Query(QueryRecord),
    LockWait(LockWaitRecord),
    Stats(StatsRecord),
    /// `-d`: one I/O system call, its fd named.
    Syscall(SyscallRecord),
    Status(StatusRecord),
    Backup(BackupRecord),
    Summary(SummaryRecord),
    /// A trace: where the time went (wait profile, scheduler, I/O latency), per interval
    /// and since attach.
    Waits(WaitsRecord),
    /// A trace: the traced process's long operation (phase, progress, ETA), per interval.
    Operation(OperationRecord),
    /// `pg_trace ps`: one process.
    Process(ProcessRecord),
    /// `pg_trace ps`: a low-level backup running on the server.
    ServerBackup(LowLevelBackupRecord),
    /// `pg_trace probes`: one USDT probe name.
    Probe(ProbeRecord),
    /// `pg_trace probes`: the closing count.
    Probes(ProbesRecord),
    /// `-d`: any other event, as its own fields followed by `type` ("syscall"), `ts`, `pid`
    /// (untagged because its `type` comes last).
    #[serde(untagged)]
    SyscallEvent(SyscallEventRecord),
}

impl Record {
    /// The `type` field as written.
    pub fn type_name(&self) -> &'static str {
        match self {
            Record::Relation(_) => "relation",
            Record::Path(_) => "path",
            Record::Attach(_) => "attach",
            Record::File(_) => "file",
            Record::Progress(_) => "progress",
            Record::Query(_) => "query",
            Record::LockWait(_) => "lock_wait",
            Record::Stats(_) => "stats",
            Record::Syscall(_) | Record::SyscallEvent(_) => "syscall",
            Record::Status(_) => "status",
            Record::Backup(_) => "backup",
            Record::Summary(_) => "summary",
            Record::Waits(_) => "waits",
            Record::Operation(_) => "operation",
            Record::Process(_) => "process",
            Record::ServerBackup(_) => "server_backup",
            Record::Probe(_) => "probe",
            Record::Probes(_) => "probes",
        }
    }
}

/// One record and its newline.
pub fn write(out: &mut impl Write, r: &Record) -> io::Result<()> {
    serde_json::to_writer(&mut *out, r)?;
    out.write_all(b"\n")
}
