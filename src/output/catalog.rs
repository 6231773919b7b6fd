//! `pg_trace catalog`: one record per relation with storage.

use crate::output::record::{self, Record, RelationRecord};
use crate::output::Format;
use crate::pgdata::{Catalog, Relation};
use crate::text::visible;
use std::io::Write;

pub fn record(cat: &Catalog, r: &Relation) -> Record {
    let db = r.database().and_then(|o| cat.database(o));
    Record::Relation(RelationRecord {
        database: db.map(|d| d.name.clone()),
        database_oid: r.database(),
        schema: r.schema.clone(),
        name: r.name.clone(),
        oid: r.oid,
        kind: r.kind.as_str().to_string(),
        persistence: r.persistence.as_str().to_string(),
        relfilenode: r.locator.rel_number,
        tablespace: cat
            .tablespace(r.locator.spc_oid)
            .map(|t| t.name.clone())
            .unwrap_or_else(|| r.locator.spc_oid.to_string()),
        path: r.path.clone(),
        table: cat.owner_of(r).map(|t| t.qualified()),
        mapped: r.mapped,
        in_progress: r.pending,
    })
}

pub fn write(out: &mut impl Write, cat: &Catalog, format: Format) -> std::io::Result<()> {
    match format {
        Format::Json => {
            for r in cat.listed() {
                record::write(out, &record(cat, r))?;
            }
        }
        Format::Text => {
            writeln!(
                out,
                "{:<44} {:<9} {:<16} OBJECT",
                "PATH", "KIND", "DATABASE"
            )?;
            for r in cat.listed() {
                let db = match r.database().and_then(|o| cat.database(o)) {
                    Some(d) => d.name.as_str(),
                    None => "(shared)",
                };
                write!(
                    out,
                    "{:<44} {:<9} {:<16} {}.{}",
                    visible(&r.path),
                    r.kind.as_str(),
                    visible(db),
                    visible(&r.schema),
                    visible(&r.name)
                )?;
                if let Some(t) = cat.owner_of(r) {
                    write!(out, " → {}.{}", visible(&t.schema), visible(&t.name))?;
                }
                if r.pending {
                    out.write_all(b" (in progress)")?;
                }
                out.write_all(b"\n")?;
            }
        }
    }
    Ok(())
}
