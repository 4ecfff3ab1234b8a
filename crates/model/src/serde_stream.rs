//! Serializing a map whose entries are produced on demand: a document too large to hold
//! whole (every host's configuration in a fabric of thousands) is written while its entries
//! are generated, one at a time.

use core::cell::Cell;

use serde::ser::{Error as _, Serialize, Serializer};

/// The `(key, value)` pairs of an iterator, serialized as a map. The iterator is consumed by
/// the first serialization; a second one is an error.
pub(crate) struct MapOnce<I>(Cell<Option<I>>);

impl<I> MapOnce<I> {
    /// The map of `entries`, in their order.
    pub(crate) const fn new(entries: I) -> Self {
        Self(Cell::new(Some(entries)))
    }
}

impl<I, K, V> Serialize for MapOnce<I>
where
    I: Iterator<Item = (K, V)>,
    K: Serialize,
    V: Serialize,
{
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let entries = self.0.take().ok_or_else(|| S::Error::custom("map already serialized"))?;
        serializer.collect_map(entries)
    }
}
