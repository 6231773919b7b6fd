//! The identity of a relation's files, as PostgreSQL has it: a `RelFileLocator`
//! (tablespace, database, relfilenumber) plus the owning backend of a temp relation,
//! then a fork and a 1 GiB segment for one file of it. One `relpath`, as `relpath.c`'s
//! GetRelationPath builds it, turns any of them into the path `pg_relation_filepath()`
//! prints; [`RelFileSegment::parse`] is its inverse for a file name.

use serde::{Deserialize, Serialize};

use super::layout::{DEFAULTTABLESPACE_OID, GLOBALTABLESPACE_OID};

/// What the tablespace directory of a path is called when the catalog version is not
/// known (a buffer tag named before any catalog was read).
pub const UNKNOWN_VERSION_DIR: &str = "?";

/// `ForkNumber` of `relpath.h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fork {
    Main,
    Fsm,
    Vm,
    Init,
}

impl Fork {
    /// As `forkNames[]` in `relpath.c` spells them.
    pub fn as_str(self) -> &'static str {
        match self {
            Fork::Main => "main",
            Fork::Fsm => "fsm",
            Fork::Vm => "vm",
            Fork::Init => "init",
        }
    }

    /// `MAIN_FORKNUM` (0) … `INIT_FORKNUM` (3); anything else is not a fork.
    pub fn from_number(n: i64) -> Option<Fork> {
        Some(match n {
            0 => Fork::Main,
            1 => Fork::Fsm,
            2 => Fork::Vm,
            3 => Fork::Init,
            _ => return None,
        })
    }

    pub fn number(self) -> i32 {
        self as i32
    }

    /// What a fork adds to the file name: nothing for the main fork.
    fn suffix(self) -> &'static str {
        match self {
            Fork::Main => "",
            Fork::Fsm => "_fsm",
            Fork::Vm => "_vm",
            Fork::Init => "_init",
        }
    }
}

/// A relation's storage: `RelFileLocator` + the backend of a temp relation
/// (`RelFileLocatorBackend`). Every fork and segment of one relation shares it, so it is
/// what relations are keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RelFileLocator {
    /// Tablespace OID: 1663 for `base/`, 1664 for `global/`.
    pub spc_oid: u32,
    /// Database OID, 0 for shared relations in `global/`.
    pub db_oid: u32,
    /// The number in the file name (`pg_relation_filenode()`), not pg_class.oid.
    pub rel_number: u32,
    /// BackendId (12–16) or ProcNumber (17–18) owning a temp relation: the `N` of `t<N>_`.
    pub backend: Option<u32>,
}

impl RelFileLocator {
    pub fn is_temp(&self) -> bool {
        self.backend.is_some()
    }

    /// The main fork's first segment: exactly what `pg_relation_filepath()` prints.
    /// `version_dir` is `PG_<major>_<catversion>`, used only under `pg_tblspc/`.
    pub fn relpath(&self, version_dir: &str) -> String {
        self.fork_path(Fork::Main, version_dir)
    }

    /// GetRelationPath: one fork's first segment.
    pub fn fork_path(&self, fork: Fork, version_dir: &str) -> String {
        let file = match self.backend {
            Some(b) => format!("t{b}_{}{}", self.rel_number, fork.suffix()),
            None => format!("{}{}", self.rel_number, fork.suffix()),
        };
        match self.spc_oid {
            GLOBALTABLESPACE_OID => format!("global/{file}"),
            DEFAULTTABLESPACE_OID => format!("base/{}/{file}", self.db_oid),
            spc => format!("pg_tblspc/{spc}/{version_dir}/{}/{file}", self.db_oid),
        }
    }

    pub fn segment(self, fork: Fork, segment: u32) -> RelFileSegment {
        RelFileSegment {
            locator: self,
            fork,
            segment,
        }
    }
}

/// One file of a relation: `[t<backend>_]<relnumber>[_<fork>][.<segment>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelFileSegment {
    pub locator: RelFileLocator,
    pub fork: Fork,
    /// The 1 GiB segment number: 0 has no `.N` suffix.
    pub segment: u32,
}

impl RelFileSegment {
    /// The file's path relative to the data directory.
    pub fn relpath(&self, version_dir: &str) -> String {
        let path = self.locator.fork_path(self.fork, version_dir);
        match self.segment {
            0 => path,
            n => format!("{path}.{n}"),
        }
    }

