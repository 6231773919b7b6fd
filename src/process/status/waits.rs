//! Wait events: `wait_event_info` is the class in the top byte and an event number in the
//! low bits; the numbers within a class change between majors. Names are spelled as
//! `pg_stat_activity.wait_event` spells them in each major (PG17 regenerated the names
//! from `wait_event_names.txt`, so some capitalisation changed: `AutoVacuumMain` became
//! `AutovacuumMain`). Only the events a DBA meets while watching a backup or a query are
//! tabled; any other event of a known class is shown as `<class> #<n>`.

/// Class (`wait_event_type`) by top byte.
pub fn class_name(info: u32) -> Option<&'static str> {
    Some(match info >> 24 {
        0x01 => "LWLock",
        0x03 => "Lock",
        0x04 => "BufferPin",
        0x05 => "Activity",
        0x06 => "Client",
        0x07 => "Extension",
        0x08 => "IPC",
        0x09 => "Timeout",
        0x0A => "IO",
        0x0B => "InjectionPoint",
        _ => return None,
    })
}

/// `LockTagType` names (`lock.c`'s LockTagTypeNames): the Lock class's events.
fn lock_names(major: u32) -> &'static [&'static str] {
    const L12: &[&str] = &[
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
    ];
    const L13: &[&str] = &[
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
    const L16: &[&str] = &[
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
    match major {
        12 => L12,
        13..=15 => L13,
        _ => L16,
    }
}

/// (event number, name) for the Activity class.
fn activity(major: u32) -> &'static [(u32, &'static str)] {
    match major {
        12 => &[
            (0, "ArchiverMain"),
            (1, "AutoVacuumMain"),
            (2, "BgWriterHibernate"),
            (3, "BgWriterMain"),
            (4, "CheckpointerMain"),
            (5, "LogicalApplyMain"),
            (6, "LogicalLauncherMain"),
            (7, "PgStatMain"),
            (8, "RecoveryWalAll"),
            (9, "RecoveryWalStream"),
            (10, "SysLoggerMain"),
            (11, "WalReceiverMain"),
            (12, "WalSenderMain"),
            (13, "WalWriterMain"),
        ],
        13 | 14 => &[
            (0, "ArchiverMain"),
            (1, "AutoVacuumMain"),
            (2, "BgWriterHibernate"),
            (3, "BgWriterMain"),
            (4, "CheckpointerMain"),
            (5, "LogicalApplyMain"),
            (6, "LogicalLauncherMain"),
            (7, "PgStatMain"),
            (8, "RecoveryWalStream"),
            (9, "SysLoggerMain"),
            (10, "WalReceiverMain"),
            (11, "WalSenderMain"),
            (12, "WalWriterMain"),
        ],
        15 => &[
            (0, "ArchiverMain"),
            (1, "AutoVacuumMain"),
            (2, "BgWriterHibernate"),
            (3, "BgWriterMain"),
            (4, "CheckpointerMain"),
            (5, "LogicalApplyMain"),
            (6, "LogicalLauncherMain"),
            (7, "RecoveryWalStream"),
            (8, "SysLoggerMain"),
            (9, "WalReceiverMain"),
            (10, "WalSenderMain"),
            (11, "WalWriterMain"),
        ],
        16 => &[
            (0, "ArchiverMain"),
            (1, "AutoVacuumMain"),
            (2, "BgWriterHibernate"),
            (3, "BgWriterMain"),
            (4, "CheckpointerMain"),
            (5, "LogicalApplyMain"),
            (6, "LogicalLauncherMain"),
            (7, "LogicalParallelApplyMain"),
            (8, "RecoveryWalStream"),
            (9, "SysLoggerMain"),
            (10, "WalReceiverMain"),
            (11, "WalSenderMain"),
            (12, "WalWriterMain"),
        ],
        17 => &[
            (0, "ArchiverMain"),
            (1, "AutovacuumMain"),
            (2, "BgwriterHibernate"),
            (3, "BgwriterMain"),
            (4, "CheckpointerMain"),
            (5, "LogicalApplyMain"),
            (6, "LogicalLauncherMain"),
            (7, "LogicalParallelApplyMain"),
            (8, "RecoveryWalStream"),
            (9, "ReplicationSlotsyncMain"),
            (10, "ReplicationSlotsyncShutdown"),
            (11, "SysloggerMain"),
            (12, "WalReceiverMain"),
            (13, "WalSenderMain"),
            (14, "WalSummarizerWal"),
            (15, "WalWriterMain"),
        ],
        _ => &[
            (0, "ArchiverMain"),
            (1, "AutovacuumMain"),
            (2, "BgwriterHibernate"),
            (3, "BgwriterMain"),
            (4, "CheckpointerMain"),
            (5, "CheckpointerShutdown"),
            (6, "IoWorkerMain"),
            (7, "LogicalApplyMain"),
            (8, "LogicalLauncherMain"),
            (9, "LogicalParallelApplyMain"),
            (10, "RecoveryWalStream"),
            (11, "ReplicationSlotsyncMain"),
            (12, "ReplicationSlotsyncShutdown"),
            (13, "SysloggerMain"),
            (14, "WalReceiverMain"),
            (15, "WalSenderMain"),
            (16, "WalSummarizerWal"),
            (17, "WalWriterMain"),
        ],
    }
}

