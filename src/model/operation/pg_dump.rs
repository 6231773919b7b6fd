//! `pg_dump`, seen from the backend that serves it: which table of how many, and the
//! current `COPY … TO stdout`'s position.
//!
//! The backend is known as pg_dump's by its query: pg_dump copies each table with
//! `COPY schema.name (columns) TO stdout;`, the name always schema-qualified (psql's
//! `\copy` and applications send their own spelling). The table is the one that query
//! names. How many: the database's tables whose rows pg_dump copies, from the catalog
//! (ordinary tables outside the system and temp schemas); which one: pg_dump sorts its
//! data items by schema, then name, byte by byte, so the tables sorting before the current
//! one are those done. The catalog cannot say which tables a `--table`, `--schema` or
//! `--exclude-table-data` option selects, nor the order of parallel jobs (largest
//! first): while a pg_dump on this host has such an option, no k of n is given at all
//! ([`selects_or_reorders`]); a pg_dump on another host cannot be asked, and extension
//! tables are not counted. The client must call itself `pg_dump` (`application_name`)
//! when the server says who it is. The current table's tuples come from `pg_stat_progress_copy` (14+), its read
//! position and size from the files.

use super::{count, Reading, Source, Want};
use crate::process::progress;
use crate::process::status::StatusSample;
use crate::version::ProgressCommand;

/// The sample of a backend serving pg_dump's `COPY`, or None.
pub fn reading(s: &StatusSample) -> Option<Reading> {
    if s.state.as_deref() != Some("active") {
        return None;
    }
    // The query's shape is pg_dump's, but any client may send it: a backend whose
    // client calls itself something else is not said to serve pg_dump. (A sample without
    // the name, from an older recording, goes by the shape alone.)
    if s.application_name
        .as_deref()
        .is_some_and(|a| a != "pg_dump")
    {
        return None;
    }
    let table = copy_target(s.query.as_deref()?)?;
    let copying = s
        .progress_command
        .as_deref()
        .and_then(ProgressCommand::from_name)
        == Some(ProgressCommand::Copy);
    let relid = s.progress_target.filter(|&r| r != 0 && copying);
    let tuples = copying
        .then(|| {
            let row = progress::row(
                ProgressCommand::Copy,
                s.major,
                relid.unwrap_or(0),
                &s.progress_params,
            );
            count(row.get("tuples_processed"))
        })
        .flatten();
    Some(Reading {
        operation: "pg_dump",
        relid,
        phase: Some("COPY TO".into()),
        phase_number: None,
        phases_total: None,
        done: None,
        total: None,
        unit: None,
        source: Source::Inferred,
        want: Want::Dump,
        note: None,
        extra: super::eta::Extra {
            tuples,
            ..Default::default()
        },
        dump_table: Some(table),
    })
}

/// Whether pg_dump copies the tables of schema `s` by default.
pub fn dumped_schema(s: &str) -> bool {
    !matches!(s, "pg_catalog" | "information_schema" | "pg_toast")
        && !s.starts_with("pg_temp_")
        && !s.starts_with("pg_toast_temp_")
}

/// One identifier of a qualified name, and the rest: `"a""b"` unquoted, a bare one as is
/// (pg_dump quotes what would fold).
fn ident(s: &str) -> Option<(String, &str)> {
    if let Some(mut rest) = s.strip_prefix('"') {
        let mut out = String::new();
        loop {
            let i = rest.find('"')?;
            out.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            match rest.strip_prefix('"') {
                Some(r) => {
                    out.push('"');
                    rest = r;
                }
                None => return Some((out, rest)),
            }
        }
    }
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .unwrap_or(s.len());
    (end > 0).then(|| (s[..end].to_string(), &s[end..]))
}

/// The table a pg_dump `COPY … TO stdout;` copies, as (schema, name); None for any other
/// query.
pub fn copy_target(query: &str) -> Option<(String, String)> {
    let q = query.trim();
    let rest = q.strip_prefix("COPY ")?;
    if !q.ends_with(" TO stdout;") {
        return None;
    }
    let (schema, rest) = ident(rest)?;
    let (name, rest) = ident(rest.strip_prefix('.')?)?;
    let rest = rest.trim_start();
    (rest.starts_with('(') || rest.starts_with("TO stdout;")).then_some((schema, name))
}

