//! Per-major byte offsets of the catalog columns we read, relative to the tuple's data
//! area. Chosen once from PG_VERSION; the offsets follow each major's catalog headers
//! (`pg_class.h`, `pg_namespace.h`, ...).

pub const RELATION_RELATION_ID: u32 = 1259; // pg_class
pub const DATABASE_RELATION_ID: u32 = 1262; // pg_database
pub const TABLESPACE_RELATION_ID: u32 = 1213; // pg_tablespace
pub const NAMESPACE_RELATION_ID: u32 = 2615; // pg_namespace
pub const INDEX_RELATION_ID: u32 = 2610; // pg_index

pub const DEFAULTTABLESPACE_OID: u32 = 1663;
pub const GLOBALTABLESPACE_OID: u32 = 1664;
pub const PG_TOAST_NAMESPACE: u32 = 99;
pub const FIRST_NORMAL_OBJECT_ID: u32 = 16384;

/// Columns up to and including the last one we read, and the bytes they span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    pub natts: usize,
    pub len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgClassLayout {
    pub oid: usize,
    pub relname: usize,
    pub relnamespace: usize,
    pub relfilenode: usize,
    pub reltablespace: usize,
    pub reltoastrelid: usize,
    pub relisshared: usize,
    pub relpersistence: usize,
    pub relkind: usize,
    pub prefix: Prefix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgDatabaseLayout {
    pub oid: usize,
    pub datname: usize,
    pub datconnlimit: usize,
    pub dattablespace: usize,
    pub prefix: Prefix,
}

/// pg_namespace (oid, nspname) and pg_tablespace (oid, spcname) share this shape in 12–18.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OidNameLayout {
    pub oid: usize,
    pub name: usize,
    pub prefix: Prefix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgIndexLayout {
    pub indexrelid: usize,
    pub indrelid: usize,
    pub prefix: Prefix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogLayout {
    pub major: u32,
    pub pg_class: PgClassLayout,
    pub pg_database: PgDatabaseLayout,
    pub pg_namespace: OidNameLayout,
    pub pg_tablespace: OidNameLayout,
    pub pg_index: PgIndexLayout,
}

const PG_CLASS_12: PgClassLayout = PgClassLayout {
    oid: 0,
    relname: 4,
    relnamespace: 68,
    relfilenode: 88,
    reltablespace: 92,
    reltoastrelid: 108,
    relisshared: 113,
    relpersistence: 114,
    relkind: 115,
    prefix: Prefix {
        natts: 18,
        len: 116,
    },
};

/// PG18 inserted `relallfrozen` (int4) after `relallvisible`: everything after it moves by 4.
const PG_CLASS_18: PgClassLayout = PgClassLayout {
    reltoastrelid: 112,
    relisshared: 117,
    relpersistence: 118,
    relkind: 119,
    prefix: Prefix {
        natts: 19,
        len: 120,
    },
    ..PG_CLASS_12
};

/// PG12–14: datcollate and datctype are NameData, so dattablespace sits at 224.
const PG_DATABASE_12: PgDatabaseLayout = PgDatabaseLayout {
    oid: 0,
    datname: 4,
    datconnlimit: 208,
    dattablespace: 224,
    prefix: Prefix {
        natts: 13,
        len: 228,
    },
};
/// PG15–16: the collation columns became text (moved to the varlena part).
const PG_DATABASE_15: PgDatabaseLayout = PgDatabaseLayout {
    oid: 0,
    datname: 4,
    datconnlimit: 80,
    dattablespace: 92,
    prefix: Prefix { natts: 11, len: 96 },
};
/// PG17–18: `dathasloginevt` took a padding byte: same offsets, one more column.
const PG_DATABASE_17: PgDatabaseLayout = PgDatabaseLayout {
    prefix: Prefix { natts: 12, len: 96 },
    ..PG_DATABASE_15
};

const OID_NAME: OidNameLayout = OidNameLayout {
    oid: 0,
    name: 4,
    prefix: Prefix { natts: 2, len: 68 },
};

const PG_INDEX: PgIndexLayout = PgIndexLayout {
    indexrelid: 0,
    indrelid: 4,
    prefix: Prefix { natts: 2, len: 8 },
};

/// The layouts of `major`, as the per-major table (`crate::version`) names them.
pub fn catalog_layout(major: u32) -> Option<CatalogLayout> {
    use crate::version::{PgClassLayoutId, PgDatabaseLayoutId};
    let m = crate::version::of(major)?;
    let pg_class = match m.pg_class {
        PgClassLayoutId::V12 => PG_CLASS_12,
        PgClassLayoutId::V18 => PG_CLASS_18,
    };
    let pg_database = match m.pg_database {
        PgDatabaseLayoutId::V12 => PG_DATABASE_12,
        PgDatabaseLayoutId::V15 => PG_DATABASE_15,
        PgDatabaseLayoutId::V17 => PG_DATABASE_17,
    };
    Some(CatalogLayout {
        major,
        pg_class,
        pg_database,
        pg_namespace: OID_NAME,
        pg_tablespace: OID_NAME,
        pg_index: PG_INDEX,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_major_has_a_layout() {
        for m in crate::version::SUPPORTED {
            let l = catalog_layout(m).unwrap();
            assert!(l.pg_class.relkind < l.pg_class.prefix.len);
            assert!(l.pg_database.dattablespace + 4 <= l.pg_database.prefix.len);
        }
        assert!(catalog_layout(11).is_none());
        assert!(catalog_layout(19).is_none());
        assert_eq!(catalog_layout(18).unwrap().pg_class.relkind, 119);
        assert_eq!(catalog_layout(17).unwrap().pg_class.relkind, 115);
    }
}
