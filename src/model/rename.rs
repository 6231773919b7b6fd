//! Names given before a catalog change, asked again: a rename changes no file, so nothing
//! in the event stream would otherwise correct the name of a file already open (a rename
//! swap renames two open files at once), and a rewrite or a DROP leaves the old file
//! named as the relation it no longer is.

use super::files::RelInfo;
use super::{Model, Named, Namer};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// What the label of a file no longer in the catalog says after its path.
const GONE: &str = " (no longer in catalog: was ";

/// What a file that was a relation's is called once the catalog no longer lists it
/// (dropped, or the old file of a rewrite until the process closes it).
fn gone(old: &RelInfo) -> RelInfo {
    let mut id = old.id.clone();
    id.label = format!("{}{GONE}{})", id.path, old.id.label);
    id.schema = None;
    id.name = None;
    id.kind = None;
    id.table = None;
    id.known = false;
    RelInfo {
        id,
        fork: old.fork,
        segment: old.segment,
    }
}

/// The new name of a relation file named `old` before, and whether it changed.
fn renamed(old: &Arc<RelInfo>, new: Named) -> Option<Named> {
    let info = match &new.relation {
        Some(n) if n.id == old.id => return None,
        Some(n) if n.id.name.is_some() => Arc::clone(n),
        // Not in the catalog now: a file that had a name says which it had (once), one
        // that never had one takes what the namer says.
        _ if old.id.label.contains(GONE) => return None,
        _ if old.id.name.is_some() => Arc::new(gone(old)),
        Some(n) => Arc::clone(n),
        None => return None,
    };
    Some(Named {
        label: info.id.label.clone(),
        relation: Some(info),
        ..new
    })
}

impl Model {
    /// Re-name every open or recently closed relation file and every relation, after the
    /// namer said names may have changed. Each change of an open file's name is noted
    /// once in [`Model::renamed`] (`renamed: public.a → public.b`).
    pub fn rename(&mut self, namer: &mut impl Namer) {
        // Buffer tags are asked again too.
        self.block_names.clear();
        let mut asked: HashMap<String, Named> = HashMap::new();
        let mut notes = BTreeSet::new();
        let open = self.files.values_mut().map(|f| (f, true));
        let closed = self.closed.iter_mut().map(|f| (f, false));
        for (f, is_open) in open.chain(closed) {
            let Some(old) = f.named.relation.clone() else {
                continue;
            };
            let new = asked
                .entry(f.path.clone())
                .or_insert_with(|| namer.name(&f.path))
                .clone();
            if let Some(n) = renamed(&old, new) {
                if is_open {
                    notes.insert(format!("renamed: {} → {}", f.named.label, n.label));
                }
                f.named = n;
            }
        }
        for rs in self.relations.values_mut() {
            let new = namer.name(&rs.id.path);
            let old = Arc::new(RelInfo {
                id: rs.id.clone(),
                fork: crate::pgdata::relfile::Fork::Main,
                segment: 0,
            });
            if let Some(n) = renamed(&old, new).and_then(|n| n.relation) {
                rs.id = n.id.clone();
            }
        }
        self.renamed.extend(notes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RelIdentity;
    use crate::pgdata::relfile::{Fork, RelFileLocator};

    fn info(name: Option<&str>, known: bool) -> Arc<RelInfo> {
        Arc::new(RelInfo {
            id: RelIdentity {
                locator: RelFileLocator {
                    spc_oid: 1663,
                    db_oid: 5,
                    rel_number: 16384,
                    backend: None,
                },
                path: "base/5/16384".into(),
                label: name.map_or("base/5/16384 (not in catalog yet)".into(), |n| {
                    format!("public.{n}")
                }),
                schema: name.map(|_| "public".into()),
                name: name.map(str::to_string),
                kind: name.map(|_| "table"),
                table: None,
                known,
            },
            fork: Fork::Main,
            segment: 0,
        })
    }

    fn named(r: Arc<RelInfo>) -> Named {
        Named {
            relpath: Some(r.id.path.clone()),
            class: "relation",
            label: r.id.label.clone(),
            relation: Some(r),
        }
    }

    #[test]
    fn renames_and_drops() {
        let a = info(Some("a"), true);
        assert!(renamed(&a, named(info(Some("a"), true))).is_none());
        let b = renamed(&a, named(info(Some("b"), true))).unwrap();
        assert_eq!(b.label, "public.b");
        // Dropped: not "not in catalog yet", and no name left.
        let d = renamed(&a, named(info(None, false))).unwrap();
        assert_eq!(d.label, "base/5/16384 (no longer in catalog: was public.a)");
        let r = d.relation.clone().unwrap();
        assert!(r.id.name.is_none() && !r.id.known);
        // Said once.
        assert!(renamed(&r, named(info(None, false))).is_none());
        // An unknown file that became known takes its name.
        let u = info(None, false);
        assert_eq!(
            renamed(&u, named(info(Some("c"), true))).unwrap().label,
            "public.c"
        );
    }
}
