//! The properties the fuzz targets check, in [`checks`]; the same file is compiled into
//! `protocols/tests/fuzz_corpus.rs`, which replays the committed corpus and crashers on stable.

pub mod checks;
