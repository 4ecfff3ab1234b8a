//! Test-only helpers for system tests that need root and network namespaces.
#![forbid(unsafe_code)]
