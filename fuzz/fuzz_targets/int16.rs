//! Fuzzes the int16 decoder: any bytes, split anywhere, never panic, stay within the limit, and
//! decode as a single whole-buffer feed does (see `torsion_fuzz::checks`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use torsion_fuzz::checks::{check, Framer};

fuzz_target!(|data: &[u8]| check(Framer::Int16, data));
