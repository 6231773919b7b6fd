//! Name any path of a cluster, keeping names fresh: a relation file the catalog does not
//! know (created since it was read) triggers a rate-limited re-read, and one still unknown
//! is reported with its numbers rather than dropped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::catalog::{Catalog, Relation};
use super::path::{classify, relative_to, PathClass};
use super::{DataDir, PgDataError};

/// The default minimum time between two catalog re-reads.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Resolved {
    /// The path relative to the data directory, or None when it lies outside the cluster.
    pub relpath: Option<String>,
    pub class: PathClass,
    /// For relation files: the relation, when the catalog knows it.
    pub relation: Option<Relation>,
    /// For indexes and TOAST tables: the table they serve.
    pub table: Option<Relation>,
    /// The database the file belongs to (name), when known.
    pub database: Option<String>,
}

impl Resolved {}

pub struct Resolver {
    catalog: Catalog,
    datadir_forms: Vec<PathBuf>,
    loaded_at: Instant,
    min_interval: Duration,
    reloads: u64,
}

impl Resolver {
    pub fn new(dd: &DataDir) -> Result<Resolver, PgDataError> {
        let catalog = Catalog::load(dd)?;
        Ok(Resolver::from_catalog(catalog))
    }

    pub fn from_catalog(catalog: Catalog) -> Resolver {
        let root = &catalog.datadir.root;
        let mut datadir_forms = vec![super::path::normalize(root)];
        if let Ok(c) = std::fs::canonicalize(root) {
            if !datadir_forms.contains(&c) {
                datadir_forms.push(c);
            }
        }
        Resolver {
            catalog,
            datadir_forms,
            loaded_at: Instant::now(),
            min_interval: DEFAULT_RELOAD_INTERVAL,
            reloads: 0,
        }
    }

    pub fn with_reload_interval(mut self, d: Duration) -> Resolver {
        self.min_interval = d;
        self
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// How many times the catalog was re-read since this resolver was made.
    pub fn reloads(&self) -> u64 {
        self.reloads
    }

    /// Re-read the catalog now unless the last read was less than the interval ago.
    /// A failed re-read keeps the old catalog: stale names beat none.
    pub fn maybe_reload(&mut self) -> bool {
        if self.loaded_at.elapsed() < self.min_interval {
            return false;
        }
        self.loaded_at = Instant::now();
        match Catalog::load(&self.catalog.datadir) {
            Ok(c) => {
                self.catalog = c;
                self.reloads += 1;
                true
            }
            Err(_) => false,
        }
    }

    fn tablespace_links(&self) -> Vec<(u32, PathBuf)> {
        let mut out = Vec::new();
        for t in &self.catalog.tablespaces {
            if let Some(loc) = &t.location {
                out.push((t.oid, super::path::normalize(loc)));
                if let Ok(c) = std::fs::canonicalize(loc) {
                    out.push((t.oid, c));
                }
            }
        }
        out
    }

    pub fn resolve(&mut self, path: &Path) -> Resolved {
        let relpath = relative_to(path, &self.datadir_forms, &self.tablespace_links());
        let wal_seg = self.catalog.datadir.control.xlog_seg_size;
        let class = match &relpath {
            Some(r) => classify(r, wal_seg),
            None => PathClass::Other {
                what: "outside the data directory",
            },
        };
        let key = match &class {
            PathClass::Relation(r) | PathClass::TempRelation(r) => Some(r.locator),
            _ => None,
        };
        if let Some(k) = &key {
            if self.catalog.by_file(k).is_none() {
                self.maybe_reload();
            }
        }
        let cat = &self.catalog;
        let relation = key.as_ref().and_then(|k| cat.by_file(k)).cloned();
        let table = relation.as_ref().and_then(|r| cat.owner_of(r)).cloned();
        let database = key
            .and_then(|k| cat.database(k.db_oid))
            .map(|d| d.name.clone());
        Resolved {
            relpath,
            class,
            relation,
            table,
            database,
        }
    }
}
