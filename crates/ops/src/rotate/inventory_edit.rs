//! Writing a rotated key into the inventory: the one `public_key` value of the host's table
//! is replaced in the text, so comments, order and formatting stay as the operator wrote
//! them, and the result is parsed again to prove that only that key changed.

use std::path::Path;

use wgfabric_proto::keys::PublicKey;

use wgfabric_model::error::Error;
use wgfabric_model::inventory::Inventory;

/// The inventory `text` (read from `path`) with `host`'s public key `old` replaced by `new`.
///
/// # Errors
/// [`Error::Refused`] when the host's key is not written as `public_key = "OLD"` in its
/// `[host.NAME]` table (or anywhere exactly once), or when the result would change more
/// than that key; [`Error::Source`] when the text does not parse.
pub fn replace_public_key(
    path: &Path,
    text: &str,
    host: &str,
    old: &PublicKey,
    new: &PublicKey,
) -> Result<String, Error> {
    let before = Inventory::parse(path, text)?;
    let Some(entry) = before.hosts.get(host) else {
        return Err(Error::NotFound(format!("no host named `{host}` in the inventory")));
    };
    if entry.public_key != *old {
        return Err(Error::Refused(format!(
            "host `{host}` has key {} in the inventory, not {old}",
            entry.public_key
        )));
    }
    let (old_text, new_text) = (old.to_base64(), new.to_base64());
    let span = key_span(text, entry.line, &old_text)
        .or_else(|| unique_span(text, &old_text))
        .ok_or_else(|| {
            Error::Refused(format!(
                "cannot find `public_key = \"{old_text}\"` of host `{host}` in {}; edit it by hand",
                path.display()
            ))
        })?;
    let mut edited = text.to_owned();
    edited.replace_range(span, &new_text);
    let after = Inventory::parse(path, &edited)?;
    let only_the_key = after.hosts.len() == before.hosts.len()
        && after.hosts.iter().all(|(name, h)| {
            let expected = if name.as_str() == host { *new } else { before.hosts[name].public_key };
            h.public_key == expected && before.hosts.contains_key(name)
        });
    if !only_the_key {
        return Err(Error::Refused(format!(
            "replacing the key of `{host}` in {} would change more than that key; edit it by hand",
            path.display()
        )));
    }
    Ok(edited)
}

/// The byte range of `key` on the `public_key` line of the table that starts on line
/// `table_line` (1-based), if it is there.
fn key_span(text: &str, table_line: usize, key: &str) -> Option<core::ops::Range<usize>> {
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let number = index + 1;
        if number > table_line && line.trim_start().starts_with('[') {
            return None;
        }
        let is_key_line = line.split_once('=').is_some_and(|(name, _)| name.trim() == "public_key");
        if number > table_line && is_key_line {
            let at = line.find(key)?;
            return Some(offset + at..offset + at + key.len());
        }
        offset += line.len();
    }
    None
}

/// The byte range of `key` when it occurs exactly once in `text`.
fn unique_span(text: &str, key: &str) -> Option<core::ops::Range<usize>> {
    let mut found = text.match_indices(key);
    let (at, _) = found.next()?;
    found.next().is_none().then(|| at..at + key.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = wgfabric_model::example::INVENTORY;

    fn key(byte: u8) -> PublicKey {
        PublicKey::from_bytes([byte; 32])
    }

    #[test]
    fn only_the_hosts_key_changes() {
        let path = Path::new("fabric.toml");
        let inventory = Inventory::parse(path, EXAMPLE).unwrap();
        let old = inventory.hosts["relay-iad"].public_key;
        let edited = replace_public_key(path, EXAMPLE, "relay-iad", &old, &key(9)).unwrap();
        let after = Inventory::parse(path, &edited).unwrap();
        assert_eq!(after.hosts["relay-iad"].public_key, key(9));
        assert_eq!(after.hosts["relay-fra"].public_key, inventory.hosts["relay-fra"].public_key);
        let changed: Vec<(&str, &str)> =
            EXAMPLE.lines().zip(edited.lines()).filter(|(a, b)| a != b).collect();
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert!(changed[0].1.starts_with("public_key = \""));

        let error = replace_public_key(path, EXAMPLE, "relay-iad", &key(7), &key(9)).unwrap_err();
        assert!(error.to_string().contains("not"), "{error}");
        assert!(replace_public_key(path, EXAMPLE, "nobody", &old, &key(9)).is_err());
    }

    #[test]
    fn inline_tables_are_found_by_their_unique_key() {
        let text = format!(
            "[network.n]\nipv4 = \"10.1.0.0/24\"\n[host]\nr = {{ role = \"relay\", endpoint = \"r:1\", public_key = \"{}\" }}\n",
            key(4).to_base64()
        );
        let path = Path::new("fabric.toml");
        let edited = replace_public_key(path, &text, "r", &key(4), &key(5)).unwrap();
        assert!(edited.contains(&key(5).to_base64()) && !edited.contains(&key(4).to_base64()));
    }
}
