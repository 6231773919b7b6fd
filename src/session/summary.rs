//! The last words of line mode: every relation's final progress and what was seen.

use crate::model::Model;
use crate::output::trace as out;
use crate::output::Format;
use anyhow::Result;
use std::io::Write;

pub fn write_summary(w: &mut impl Write, model: &Model, now: u64, format: Format) -> Result<()> {
    let leader = model.procs.get(&model.leader);
    match format {
        Format::Json => {
            for rec in out::summary_records(model, now) {
                crate::output::record::write(&mut *w, &rec)?;
            }
        }
        Format::Text => {
            let touched = model.relations.values().filter(|r| r.touched()).count();
            writeln!(
                w,
                "pg_trace: summary: {} events, {touched} relations read or written",
                model.events
            )?;
            for r in model.relations.values().filter(|r| r.touched()) {
                writeln!(
                    w,
                    "    {} ({}): read {}, written {}, reached {}",
                    crate::text::visible(&r.id.label),
                    r.id.kind.unwrap_or("relation"),
                    crate::text::human_bytes(r.bytes_read),
                    crate::text::human_bytes(r.bytes_written),
                    r.percent()
                        .map(|p| format!("{p:.1}%"))
                        .unwrap_or_else(|| "?".into())
                )?;
                if let Some(h) = r.hit_ratio() {
                    writeln!(
                        w,
                        "        {} buffer accesses seen by the USDT probes ({:.1}% hit); {} distinct blocks touched",
                        r.blocks_hit + r.blocks_read,
                        h * 100.0,
                        r.coverage.blocks()
                    )?;
                }
            }
            if leader.is_some_and(|p| p.exited) {
                writeln!(w, "pg_trace: pid {} exited", model.leader)?;
            }
        }
    }
    Ok(())
}
