//! The JSON shapes docs/cli.md documents: each ` ```json shape=NAME ` block is an example of a
//! `--format json` output, and [`assert_shape`] holds a real output to it.
//!
//! How an example reads: an object has exactly the keys shown, but a key ending in `?` may be
//! absent; an object whose keys are placeholders in angle brackets (`"<host>"`) is a map, each
//! value of which looks like one of the placeholders'; each element of an array looks like one
//! of the elements shown (one per kind); a string, number or boolean may also be null, and a
//! null is always null.

use serde_json::Value;

use super::repo;

/// Every ` ```json shape=NAME ` block of docs/cli.md, by name.
pub fn documented() -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(repo().join("docs/cli.md")).unwrap();
    let mut shapes = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((number, line)) = lines.next() {
        let Some(name) = line.strip_prefix("```json shape=") else { continue };
        let block: Vec<&str> =
            lines.by_ref().map(|(_, line)| line).take_while(|line| *line != "```").collect();
        let value = serde_json::from_str(&block.join("\n")).unwrap_or_else(|error| {
            panic!("docs/cli.md:{}: the shape `{name}` is not JSON: {error}", number + 1)
        });
        shapes.push((name.trim().to_owned(), value));
    }
    shapes
}

/// Asserts that `real` (a verb's output) has the shape docs/cli.md documents as `name`.
pub fn assert_shape(name: &str, real: &str) {
    let shapes = documented();
    let (_, shape) = shapes
        .iter()
        .find(|(documented, _)| documented == name)
        .unwrap_or_else(|| panic!("docs/cli.md documents no shape `{name}`"));
    let real: Value = serde_json::from_str(real)
        .unwrap_or_else(|error| panic!("`{name}` printed no JSON ({error}):\n{real}"));
    if let Err(problem) = matches(shape, &real, "") {
        panic!("`{name}` is not as docs/cli.md shows it: {problem}\nreal output: {real:#}");
    }
}

/// Whether `real` has `shape`; where it first differs otherwise, `at` naming the place.
pub fn matches(shape: &Value, real: &Value, at: &str) -> Result<(), String> {
    match (shape, real) {
        (Value::Object(shape), Value::Object(real))
            if shape.keys().all(|key| key.starts_with('<')) =>
        {
            real.iter().try_for_each(|(key, value)| {
                any_matches(shape.values(), value, &format!("{at}.{key}"))
            })
        }
        (Value::Object(shape), Value::Object(real)) => {
            for (key, expected) in shape {
                let (name, optional) =
                    key.strip_suffix('?').map_or((key.as_str(), false), |name| (name, true));
                match real.get(name) {
                    Some(value) => matches(expected, value, &format!("{at}.{name}"))?,
                    None if optional => {}
                    None => return Err(format!("{at}.{name} is missing")),
                }
            }
            let documented =
                |key: &String| shape.contains_key(key) || shape.contains_key(&format!("{key}?"));
            match real.keys().find(|key| !documented(key)) {
                Some(key) => Err(format!("{at}.{key} is not documented")),
                None => Ok(()),
            }
        }
        (Value::Array(shape), Value::Array(real)) => real
            .iter()
            .enumerate()
            .try_for_each(|(index, value)| any_matches(shape, value, &format!("{at}[{index}]"))),
        (_, Value::Null) => Ok(()),
        (Value::String(_), Value::String(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::Bool(_), Value::Bool(_)) => Ok(()),
        (shape, real) => Err(format!("{at} is {real}, where the shape has {shape}")),
    }
}

/// Whether `real` matches one of `shapes`; the closest miss otherwise.
fn any_matches<'a>(
    shapes: impl IntoIterator<Item = &'a Value>,
    real: &Value,
    at: &str,
) -> Result<(), String> {
    let mut misses = Vec::new();
    for shape in shapes {
        match matches(shape, real, at) {
            Ok(()) => return Ok(()),
            Err(miss) => misses.push(miss),
        }
    }
    Err(if misses.is_empty() {
        format!("{at}: the shape shows no element")
    } else {
        misses.join("; or ")
    })
}
