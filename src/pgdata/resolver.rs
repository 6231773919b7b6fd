//! Name any path of a cluster, keeping names fresh: a relation file the catalog does not
//! know (created since it was read) triggers a rate-limited re-read, and one still unknown
//! is reported with its numbers rather than dropped. While tracing, the catalog is also
//! re-read every interval ([`Resolver::refresh`]): a rename changes no file. With an
//! [`Overlay`] the pages and transaction status come from the server's memory, so a DDL
//! is seen as soon as it commits rather than after the next checkpoint.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::catalog::{Catalog, DiskOnly, Overlay, Relation};
use super::path::{classify, relative_to, PathClass};
use super::{DataDir, PgDataError};

/// The default minimum time between two catalog re-reads for an unknown file.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// The least time between two per-interval re-reads ([`Resolver::refresh`]).
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_millis(100);

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

/// Whether two reads of the catalog name every file and OID alike (relations are listed in
/// a stable order: by database, then OID).
fn same_names(a: &Catalog, b: &Catalog) -> bool {
    a.relations == b.relations && a.databases == b.databases && a.tablespaces == b.tablespaces
}

pub struct Resolver {
    catalog: Catalog,
    datadir_forms: Vec<PathBuf>,
    loaded_at: Instant,
    min_interval: Duration,
    reloads: u64,
    overlay: Box<dyn Overlay + Send>,
    /// Refreshes that found nothing changed and did not re-read.
    skipped: u64,
    /// Bumped each time a re-read changed what some file or OID is called.
    generation: u64,
}

impl Resolver {
    pub fn new(dd: &DataDir) -> Result<Resolver, PgDataError> {
        Resolver::with_overlay(dd, Box::new(DiskOnly))
    }

    /// A resolver whose catalog reads take pages and transaction status from `overlay`
    /// (shared memory) where it has them.
    pub fn with_overlay(
        dd: &DataDir,
        mut overlay: Box<dyn Overlay + Send>,
    ) -> Result<Resolver, PgDataError> {
        let catalog = Catalog::load_with(dd, overlay.as_mut())?;
        let mut r = Resolver::from_catalog(catalog);
        r.overlay = overlay;
        // Reading from memory is cheap: an unknown file may ask as often as a refresh.
        r.min_interval = MIN_REFRESH_INTERVAL;
        Ok(r)
    }

    pub fn from_catalog(catalog: Catalog) -> Resolver {
        let root = &catalog.datadir.root;
        let mut datadir_forms = vec![super::path::normalize(root)];
        if let Ok(c) = std::fs::canonicalize(root) {
            if !datadir_forms.contains(&c) {
                datadir_forms.push(c);
            }
        }
        // A server in a container opens files by its own path, not the one we read by.
        if let Some(inside) = &catalog.datadir.inside {
            datadir_forms.insert(0, super::path::normalize(inside));
        }
        Resolver {
            catalog,
            datadir_forms,
            loaded_at: Instant::now(),
            min_interval: DEFAULT_RELOAD_INTERVAL,
            reloads: 0,
            overlay: Box::new(DiskOnly),
            skipped: 0,
            generation: 0,
        }
    }

    pub fn with_reload_interval(mut self, d: Duration) -> Resolver {
        self.min_interval = d;
        self
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Refreshes that found the catalog's pages, files and running transactions
    /// unchanged, and so did not re-read it.
    pub fn refreshes_skipped(&self) -> u64 {
        self.skipped
    }

    /// How many times the catalog was re-read since this resolver was made.
    pub fn reloads(&self) -> u64 {
        self.reloads
    }

    /// The overlay, to ask it why it is off or how much it cost.
    pub fn overlay(&self) -> &dyn Overlay {
        self.overlay.as_ref()
    }

    /// Read the disk only from now on (memory reading switched off).
    /// The catalog alone, for a one-shot reader.
    pub fn into_catalog(self) -> Catalog {
        self.catalog
    }

    pub fn drop_overlay(&mut self) {
        self.overlay = Box::new(DiskOnly);
    }

    /// Changes each time a re-read changed a name: what the model has named before may
    /// be stale.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Re-read the catalog now unless the last read was less than the interval ago.
    /// A failed re-read keeps the old catalog: stale names beat none.
    pub fn maybe_reload(&mut self) -> bool {
        if self.loaded_at.elapsed() < self.min_interval {
            return false;
        }
        self.reload()
    }

    /// Re-read the catalog now, whenever the last read was.
    pub fn reload(&mut self) -> bool {
        self.loaded_at = Instant::now();
        match Catalog::load_with(&self.catalog.datadir, self.overlay.as_mut()) {
            Ok(c) => {
                if !same_names(&self.catalog, &c) {
                    self.generation += 1;
                }
                self.catalog = c;
                self.reloads += 1;
                true
            }
            Err(_) => false,
        }
    }

    /// Once per display interval: re-read the catalog (from shared buffers where it can:
    /// cheap), at most every [`MIN_REFRESH_INTERVAL`]. True when names changed.
    pub fn refresh(&mut self) -> bool {
        if self.loaded_at.elapsed() < MIN_REFRESH_INTERVAL {
            return false;
        }
        // Memory that stopped answering is a change in itself (the note, the disk's names).
        if self.catalog.fresh == self.overlay.fresh()
            && self.catalog.unchanged(self.overlay.as_mut())
        {
            self.loaded_at = Instant::now();
            self.skipped += 1;
            return false;
        }
        let before = self.generation;
        self.reload();
        self.generation != before
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
