//! The operation line, under the activity line: a long command's phase k of n, a progress
//! bar, done of total, rate and ETA (`model::operation`).

use super::{truncate, Theme};
use crate::model::operation::OperationView;
use crate::model::Model;
use ratatui::text::{Line, Span};

/// The operation shown: a base backup's already is the activity line's.
fn shown(model: &Model) -> Option<&OperationView> {
    model
        .operation_view
        .as_ref()
        .filter(|o| o.operation != "basebackup")
}

/// Rows the panel takes: one while an operation runs.
pub fn height(model: &Model) -> u16 {
    u16::from(shown(model).is_some())
}

/// `op  create index public.t: building index: scanning table (3/10) ████░░░░  24%
/// 1100 of 4425 blocks, 367 blocks/s, ETA 9s [writing …]`, fitted to `width`.
pub fn line(model: &Model, width: usize, th: &Theme) -> Option<Line<'static>> {
    Some(draw(shown(model)?, width, th))
}

fn draw(o: &OperationView, width: usize, th: &Theme) -> Line<'static> {
    let mut what = o.operation.to_string();
    if let Some(r) = &o.relation {
        what.push(' ');
        what.push_str(r);
    }
    if let Some(p) = &o.phase {
        what.push_str(": ");
        what.push_str(p);
    }
    if let (Some(k), Some(n)) = (o.phase_number, o.phases_total) {
        if n > 1 {
            what.push_str(&format!(" ({k}/{n})"));
        }
    }
    let mut spans = vec![
        Span::styled("op    ", th.label()),
        Span::styled(truncate(&what, width.saturating_sub(6)), th.value()),
    ];
    let mut used = 6 + what.chars().count().min(width.saturating_sub(6));
    let bar = o.percent.is_some() && width > used + 30;
    if bar {
        spans.push(Span::raw(" "));
        used += 17;
        spans.extend(super::files::progress(o.percent, 16, th).spans);
    }
    let mut rest = o.figures(!bar);
    if o.source != crate::model::operation::Source::Memory {
        rest.push_str(&format!(" ({})", o.source.name()));
    }
    if let Some(d) = &o.detail {
        rest.push_str(&format!(" [{d}]"));
    }
    if !rest.is_empty() {
        spans.push(Span::raw(truncate(&rest, width.saturating_sub(used))));
    }
    Line::from(spans)
}
