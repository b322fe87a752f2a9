//! Fuzzes the manifest parser: any bytes must give resources or located errors, never a panic,
//! and every error must point inside the input.
#![no_main]

use berth_schemas::{ParseLimits, parse_and_validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = ParseLimits { max_bytes: 64 * 1024, ..ParseLimits::default() };
    if let Err(errors) = parse_and_validate(data, &limits) {
        assert!(!errors.is_empty(), "an Err carries at least one error");
        // YAML ends a line at `\n`, `\r\n` or a lone `\r`.
        let lines = data
            .iter()
            .enumerate()
            .filter(|&(i, &b)| b == b'\n' || (b == b'\r' && data.get(i + 1) != Some(&b'\n')))
            .count() as u64
            + 1;
        for e in errors {
            assert!(e.line >= 1 && e.column >= 1, "unlocated error: {e:?}");
            assert!(e.line <= lines, "error past the end of the input: {e:?}");
        }
    }
});