/// Whether pg_dump's arguments make "table k of n in name order" untrue: a selection of
/// tables or schemas (`-t`, `-T`, `-n`, `-N`, `-e`, `--filter`, `--exclude-table-data`,
/// foreign data), or parallel jobs (`-j`: tables go largest first, several at once).
pub fn selects_or_reorders(args: &[String]) -> bool {
    const LONG: [&str; 13] = [
        "--table",
        "--exclude-table",
        "--schema",
        "--exclude-schema",
        "--jobs",
        "--extension",
        "--exclude-extension",
        "--exclude-table-data",
        "--include-foreign-data",
        "--filter",
        "--table-and-children",
        "--exclude-table-and-children",
        "--exclude-table-data-and-children",
    ];
    // Short options that take an argument (pg_dump's getopt string), and those of them
    // that select or reorder.
    const WITH_ARG: &str = "deEfFhjnNpStTUZ";
    const SELECTING: &str = "eTjnNt";
    let mut skip_next = false;
    for a in args.iter().skip(1) {
        if std::mem::take(&mut skip_next) {
            continue;
        }
        if a == "--" {
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            let name = long.split('=').next().unwrap_or("");
            if LONG.iter().any(|l| &l[2..] == name) {
                return true;
            }
            continue;
        }
        let Some(short) = a.strip_prefix('-') else {
            continue;
        };
        for (i, c) in short.char_indices() {
            if SELECTING.contains(c) {
                return true;
            }
            if WITH_ARG.contains(c) {
                // The rest of the word is the argument, or the next word is.
                skip_next = i + c.len_utf8() == short.len();
                break;
            }
        }
    }
    false
}

/// Tables done and the total: those of `tables` sorting before `current`, of them all.
/// The current table is counted in the total even when the catalog does not list it yet.
pub fn position(tables: &[(String, String)], current: &(String, String)) -> (u64, u64) {
    let key = |t: &(String, String)| (t.0.as_bytes().to_vec(), t.1.as_bytes().to_vec());
    let cur = key(current);
    let before = tables.iter().filter(|t| key(t) < cur).count() as u64;
    let listed = tables.iter().any(|t| t == current);
    (before, tables.len() as u64 + u64::from(!listed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn a_selection_or_jobs_make_k_of_n_untrue() {
        for a in [
            "pg_dump -t orders db",
            "pg_dump -vtorders db",
            "pg_dump --table=orders db",
            "pg_dump --exclude-table-data x db",
            "pg_dump -Fd -j 4 -f out db",
            "pg_dump -j4 -Fd -f out db",
            "pg_dump -n sales db",
            "pg_dump --filter=f.txt db",
        ] {
            assert!(selects_or_reorders(&args(a)), "{a}");
        }
        for a in [
            "pg_dump db",
            "pg_dump -Fc -f out.dump db",
            // `-t` here is the output file's name, not an option.
            "pg_dump -f -t.sql db",
            "pg_dump -d dbname=x -U -n",
            "pg_dump --data-only --file=x db",
            "pg_dump -- -t",
        ] {
            assert!(!selects_or_reorders(&args(a)), "{a}");
        }
    }

    #[test]
    fn another_client_sending_the_same_copy_is_not_pg_dump() {
        let mut s = StatusSample {
            state: Some("active".into()),
            query: Some("COPY public.orders (id, total) TO stdout;".into()),
            application_name: Some("pg_dump".into()),
            ..Default::default()
        };
        assert!(reading(&s).is_some());
        s.application_name = Some("etl".into());
        assert!(reading(&s).is_none());
    }

    fn t(s: &str, n: &str) -> (String, String) {
        (s.into(), n.into())
    }

    #[test]
    fn pg_dump_copy_queries() {
        assert_eq!(
            copy_target("COPY public.orders (id, total) TO stdout;"),
            Some(t("public", "orders"))
        );
        assert_eq!(
            copy_target(r#"COPY "My ""S""".t1 TO stdout;"#),
            Some(t(r#"My "S""#, "t1"))
        );
        assert_eq!(copy_target("COPY t (a) TO stdout;"), None);
        assert_eq!(copy_target("COPY public.t (a) TO STDOUT"), None);
        assert_eq!(copy_target("COPY public.t FROM stdin;"), None);
        assert_eq!(copy_target("COPY (SELECT 1) TO stdout;"), None);
        assert_eq!(copy_target(r#"COPY "unterminated TO stdout;"#), None);
    }

    #[test]
    fn tables_before_in_pg_dumps_order() {
        let all = [
            t("public", "b"),
            t("public", "a"),
            t("s", "a"),
            t("public", "Z"),
        ];
        assert_eq!(position(&all, &t("public", "a")), (1, 4));
        assert_eq!(position(&all, &t("s", "a")), (3, 4));
        assert_eq!(position(&all, &t("public", "new")), (3, 5));
        assert!(!dumped_schema("pg_temp_3") && dumped_schema("public"));
    }

    proptest::proptest! {
        #[test]
        fn any_query_parses(q in ".{0,80}") {
            let _ = copy_target(&q);
            let _ = copy_target(&format!("COPY {q} TO stdout;"));
        }
    }
}
