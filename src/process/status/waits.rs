//! Wait events: `wait_event_info` is the class in the top byte and an event number in the
//! low bits; the numbers within a class change between majors. Names are spelled as
//! `pg_stat_activity.wait_event` spells them in each major (PG17 regenerated the names
//! from `wait_event_names.txt`, so some capitalisation changed: `AutoVacuumMain` became
//! `AutovacuumMain`). The statically numbered classes are tabled in full in
//! `wait_names`; an event past the end of a table (one a later minor appended, or an
//! extension's own) is shown as `<class> #<n>`.

use super::wait_names;

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
    let row = crate::version::of(major);
    let name = match class {
        "Lock" => row.and_then(|r| r.lock_tags.get(ev as usize)).copied(),
        // Up to 16 the class alone chose the name, whatever the low bits said.
        _ if row.is_some_and(|r| r.unnamed_wait_classes.contains(&class)) => Some(class),
        _ => wait_names::names(major, class).get(ev as usize).copied(),
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

    fn name(major: u32, info: u32) -> String {
        describe(major, info).unwrap().1
    }

    #[test]
    fn reference_table_ids() {
        // wait_event.h per major: (major, DataFileRead, BaseBackupRead, WalRead,
        // BackupWaitWalArchive, WalSenderMain, BaseBackupThrottle); 0 = no such event.
        // 17 renamed BaseBackupRead to BasebackupRead and WALRead to WalRead.
        let table: [(u32, [u32; 6]); 7] = [
            (12, [0x0A00000D, 0, 0x0A000040, 0, 0x0500000C, 0x09000000]),
            (
                13,
                [
                    0x0A00000D, 0, 0x0A000040, 0x08000000, 0x0500000B, 0x09000000,
                ],
            ),
            (
                14,
                [
                    0x0A00000F, 0x0A000000, 0x0A000042, 0x08000002, 0x0500000B, 0x09000000,
                ],
            ),
            (
                15,
                [
                    0x0A000011, 0x0A000000, 0x0A000045, 0x08000004, 0x0500000A, 0x09000000,
                ],
            ),
            (
                16,
                [
                    0x0A000011, 0x0A000000, 0x0A000046, 0x08000004, 0x0500000B, 0x09000000,
                ],
            ),
            (
                17,
                [
                    0x0A000011, 0x0A000000, 0x0A000047, 0x08000004, 0x0500000D, 0x09000000,
                ],
            ),
            (
                18,
                [
                    0x0A000015, 0x0A000003, 0x0A00004B, 0x08000004, 0x0500000F, 0x09000000,
                ],
            ),
        ];
        for (major, ids) in table {
            let (bbr, wal) = if major >= 17 {
                ("BasebackupRead", "WalRead")
            } else {
                ("BaseBackupRead", "WALRead")
            };
            let want = [
                ("IO", "DataFileRead"),
                ("IO", bbr),
                ("IO", wal),
                ("IPC", "BackupWaitWalArchive"),
                ("Activity", "WalSenderMain"),
                ("Timeout", "BaseBackupThrottle"),
            ];
            for (id, (class, ev)) in ids.into_iter().zip(want) {
                if id == 0 {
                    // Absent in this major: the name must be nowhere in its table.
                    assert!(
                        !wait_names::names(major, class).contains(&ev),
                        "{major} {ev}"
                    );
                    continue;
                }
                assert_eq!(
                    describe(major, id),
                    Some((class, ev.to_string())),
                    "{major} {id:#x}"
                );
            }
        }
    }

    #[test]
    fn other_classes_and_fallbacks() {
        assert_eq!(name(13, 0x09000001), "PgSleep");
        assert_eq!(name(15, 0x09000002), "PgSleep");
        assert_eq!(name(12, 0x09000003), "RegisterSyncRequest");
        assert_eq!(name(12, 0x08000000), "BgWorkerShutdown");
        assert_eq!(name(16, 0x06000000), "ClientRead");
        assert_eq!(name(16, 0x0A000014), "DataFileWrite");
        assert_eq!(name(18, 0x0A000000), "AioIoCompletion");
        assert_eq!(name(16, 0x05000009), "SysLoggerMain");
        assert_eq!(name(17, 0x0500000B), "SysloggerMain");
        assert_eq!(
            describe(16, 0x04000000),
            Some(("BufferPin", "BufferPin".into()))
        );
        assert_eq!(
            describe(17, 0x07000000),
            Some(("Extension", "Extension".into()))
        );
        // 17+ extensions register further events by name in shared memory.
        assert_eq!(name(17, 0x07000001), "Extension #1");
        assert_eq!(name(16, 0x07000001), "Extension");
        // Past the end of a table: a later minor may append; never guess.
        assert_eq!(name(16, 0x09000009), "Timeout #9");
        assert_eq!(name(18, 0x0A0000FF), "IO #255");
        assert_eq!(describe(16, 0x03000000), Some(("Lock", "relation".into())));
        assert_eq!(name(16, 0x03000005), "transactionid");
        assert_eq!(name(12, 0x0300000A), "frozenid");
        assert_eq!(
            describe(15, 0x01000042),
            Some(("LWLock", "LWLock #66".into()))
        );
        assert_eq!(
            describe(15, 0x0B000001),
            Some(("InjectionPoint", "InjectionPoint #1".into()))
        );
        assert_eq!(describe(15, 0).map(|d| d.0), None);
        assert_eq!(describe(15, 0xFF000000).unwrap().0, "unknown");
    }
}
