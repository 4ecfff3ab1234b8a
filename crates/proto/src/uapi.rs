//! The userspace API's text format (`get=1` / `set=1`), parsed and printed without I/O.
