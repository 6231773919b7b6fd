//! USDT probe discovery: the SystemTap SDT notes (`.note.stapsdt`) of an ELF binary, read
//! without external tools. A pure parser over the note bytes, and a thin shell that finds
//! the section in a file.
//!
//! Each note (type 3, owner "stapsdt") describes one probe site:
//! `pc, base, semaphore` (three target-endian addresses) then `provider\0name\0args\0`,
//! where args are specs like `-4@%esi 4@8(%r13) 1@$0`: size in bytes, negative if signed,
//! then the assembler operand. A probe used at several places has one note per site.
//! The binary is untrusted input: every length is checked, nothing is sized by it.

use object::{Object, ObjectSection};
use std::path::Path;

/// ELF note type of an SDT probe descriptor.
pub const NT_STAPSDT: u32 = 3;
const OWNER: &[u8] = b"stapsdt";
/// Longest provider, name or argument string we keep (longer ones are cut, not trusted).
const MAX_STR: usize = 4096;
/// Arguments per probe kept (sys/sdt.h allows 12).
const MAX_ARGS: usize = 12;
/// Largest executable read (PostgreSQL's is tens of MiB): a huge or sparse file named by
/// `/proc/PID/exe` must not make us read or allocate gigabytes.
pub const MAX_EXE_BYTES: u64 = 1 << 30;
/// Notes accepted in one section (PostgreSQL has a few hundred probe sites).
pub const MAX_NOTES: usize = 100_000;
/// Largest `.note.stapsdt` read (100,000 notes of a few hundred bytes).
const MAX_SECTION_BYTES: u64 = 64 << 20;

/// The one-line refusal of an executable larger than `MAX_EXE_BYTES`.
pub fn check_exe_size(path: &Path, len: u64) -> anyhow::Result<()> {
    if len > MAX_EXE_BYTES {
        anyhow::bail!(
            "{} is {} MiB, larger than the {} MiB pg_trace reads of an executable",
            path.display(),
            len >> 20,
            MAX_EXE_BYTES >> 20
        );
    }
    Ok(())
}

/// One argument of a probe, as the compiler described it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ArgSpec {
    /// Width in bytes (1, 2, 4, 8; whatever the note says, unvalidated).
    pub size: u8,
    pub signed: bool,
    /// The assembler operand: `%esi`, `8(%r13)`, `$0`, `40+CheckpointStats(%rip)`.
    pub location: String,
}

impl ArgSpec {
    /// `-4@%esi`, as the note spells it.
    pub fn spec(&self) -> String {
        format!(
            "{}{}@{}",
            if self.signed { "-" } else { "" },
            self.size,
            self.location
        )
    }
}

/// One probe site.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProbeSite {
    pub provider: String,
    pub name: String,
    /// Link-time address of the probe's nop.
    pub pc: u64,
    /// Link-time address of `.stapsdt.base` (to correct for prelinking).
    pub base: u64,
    /// Link-time address of the probe's semaphore (a u16 in `.probes`), 0 if none: the
    /// kernel increments it in the traced process while a uprobe is attached.
    pub semaphore: u64,
    pub args: Vec<ArgSpec>,
}

/// Everything the notes held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notes {
    pub probes: Vec<ProbeSite>,
    /// Notes that were not SDT descriptors or were malformed, and skipped.
    pub skipped: usize,
}

fn align4(n: usize) -> Option<usize> {
    n.checked_add(3).map(|v| v & !3)
}

fn read_u32(b: &[u8], off: usize, little: bool) -> Option<u32> {
    let a: [u8; 4] = b.get(off..off.checked_add(4)?)?.try_into().ok()?;
    Some(if little {
        u32::from_le_bytes(a)
    } else {
        u32::from_be_bytes(a)
    })
}

fn read_u64(b: &[u8], off: usize, little: bool) -> Option<u64> {
    let a: [u8; 8] = b.get(off..off.checked_add(8)?)?.try_into().ok()?;
    Some(if little {
        u64::from_le_bytes(a)
    } else {
        u64::from_be_bytes(a)
    })
}

