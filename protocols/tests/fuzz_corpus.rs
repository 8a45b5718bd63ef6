//! Replays the fuzzers' committed seed corpus and minimized crashers (`fuzz/corpus/<target>/*`,
//! `fuzz/artifacts/<target>/*`) as an ordinary test on stable, with the same checks the
//! cargo-fuzz targets run (`fuzz/src/checks.rs`, included below): no panic, buffers within the
//! limit, and any chunking decodes like one whole-buffer feed. Then the same property under
//! proptest (catalogue test 33), 256 cases per property, with proptest's failure persistence
//! left on (the default `proptest-regressions/` directory), so a failing case is saved, committed
//! with its fix, and replayed first on every later run.

#[path = "../../fuzz/src/checks.rs"]
#[allow(dead_code)]
mod checks;

use std::path::{Path, PathBuf};

use checks::{check, Framer};
use proptest::prelude::*;

const TARGETS: [(&str, Framer); 5] = [
    ("line", Framer::Line),
    ("int8", Framer::Int8),
    ("int16", Framer::Int16),
    ("int32", Framer::Int32),
    ("netstring", Framer::Netstring),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Every file under `fuzz/<kind>/<target>/`, sorted.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else { return Vec::new() };
    let mut files: Vec<PathBuf> = dir
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    files.sort();
    files
}

#[test]
fn the_seed_corpus_and_every_minimized_crasher_pass_the_fuzz_checks() {
    let mut total = 0;
    for (target, framer) in TARGETS {
        let seeds = inputs("corpus", target);
        assert!(!seeds.is_empty(), "fuzz/corpus/{target} has no seeds");
        for path in seeds.iter().chain(&inputs("artifacts", target)) {
            let data = std::fs::read(path).unwrap();
            let result = std::panic::catch_unwind(|| check(framer, &data));
            assert!(result.is_ok(), "{} fails the {target} checks", path.display());
            total += 1;
        }
    }
    println!("fuzz corpus: {total} inputs replayed");
}

/// Frames of random bytes (delimiter bytes likely), valid for `framer` at the fuzzers' limit.
fn encoded(framer: Framer, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        match framer {
            Framer::Line => {
                out.extend(f.iter().filter(|&&b| b != b'\r' && b != b'\n'));
                out.extend_from_slice(b"\r\n");
            }
            Framer::Int8 => {
                out.push(f.len() as u8);
                out.extend_from_slice(f);
            }
            Framer::Int16 => {
                out.extend_from_slice(&(f.len() as u16).to_be_bytes());
                out.extend_from_slice(f);
            }
            Framer::Int32 => {
                out.extend_from_slice(&(f.len() as u32).to_be_bytes());
                out.extend_from_slice(f);
            }
            Framer::Netstring => {
                out.extend_from_slice(format!("{}:", f.len()).as_bytes());
                out.extend_from_slice(f);
                out.push(b',');
            }
        }
    }
    out
}

fn frame() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![Just(b'\r'), Just(b'\n'), Just(b':'), Just(b','), any::<u8>()];
    proptest::collection::vec(byte, 0..=checks::MAX)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Valid frames split at random points decode as one feed, for every framer.
    #[test]
    fn valid_frames_split_anywhere_decode_as_one_feed(
        frames in proptest::collection::vec(frame(), 0..12),
        sizes in proptest::collection::vec(any::<u8>(), 4),
    ) {
        for (_, framer) in TARGETS {
            let mut input = sizes.clone();
            input.extend(encoded(framer, &frames));
            check(framer, &input);
        }
    }

    /// Junk never panics and stays within the limit, split anywhere.
    #[test]
    fn junk_split_anywhere_never_panics(input in proptest::collection::vec(any::<u8>(), 0..600)) {
        for (_, framer) in TARGETS {
            check(framer, &input);
        }
    }
}
