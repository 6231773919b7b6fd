//! `&'static str` fields of the model (relation kinds, file classes, fork and operation
//! names) through serde, for a replay's checkpoints stored in a recording: the text comes
//! back as the one `&'static str` the model uses for it. Those come from a small fixed
//! set, so a text seen before is given back from a table; a new one is leaked once, and
//! past [`MAX_INTERNED`] of them (a hostile file) anything new reads as `?`.

use serde::{Deserialize, Deserializer, Serializer};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// Distinct texts ever leaked: pg_trace's own are a few dozen.
const MAX_INTERNED: usize = 1024;

static TABLE: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

/// The `&'static str` for `s`.
pub fn intern(s: &str) -> &'static str {
    let Ok(mut t) = TABLE.lock() else {
        return "?";
    };
    if let Some(k) = t.get(s) {
        return k;
    }
    if t.len() >= MAX_INTERNED {
        return "?";
    }
    let k: &'static str = Box::leak(s.to_string().into_boxed_str());
    t.insert(k);
    k
}

pub fn serialize<S: Serializer>(s: &&'static str, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
    Ok(intern(&s))
}

/// `Option<&'static str>`.
pub mod opt {
    use super::*;

    pub fn serialize<S: Serializer>(s: &Option<&'static str>, ser: S) -> Result<S::Ok, S::Error> {
        match s {
            Some(s) => ser.serialize_some(s),
            None => ser.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'static str>, D::Error> {
        let s = Option::<std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(s.map(|s| intern(&s)))
    }
}

/// `BTreeSet<&'static str>`.
pub mod set {
    use super::*;
    use serde::Serialize;

    pub fn serialize<S: Serializer>(s: &BTreeSet<&'static str>, ser: S) -> Result<S::Ok, S::Error> {
        s.serialize(ser)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeSet<&'static str>, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        Ok(v.iter().map(|s| intern(s)).collect())
    }
}

/// A map keyed by `(Option<&'static str>, K)`: as a list of entries.
pub mod opt_keyed {
    use super::*;
    use serde::Serialize;

    type Keyed<K, V> = BTreeMap<(Option<&'static str>, K), V>;

    pub fn serialize<S, K, V>(m: &Keyed<K, V>, ser: S) -> Result<S::Ok, S::Error>
    where
        S: Serializer,
        K: Serialize,
        V: Serialize,
    {
        ser.collect_seq(m.iter().map(|((a, k), v)| (a, k, v)))
    }

    pub fn deserialize<'de, D, K, V>(d: D) -> Result<Keyed<K, V>, D::Error>
    where
        D: Deserializer<'de>,
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
    {
        let v = Vec::<(Option<String>, K, V)>::deserialize(d)?;
        Ok(v.into_iter()
            .map(|(a, k, v)| ((a.as_deref().map(intern), k), v))
            .collect())
    }
}

/// `&'static str` under another name: serde's derive takes a field spelt `&str` as
/// borrowed from the input (which a checkpoint's bytes do not outlive).
pub type Static = &'static str;
