//! The manifest's YAML schema as serde reads it: exactly the keys a user may write (anything
//! else is refused with its location), values kept as written so that validation can check
//! them all and report every problem at once.
//!
//! Scalars are read as the text written: `timeout: 90`, `RUST_BACKTRACE: 1` and
//! `VERSION: 1.10` arrive as `"90"`, `"1"` and `"1.10"`. An environment value left null
//! (`A: ~`, `A:`) arrives as `None`, so that it is refused rather than set to the text `~`.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use crate::proto::Isolation;

/// The whole document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Manifest {
    /// Settings every job inherits.
    #[serde(default)]
    pub defaults: Defaults,
    /// Named file sets.
    #[serde(default, deserialize_with = "unique_keys")]
    pub layers: BTreeMap<String, Layer>,
    /// The jobs, in order.
    #[serde(default)]
    pub jobs: Vec<Job>,
    /// Test suites, in order.
    #[serde(default)]
    pub suites: Vec<super::suites::RawSuite>,
}

/// The `defaults:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Defaults {
    pub timeout: Option<String>,
    pub retries: Option<u32>,
    #[serde(default, deserialize_with = "unique_keys")]
    pub env: BTreeMap<String, Option<String>>,
    #[serde(default, rename = "secret-env")]
    pub secret_env: Vec<String>,
    pub layers: Option<Vec<String>>,
    pub isolation: Option<Isolation>,
    pub quarantine: Option<super::flaky::RawQuarantine>,
    #[serde(rename = "detect-new-flakes")]
    pub detect_new_flakes: Option<bool>,
    #[serde(rename = "new-test-runs")]
    pub new_test_runs: Option<u32>,
    #[serde(rename = "new-test-share")]
    pub new_test_share: Option<String>,
}

/// One entry of `layers:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Layer {
    pub paths: Vec<String>,
    #[serde(default, rename = "allow-outside")]
    pub allow_outside: bool,
}

/// One entry of `jobs:`. `name` and `run` are optional here so that a missing one is
/// reported together with every other problem instead of stopping the parse.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Job {
    pub name: Option<String>,
    pub run: Option<String>,
    pub estimate: Option<String>,
    #[serde(default)]
    pub outputs: Vec<String>,
    pub timeout: Option<String>,
    pub retries: Option<u32>,
    #[serde(default, deserialize_with = "unique_keys")]
    pub env: BTreeMap<String, Option<String>>,
    #[serde(default, rename = "secret-env")]
    pub secret_env: Vec<String>,
    pub layers: Option<Vec<String>>,
    pub isolation: Option<Isolation>,
}

/// Reads a mapping, refusing a key written twice (serde's maps keep the last one silently).
pub(super) fn unique_keys<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    deserializer.deserialize_map(UniqueMap(PhantomData))
}

/// Visits a mapping with unique keys.
struct UniqueMap<V>(PhantomData<V>);

impl<'de, V: Deserialize<'de>> Visitor<'de> for UniqueMap<V> {
    type Value = BTreeMap<String, V>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = BTreeMap::new();
        while let Some(key) = map.next_key_seed(NewKey(&entries))? {
            let value = map.next_value()?;
            entries.insert(key, value);
        }
        Ok(entries)
    }
}

/// Reads one key and refuses it if already seen. The check runs inside the key's own
/// visitor so that the error carries the position of the repeated key.
struct NewKey<'a, V>(&'a BTreeMap<String, V>);

impl<'de, V> DeserializeSeed<'de> for NewKey<'_, V> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<V> Visitor<'_> for NewKey<'_, V> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<String, E> {
        if self.0.contains_key(key) {
            return Err(E::custom(format_args!("key '{key}' is written twice")));
        }
        Ok(key.to_owned())
    }
}
