//! The model's [`Namer`] backed by the on-disk catalog: the thin I/O shell around
//! `pgdata::Resolver` (names, with rate-limited catalog re-reads) and `stat` (sizes).

use crate::model::{Named, Namer, RelIdentity, RelInfo};
use crate::pgdata::path::WalFile;
use crate::pgdata::relfile::{Fork, RelFileLocator};
use crate::pgdata::{PathClass, Resolver};
use std::path::{Path, PathBuf};

pub struct CatalogNamer {
    resolver: Resolver,
    root: PathBuf,
    /// `PG_<major>_<catversion>`: the directory of this cluster inside a tablespace.
    version_dir: String,
}

impl CatalogNamer {
    pub fn new(resolver: Resolver) -> CatalogNamer {
        let dd = &resolver.catalog().datadir;
        let (root, version_dir) = (dd.root.clone(), dd.tablespace_version_dir());
        CatalogNamer {
            resolver,
            root,
            version_dir,
        }
    }

    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    fn abs(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.root.join(p)
        }
    }
}

impl Namer for CatalogNamer {
    fn name(&mut self, path: &str) -> Named {
        let r = self.resolver.resolve(Path::new(path));
        let relpath = r.relpath.clone();
        let shown = relpath.clone().unwrap_or_else(|| path.to_string());
        let (label, relation) = match &r.class {
            PathClass::Relation(f) | PathClass::TempRelation(f) => {
                // The main-fork, segment-0 path: what records call the relation.
                let path = f.locator.relpath(&self.version_dir);
                let label = match (&r.relation, &r.table) {
                    (Some(rel), Some(t)) => format!("{} → {}", rel.name, t.qualified()),
                    (Some(rel), None) => rel.qualified(),
                    (None, _) => format!("{path} (not in catalog yet)"),
                };
                let info = RelInfo {
                    id: RelIdentity {
                        locator: f.locator,
                        path,
                        label: label.clone(),
                        schema: r.relation.as_ref().map(|x| x.schema.clone()),
                        name: r.relation.as_ref().map(|x| x.name.clone()),
                        kind: r.relation.as_ref().map(|x| x.kind.as_str()),
                        table: r.table.as_ref().map(|t| t.qualified()),
                        known: r.relation.is_some(),
                    },
                    fork: f.fork,
                    segment: f.segment,
                };
                (label, Some(std::sync::Arc::new(info)))
            }
            PathClass::TempFile {
                pid,
                counter,
                fileset_member,
                ..
            } => (
                match fileset_member {
                    Some(m) if !m.is_empty() => format!("shared temp file {m} (pid {pid})"),
                    Some(_) => format!("shared fileset {counter} (pid {pid})"),
                    None => format!("temp file {counter} (pid {pid})"),
                },
                None,
            ),
            PathClass::Wal(WalFile::Segment { .. }) => (
                format!("WAL {}", shown.rsplit('/').next().unwrap_or(&shown)),
                None,
            ),
            PathClass::Wal(_) => (format!("WAL {}", shown.trim_start_matches("pg_wal/")), None),
            PathClass::Slru { slru, segment } => (format!("{slru} {segment:04X}"), None),
            PathClass::Control => ("pg_control".into(), None),
            PathClass::Other { .. } => (shown.clone(), None),
        };
        Named {
            relpath,
            class: r.class.class_name(),
            label,
            relation,
        }
    }

    fn relation_size(&mut self, rel: &RelInfo) -> Option<u64> {
        let base = self.abs(&rel.id.path);
        let mut total = 0u64;
        for seg in 0u32.. {
            let p = if seg == 0 {
                base.clone()
            } else {
                PathBuf::from(format!("{}.{seg}", base.display()))
            };
            match std::fs::metadata(&p) {
                Ok(m) => total += m.len(),
                Err(_) if seg > 0 => break,
                Err(_) => return None,
            }
        }
        Some(total)
    }

    fn name_block(&mut self, rel: &RelFileLocator, fork: Fork) -> Option<std::sync::Arc<RelInfo>> {
        let path = rel.fork_path(fork, &self.version_dir);
        self.name(&path).relation
    }

    fn relation_by_oid(&mut self, db: u32, oid: u32) -> Option<RelIdentity> {
        if self.resolver.catalog().by_oid(db, oid).is_none() {
            self.resolver.maybe_reload();
        }
        let cat = self.resolver.catalog();
        let rel = cat.by_oid(db, oid)?;
        let table = cat.owner_of(rel).map(|t| t.qualified());
        Some(RelIdentity {
            locator: rel.locator,
            path: rel.path.clone(),
            label: match &table {
                Some(t) => format!("{} → {t}", rel.name),
                None => rel.qualified(),
            },
            schema: Some(rel.schema.clone()),
            name: Some(rel.name.clone()),
            kind: Some(rel.kind.as_str()),
            table,
            known: true,
        })
    }

    fn file_size(&mut self, path: &str) -> Option<u64> {
        std::fs::metadata(self.abs(path))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }
}