fn client(_major: u32) -> &'static [(u32, &'static str)] {
    &[(0, "ClientRead"), (1, "ClientWrite")]
}

fn ipc(major: u32) -> &'static [(u32, &'static str)] {
    match major {
        12 => &[],
        13 => &[(0, "BackupWaitWalArchive")],
        14 => &[(2, "BackupWaitWalArchive")],
        _ => &[(4, "BackupWaitWalArchive")],
    }
}

fn timeout(major: u32) -> &'static [(u32, &'static str)] {
    match major {
        12..=14 => &[
            (0, "BaseBackupThrottle"),
            (1, "PgSleep"),
            (2, "RecoveryApplyDelay"),
        ],
        // CheckpointWriteDelay arrived in 15, sorted in before PgSleep.
        _ => &[
            (0, "BaseBackupThrottle"),
            (1, "CheckpointWriteDelay"),
            (2, "PgSleep"),
            (3, "RecoveryApplyDelay"),
        ],
    }
}

fn io(major: u32) -> &'static [(u32, &'static str)] {
    match major {
        12 | 13 => &[
            (0, "BufFileRead"),
            (1, "BufFileWrite"),
            (0x0D, "DataFileRead"),
            (0x40, "WALRead"),
        ],
        14 => &[
            (0, "BaseBackupRead"),
            (0x0F, "DataFileRead"),
            (0x42, "WALRead"),
        ],
        15 => &[
            (0, "BaseBackupRead"),
            (0x11, "DataFileRead"),
            (0x45, "WALRead"),
        ],
        16 => &[
            (0, "BaseBackupRead"),
            (0x11, "DataFileRead"),
            (0x46, "WALRead"),
        ],
        17 => &[
            (0, "BaseBackupRead"),
            (0x11, "DataFileRead"),
            (0x47, "WalRead"),
        ],
        _ => &[
            (0, "AioIoCompletion"),
            (1, "AioIoUringExecution"),
            (2, "AioIoUringSubmit"),
            (3, "BaseBackupRead"),
            (0x15, "DataFileRead"),
            (0x4B, "WalRead"),
        ],
    }
}

/// `(wait_event_type, wait_event)` for a raw `wait_event_info`; None when not waiting.
pub fn describe(major: u32, info: u32) -> Option<(&'static str, String)> {
    if info == 0 {
        return None;
    }
    let class = class_name(info);
    let Some(class) = class else {
        return Some(("unknown", format!("{info:#010x}")));
    };
    let ev = info & 0x00FF_FFFF;
    let named = |t: &[(u32, &'static str)]| t.iter().find(|(n, _)| *n == ev).map(|(_, s)| *s);
    let name = match class {
        "Lock" => lock_names(major).get(ev as usize).copied(),
        "BufferPin" if ev == 0 => Some("BufferPin"),
        "Extension" if ev == 0 => Some("Extension"),
        "Activity" => named(activity(major)),
        "Client" => named(client(major)),
        "IPC" => named(ipc(major)),
        "Timeout" => named(timeout(major)),
        "IO" => named(io(major)),
        _ => None,
    };
    Some((
        class,
        name.map(str::to_string)
            .unwrap_or_else(|| format!("{class} #{ev}")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_table_ids() {
        // pg-internals.md §7.3
        for (major, dfr, wal_sender_main) in [
            (12, 0x0A00000D, 0x0500000C),
            (13, 0x0A00000D, 0x0500000B),
            (14, 0x0A00000F, 0x0500000B),
            (15, 0x0A000011, 0x0500000A),
            (16, 0x0A000011, 0x0500000B),
            (17, 0x0A000011, 0x0500000D),
            (18, 0x0A000015, 0x0500000F),
        ] {
            assert_eq!(describe(major, dfr).unwrap().1, "DataFileRead", "{major}");
            assert_eq!(
                describe(major, wal_sender_main).unwrap().1,
                "WalSenderMain",
                "{major}"
            );
            assert_eq!(
                describe(major, 0x09000000).unwrap(),
                ("Timeout", "BaseBackupThrottle".to_string())
            );
        }
        assert_eq!(describe(15, 0x08000004).unwrap().1, "BackupWaitWalArchive");
        assert_eq!(describe(18, 0x0A000003).unwrap().1, "BaseBackupRead");
        assert_eq!(describe(13, 0x09000001).unwrap().1, "PgSleep");
        assert_eq!(
            describe(16, 0x03000000).unwrap(),
            ("Lock", "relation".into())
        );
        assert_eq!(describe(16, 0x03000005).unwrap().1, "transactionid");
        assert_eq!(
            describe(15, 0x01000042).unwrap(),
            ("LWLock", "LWLock #66".into())
        );
        assert_eq!(describe(15, 0).map(|d| d.0), None);
        assert_eq!(describe(15, 0xFF000000).unwrap().0, "unknown");
    }
}
