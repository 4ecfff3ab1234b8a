//! Serde glue for public keys in their base64 form (`wgfabric-proto` stays serde-free).
//! Only public keys: secrets are never serialized.

use serde::{Deserialize, Deserializer, Serializer};
use wgfabric_proto::keys::PublicKey;

/// Writes `key` as its base64 text.
pub fn serialize<S: Serializer>(key: &PublicKey, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&key.to_base64())
}

/// Reads a key from its base64 text.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PublicKey, D::Error> {
    let text = String::deserialize(deserializer)?;
    PublicKey::from_base64(&text).map_err(serde::de::Error::custom)
}