    /// Parse a file name found in database `db` of tablespace `spc`.
    pub fn parse(name: &str, spc_oid: u32, db_oid: u32) -> Option<RelFileSegment> {
        let (backend, rest) = match name.strip_prefix('t') {
            Some(r) => {
                let (n, r) = r.split_once('_')?;
                (Some(digits(n)?), r)
            }
            None => (None, name),
        };
        let (base, segment) = match rest.split_once('.') {
            Some((b, s)) => {
                let seg = digits(s)?;
                if seg == 0 {
                    return None; // segment 0 has no suffix
                }
                (b, seg)
            }
            None => (rest, 0),
        };
        let (num, fork) = match base.split_once('_') {
            Some((n, "fsm")) => (n, Fork::Fsm),
            Some((n, "vm")) => (n, Fork::Vm),
            Some((n, "init")) => (n, Fork::Init),
            Some(_) => return None,
            None => (base, Fork::Main),
        };
        let rel_number = digits(num)?;
        if rel_number == 0 {
            return None;
        }
        Some(RelFileSegment {
            locator: RelFileLocator {
                spc_oid,
                db_oid,
                rel_number,
                backend,
            },
            fork,
            segment,
        })
    }
}

/// A decimal OID-sized number as PostgreSQL writes it: no sign, no padding past u32.
pub(crate) fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgdata::path::{classify, PathClass};

    const VERSION_DIR: &str = "PG_15_202209061";

    fn segment_of(path: &str) -> RelFileSegment {
        match classify(path, 16 << 20) {
            PathClass::Relation(f) | PathClass::TempRelation(f) => f,
            other => panic!("{path}: {other:?}"),
        }
    }

    /// Every kind of relation file goes path → classify → locator → relpath unchanged.
    #[test]
    fn every_kind_of_path_round_trips() {
        for path in [
            "base/5/1259",
            "base/16384/24577.3",
            "base/5/1259_fsm",
            "base/5/16385_vm.2",
            "base/5/16385_init",
            "global/1262",
            "global/1262_vm",
            "base/16384/t3_16397",
            "base/5/t18_16400_fsm.1",
            "pg_tblspc/16390/PG_15_202209061/16391/16400",
            "pg_tblspc/16390/PG_15_202209061/16391/16400.1",
            "pg_tblspc/16390/PG_15_202209061/16391/t7_16400_init",
            "base/5/4294967295.4095",
        ] {
            let f = segment_of(path);
            assert_eq!(f.relpath(VERSION_DIR), path);
            let main = path.split('.').next().unwrap();
            let main = main
                .trim_end_matches("_fsm")
                .trim_end_matches("_vm")
                .trim_end_matches("_init");
            assert_eq!(f.locator.relpath(VERSION_DIR), main, "{path}");
        }
    }

    #[test]
    fn locators_name_relpath_c_paths() {
        let l = |spc_oid, backend| RelFileLocator {
            spc_oid,
            db_oid: 5,
            rel_number: 16384,
            backend,
        };
        assert_eq!(l(1663, None).relpath(VERSION_DIR), "base/5/16384");
        assert_eq!(
            l(1664, None).fork_path(Fork::Fsm, VERSION_DIR),
            "global/16384_fsm"
        );
        assert_eq!(
            l(1663, Some(3)).fork_path(Fork::Vm, VERSION_DIR),
            "base/5/t3_16384_vm"
        );
        assert_eq!(
            l(16500, None).relpath(VERSION_DIR),
            "pg_tblspc/16500/PG_15_202209061/5/16384"
        );
        assert_eq!(
            l(16500, None).segment(Fork::Init, 2).relpath("?"),
            "pg_tblspc/16500/?/5/16384_init.2"
        );
        assert!(l(1663, Some(0)).is_temp());
    }

    #[test]
    fn forks_by_number() {
        for f in [Fork::Main, Fork::Fsm, Fork::Vm, Fork::Init] {
            assert_eq!(Fork::from_number(f.number().into()), Some(f));
        }
        assert_eq!(Fork::from_number(-1), None);
        assert_eq!(Fork::from_number(4), None);
    }

    #[test]
    fn not_relation_file_names() {
        for bad in [
            "16385.0",
            "16385_foo",
            "abc",
            "0",
            "1.x",
            "t_1",
            "tx_1",
            "t1_",
            "1_",
            "",
        ] {
            assert_eq!(RelFileSegment::parse(bad, 1663, 5), None, "{bad}");
        }
    }
}