/// A NUL-terminated string at the start of `b`, and what follows it.
fn cstr(b: &[u8]) -> Option<(String, &[u8])> {
    let end = b.iter().position(|&c| c == 0)?;
    let s = &b[..end.min(MAX_STR)];
    Some((String::from_utf8_lossy(s).into_owned(), &b[end + 1..]))
}

/// `-4@%esi 4@8(%r13)`: unparseable tokens are kept with size 0 so the count stays right.
pub fn parse_args(s: &str) -> Vec<ArgSpec> {
    s.split_ascii_whitespace()
        .take(MAX_ARGS)
        .map(|tok| {
            let (n, loc) = tok.split_once('@').unwrap_or(("", tok));
            let signed = n.starts_with('-');
            let size = n.trim_start_matches('-').parse::<u8>().unwrap_or(0);
            ArgSpec {
                size,
                signed,
                location: loc.chars().take(MAX_STR).collect(),
            }
        })
        .collect()
}

/// One SDT note descriptor (the bytes after the note's name).
pub fn parse_descriptor(desc: &[u8], addr_bytes: usize, little: bool) -> Option<ProbeSite> {
    let addr = |i: usize| -> Option<u64> {
        let off = i * addr_bytes;
        if addr_bytes == 8 {
            read_u64(desc, off, little)
        } else {
            read_u32(desc, off, little).map(u64::from)
        }
    };
    let (pc, base, semaphore) = (addr(0)?, addr(1)?, addr(2)?);
    let rest = desc.get(3 * addr_bytes..)?;
    let (provider, rest) = cstr(rest)?;
    let (name, rest) = cstr(rest)?;
    // The argument string may be missing its NUL at the very end of a truncated note.
    let args = match cstr(rest) {
        Some((a, _)) => a,
        None => String::from_utf8_lossy(&rest[..rest.len().min(MAX_STR)]).into_owned(),
    };
    Some(ProbeSite {
        provider,
        name,
        pc,
        base,
        semaphore,
        args: parse_args(&args),
    })
}

/// Walks the notes of a `.note.stapsdt` section (or any note section: non-SDT notes are
/// skipped). `addr_bytes` is 8 for ELF64, 4 for ELF32. More than `MAX_NOTES` notes is an
/// error: no real binary has them, and the callers' work grows with their number.
pub fn parse_notes(data: &[u8], addr_bytes: usize, little: bool) -> anyhow::Result<Notes> {
    let mut out = Notes::default();
    let mut off = 0usize;
    while off < data.len() {
        if out.probes.len() + out.skipped >= MAX_NOTES {
            anyhow::bail!("the binary has more than {MAX_NOTES} SDT notes; refusing it");
        }
        let (Some(namesz), Some(descsz), Some(ntype)) = (
            read_u32(data, off, little),
            read_u32(data, off + 4, little),
            read_u32(data, off + 8, little),
        ) else {
            out.skipped += 1;
            break;
        };
        let name_start = off + 12;
        let Some(desc_start) = align4(namesz as usize).and_then(|n| name_start.checked_add(n))
        else {
            out.skipped += 1;
            break;
        };
        let Some(next) = align4(descsz as usize).and_then(|n| desc_start.checked_add(n)) else {
            out.skipped += 1;
            break;
        };
        let name = data.get(name_start..name_start.saturating_add(namesz as usize));
        let desc = desc_start
            .checked_add(descsz as usize)
            .and_then(|end| data.get(desc_start..end));
        let owner_ok = name.is_some_and(|n| n.strip_suffix(&[0]).unwrap_or(n) == OWNER);
        match (owner_ok && ntype == NT_STAPSDT, desc) {
            (true, Some(desc)) => match parse_descriptor(desc, addr_bytes, little) {
                Some(p) => out.probes.push(p),
                None => out.skipped += 1,
            },
            _ => out.skipped += 1,
        }
        if next <= off || next > data.len() {
            break;
        }
        off = next;
    }
    Ok(out)
}

