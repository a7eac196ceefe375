//! A map for the engine's few configured names (channels, policies).

use std::collections::HashMap;
use std::hash::Hash;

/// A map from a configured id to its value, for the handful of channels and policies an engine
/// has. Looked up several times per cascade, always with ids that came from the configuration
/// (a step's channel, a record's policy), so the lookup scans: the ids are `Arc<str>`, whose
/// equality compares pointers first, and an id cloned from the configuration shares its
/// allocation. That costs a few instructions where hashing the string cost dozens. Past
/// [`SCAN`] entries, or for an id that is equal without sharing (a record read back from a
/// database), it is still one comparison per entry, so a large map hashes instead.
#[derive(Debug)]
pub(crate) struct IdMap<K, V> {
    entries: Vec<(K, V)>,
    /// Positions in `entries`, for maps larger than [`SCAN`].
    index: HashMap<K, usize, foldhash::fast::RandomState>,
}

/// Up to this many entries, a lookup scans rather than hashes.
const SCAN: usize = 8;

impl<K: Eq + Hash + Clone, V> Default for IdMap<K, V> {
    fn default() -> Self {
        IdMap {
            entries: Vec::new(),
            index: HashMap::default(),
        }
    }
}

impl<K: Eq + Hash + Clone, V> IdMap<K, V> {
    fn position(&self, key: &K) -> Option<usize> {
        if self.entries.len() <= SCAN {
            self.entries.iter().position(|(k, _)| k == key)
        } else {
            self.index.get(key).copied()
        }
    }

    /// The value under `key`.
    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.position(key).map(|i| &self.entries[i].1)
    }

    /// The value under `key`, to change.
    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.position(key).map(|i| &mut self.entries[i].1)
    }

    /// The key as stored, with its value.
    pub(crate) fn get_key_value(&self, key: &K) -> Option<(&K, &V)> {
        self.position(key).map(|i| {
            let (k, v) = &self.entries[i];
            (k, v)
        })
    }

    /// Whether `key` has a value.
    pub(crate) fn contains_key(&self, key: &K) -> bool {
        self.position(key).is_some()
    }

    /// Sets the value under `key`; returns the one it replaces.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        if let Some(i) = self.position(&key) {
            return Some(std::mem::replace(&mut self.entries[i].1, value));
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value));
        None
    }

    /// Every key, in insertion order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.iter().map(|(k, _)| k)
    }

    /// Every value, in insertion order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Every entry, in insertion order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

impl<K: Eq + Hash + Clone, V> FromIterator<(K, V)> for IdMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = IdMap::default();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_core::ChannelId;

    #[test]
    fn finds_equal_ids_whether_or_not_they_share_their_string() {
        for n in [1, SCAN, SCAN + 1, 40] {
            let ids: Vec<ChannelId> = (0..n).map(|i| ChannelId::new(format!("ch-{i}"))).collect();
            let mut map: IdMap<ChannelId, usize> = ids.iter().cloned().zip(0..).collect();
            for (i, id) in ids.iter().enumerate() {
                // Shared, as a step's channel is; and equal only, as one read from a database.
                assert_eq!(map.get(&id.clone()), Some(&i), "{n} entries");
                assert_eq!(
                    map.get(&ChannelId::new(id.as_str())),
                    Some(&i),
                    "{n} entries"
                );
            }
            assert_eq!(map.get(&ChannelId::new("ch-x")), None);
            assert_eq!(map.insert(ids[0].clone(), 99), Some(0));
            *map.get_mut(&ChannelId::new("ch-0")).expect("present") += 1;
            assert_eq!(map.get(&ids[0]), Some(&100));
            assert_eq!(map.keys().count(), n, "replacing adds no entry");
        }
    }
}
