//! Placeholder until the scale bench lands.
fn main() {}