/// The SDT probes of an ELF file, or an empty list when it has none. Reads only the
/// headers and the note section.
pub fn probes_of_file(path: &Path) -> anyhow::Result<Notes> {
    let file = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    let len = file
        .metadata()
        .map_err(|e| anyhow::anyhow!("cannot stat {}: {e}", path.display()))?
        .len();
    check_exe_size(path, len)?;
    let cache = object::ReadCache::new(file);
    let obj = object::File::parse(&cache)
        .map_err(|e| anyhow::anyhow!("{} is not a readable ELF file: {e}", path.display()))?;
    let Some(section) = obj.section_by_name(".note.stapsdt") else {
        return Ok(Notes::default());
    };
    if section.size() > MAX_SECTION_BYTES {
        anyhow::bail!(
            "{}: .note.stapsdt is {} MiB, too large to be real",
            path.display(),
            section.size() >> 20
        );
    }
    let data = section
        .data()
        .map_err(|e| anyhow::anyhow!("{}: unreadable .note.stapsdt: {e}", path.display()))?;
    let addr_bytes = if obj.is_64() { 8 } else { 4 };
    parse_notes(data, addr_bytes, obj.is_little_endian())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The probes of the executable of a running process (`/proc/PID/exe`).
pub fn probes_of_pid(pid: i32) -> anyhow::Result<Notes> {
    probes_of_file(Path::new(&format!("/proc/{pid}/exe")))
}

/// The path of a running process's executable and its probes (`pg_trace probes -p PID`).
pub fn exe_and_probes(pid: i32) -> anyhow::Result<(std::path::PathBuf, Notes)> {
    let exe = crate::process::proc::exe(pid)
        .map_err(|e| anyhow::anyhow!("pid {pid}: cannot read its executable ({e})"))?;
    Ok((exe, probes_of_pid(pid)?))
}

/// Distinct probe names of `provider`, in first-seen order, with their site counts.
pub fn names(notes: &Notes, provider: &str) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for p in notes.probes.iter().filter(|p| p.provider == provider) {
        match index.get(p.name.as_str()) {
            Some(&i) => out[i].1 += 1,
            None => {
                index.insert(&p.name, out.len());
                out.push((p.name.clone(), 1));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn note(name: &[u8], ntype: u32, desc: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(name.len() as u32).to_le_bytes());
        v.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        v.extend_from_slice(&ntype.to_le_bytes());
        v.extend_from_slice(name);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v.extend_from_slice(desc);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    fn sdt(pc: u64, sem: u64, provider: &str, name: &str, args: &str) -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(&pc.to_le_bytes());
        d.extend_from_slice(&0x792ea0u64.to_le_bytes());
        d.extend_from_slice(&sem.to_le_bytes());
        for s in [provider, name, args] {
            d.extend_from_slice(s.as_bytes());
            d.push(0);
        }
        note(b"stapsdt\0", NT_STAPSDT, &d)
    }

    #[test]
    fn parses_debian_15_lock_wait() {
        let mut data = sdt(
            0x45e75c,
            0x885972,
            "postgresql",
            "lock__wait__start",
            "4@(%r12) 4@4(%r12) 4@8(%r12) 2@12(%r12) 1@14(%r12) -4@%r13d",
        );
        data.extend(note(b"GNU\0", 1, &[1, 2, 3, 4]));
        data.extend(sdt(
            0x4407b4,
            0x885952,
            "postgresql",
            "buffer__read__done",
            "",
        ));
        let n = parse_notes(&data, 8, true).unwrap();
        assert_eq!(n.skipped, 1);
        assert_eq!(n.probes.len(), 2);
        let p = &n.probes[0];
        assert_eq!(
            (p.provider.as_str(), p.name.as_str(), p.pc, p.semaphore),
            ("postgresql", "lock__wait__start", 0x45e75c, 0x885972)
        );
        assert_eq!(p.base, 0x792ea0);
        let widths: Vec<(u8, bool)> = p.args.iter().map(|a| (a.size, a.signed)).collect();
        assert_eq!(
            widths,
            [
                (4, false),
                (4, false),
                (4, false),
                (2, false),
                (1, false),
                (4, true)
            ]
        );
        assert_eq!(p.args[3].location, "12(%r12)");
        assert_eq!(p.args[5].spec(), "-4@%r13d");
        assert!(n.probes[1].args.is_empty());
        assert_eq!(
            names(&n, "postgresql"),
            [
                ("lock__wait__start".to_string(), 1),
                ("buffer__read__done".to_string(), 1)
            ]
        );
    }

    #[test]
    fn truncated_and_garbage_notes_are_skipped() {
        let good = sdt(1, 2, "p", "n", "8@%rax");
        // Cut in the middle of the descriptor: no probe, no panic.
        let n = parse_notes(&good[..good.len() - 12], 8, true).unwrap();
        assert!(n.probes.is_empty());
        // A namesz near u32::MAX must not overflow or allocate.
        let mut bad = vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 3, 0, 0, 0];
        bad.extend_from_slice(&good);
        let n = parse_notes(&bad, 8, true).unwrap();
        assert!(n.probes.is_empty());
        assert_eq!(n.skipped, 1);
    }

    #[test]
    fn too_many_notes_is_an_error_and_names_stay_linear() {
        let one = sdt(1, 0, "postgresql", "query__start", "");
        let mut data = Vec::with_capacity(one.len() * (MAX_NOTES + 1));
        for _ in 0..MAX_NOTES {
            data.extend_from_slice(&one);
        }
        let n = parse_notes(&data, 8, true).unwrap();
        assert_eq!(n.probes.len(), MAX_NOTES);
        assert_eq!(
            names(&n, "postgresql"),
            [("query__start".to_string(), MAX_NOTES)]
        );
        data.extend_from_slice(&one);
        let e = parse_notes(&data, 8, true).unwrap_err().to_string();
        assert!(e.contains("more than 100000 SDT notes"), "{e}");
    }

    #[test]
    fn huge_executables_are_refused() {
        let p = Path::new("/proc/1/exe");
        assert!(check_exe_size(p, 40 << 20).is_ok());
        assert!(check_exe_size(p, MAX_EXE_BYTES).is_ok());
        let e = check_exe_size(p, MAX_EXE_BYTES + 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("larger than the 1024 MiB"), "{e}");
    }

    #[test]
    fn the_postgres_binary_has_probes_or_says_none() {
        // Debian's postgresql-15 is installed on the test machines; skip loudly elsewhere.
        let path = Path::new("/usr/lib/postgresql/15/bin/postgres");
        if !path.exists() {
            eprintln!("SKIPPED: {} is not installed", path.display());
            return;
        }
        let n = probes_of_file(path).unwrap();
        let names = names(&n, "postgresql");
        assert!(names.iter().any(|(n, _)| n == "buffer__read__done"));
        let done = n
            .probes
            .iter()
            .find(|p| p.name == "buffer__read__done")
            .unwrap();
        // 12–15: fork, block, spc, db, rel, backend, isExtend, found.
        assert_eq!(done.args.len(), 8);
        assert_ne!(done.semaphore, 0);
    }

    proptest! {
        #[test]
        fn hostile_notes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512),
                                     little in any::<bool>(), wide in any::<bool>()) {
            let n = parse_notes(&data, if wide { 8 } else { 4 }, little).unwrap();
            prop_assert!(n.probes.len() <= data.len() / 12 + 1);
        }

        #[test]
        fn mutated_real_notes_never_panic(flip in proptest::collection::vec((0usize..200, any::<u8>()), 0..8),
                                          cut in 0usize..200) {
            let mut data = sdt(0x4407b4, 0x885952, "postgresql", "buffer__read__done",
                "-4@-136(%rbp) 4@-132(%rbp) 4@0(%r13) 4@4(%r13) 4@8(%r13) -4@12(%r13) 1@$0 1@$1");
            data.extend(sdt(1, 0, "postgresql", "query__start", "8@%rbx"));
            for (i, b) in flip {
                if let Some(x) = data.get_mut(i) { *x = b; }
            }
            data.truncate(cut.max(1));
            let _ = parse_notes(&data, 8, true);
        }

        #[test]
        fn arg_strings_never_panic(s in "\\PC{0,200}") {
            prop_assert!(parse_args(&s).len() <= MAX_ARGS);
        }
    }
}
