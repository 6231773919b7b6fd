//! `pg_trace probes -p PID`: the USDT probes of a process's binary, one per name, with
//! their sites, semaphore, argument specs, and whether pg_trace attaches them.

use crate::output::record::{self, ProbeRecord, ProbesRecord, Record};
use crate::output::Format;
use crate::process::stapsdt::{Notes, ProbeSite};
use crate::trace::usdt::{no_probes_reason, DEFAULT_PROBES, PROBES, PROVIDER};
use std::collections::hash_map::{Entry, HashMap};
use std::io::Write;

/// One row per probe name of a binary's SDT notes, then the summary record.
pub fn write_notes(
    out: &mut impl Write,
    binary: &str,
    notes: &Notes,
    format: Format,
) -> anyhow::Result<()> {
    // One row per (provider, name) in first-seen order, with its site count: a map, since
    // a hostile binary may hold up to `stapsdt::MAX_NOTES` notes.
    let mut rows: Vec<(&ProbeSite, usize)> = Vec::new();
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    for p in &notes.probes {
        match index.entry((&p.provider, &p.name)) {
            Entry::Occupied(e) => rows[*e.get()].1 += 1,
            Entry::Vacant(e) => {
                e.insert(rows.len());
                rows.push((p, 1));
            }
        }
    }
    let count = rows.len();
    for (p, sites) in rows {
        let ours = p.provider == PROVIDER;
        let handled = ours && PROBES.contains(&p.name.as_str());
        let default = ours && DEFAULT_PROBES.contains(&p.name.as_str());
        let args: Vec<String> = p.args.iter().map(|a| a.spec()).collect();
        match format {
            Format::Json => {
                record::write(
                    out,
                    &Record::Probe(ProbeRecord {
                        provider: p.provider.clone(),
                        name: p.name.clone(),
                        sites: sites as u64,
                        pc: p.pc,
                        semaphore: p.semaphore,
                        args,
                        handled,
                        default,
                    }),
                )?;
            }
            Format::Text => {
                let mark = if default {
                    "default"
                } else if handled {
                    "on request"
                } else {
                    "-"
                };
                writeln!(
                    out,
                    "{}:{:<34} {:>2} site(s)  semaphore {:#x}  [{mark}]  {}",
                    crate::text::visible(&p.provider),
                    crate::text::visible(&p.name),
                    sites,
                    p.semaphore,
                    crate::text::visible(&args.join(" "))
                )?;
            }
        }
    }
    let reason = (count == 0).then(no_probes_reason);
    match format {
        Format::Json => {
            record::write(
                out,
                &Record::Probes(ProbesRecord {
                    binary: binary.to_string(),
                    count: count as u64,
                    reason,
                }),
            )?;
        }
        Format::Text => match reason {
            Some(r) => writeln!(out, "pg_trace: {}: {r}", crate::text::visible(binary))?,
            None => writeln!(
                out,
                "pg_trace: {}: {count} probes",
                crate::text::visible(binary)
            )?,
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::stapsdt::parse_args;

    #[test]
    fn lists_once_per_name_and_says_why_when_none() {
        let site = |name: &str, pc| ProbeSite {
            provider: PROVIDER.into(),
            name: name.into(),
            pc,
            base: 0,
            semaphore: 0x885952,
            args: parse_args("-4@%esi 1@$1"),
        };
        let notes = Notes {
            probes: vec![
                site("buffer__read__done", 1),
                site("buffer__read__done", 2),
                site("wal__switch", 3),
            ],
            skipped: 0,
        };
        let mut v = Vec::new();
        write_notes(&mut v, "/x/postgres", &notes, Format::Json).unwrap();
        let recs: Vec<Record> = String::from_utf8(v)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let [Record::Probe(done), Record::Probe(switch), Record::Probes(end)] = &recs[..] else {
            panic!("{recs:?}");
        };
        assert_eq!(done.sites, 2);
        assert!(done.default);
        assert!(!switch.handled);
        assert_eq!(end.count, 2);

        let mut v = Vec::new();
        write_notes(&mut v, "/x/postgres", &Notes::default(), Format::Text).unwrap();
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "pg_trace: /x/postgres: no USDT probes: postgres built without --enable-dtrace\n"
        );
    }
}
