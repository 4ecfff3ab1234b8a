//! Serde for the controller's validated text types (prefixes, endpoints, names): a value is
//! written as its `Display` text and read back through its `FromStr`, so a document is
//! checked where serde reads it and a mistake carries the parser's message.

/// Implements `Serialize` through `Display` and `Deserialize` through `FromStr` for each type.
macro_rules! serde_as_text {
    ($($ty:ty),+ $(,)?) => {$(
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )+};
}

pub(crate) use serde_as_text;
