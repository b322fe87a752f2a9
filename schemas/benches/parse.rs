//! Times `parse_and_validate` on the examples and on hostile inputs, to back the claim that a
//! hostile manifest is refused in milliseconds. Run with
//! `cargo bench -p berth-schemas --bench parse`; prints median, min and max per input.

use std::time::{Duration, Instant};

use berth_schemas::{ParseLimits, parse_and_validate};

fn time(name: &str, input: &[u8], runs: usize) {
    let limits = ParseLimits::default();
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let result = parse_and_validate(std::hint::black_box(input), &limits);
            let elapsed = start.elapsed();
            std::hint::black_box(result.is_ok());
            elapsed
        })
        .collect();
    samples.sort();
    let ok = parse_and_validate(input, &limits).is_ok();
    println!(
        "{name:<40} {:>9} bytes  {}  median {:>10.3?}  min {:>10.3?}  max {:>10.3?}",
        input.len(),
        if ok { "valid  " } else { "refused" },
        samples[runs / 2],
        samples[0],
        samples[runs - 1],
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and must not start a benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read(root.join(p)).unwrap_or_default();
    time("examples/monitoring-stack.yaml", &read("../examples/monitoring-stack.yaml"), 200);
    time("examples/app-with-database.yaml", &read("../examples/app-with-database.yaml"), 200);
    time("bad/alias-bomb.yaml (billion laughs)", &read("tests/bad/alias-bomb.yaml"), 50);
    time("bad/deep-nesting.yaml", &read("tests/bad/deep-nesting.yaml"), 200);

    let mut big = b"apiVersion: berth.dev/v1\nkind: Container\nmetadata:\n  name: big\n  annotations:\n    blob: \"".to_vec();
    big.resize(10 * 1024 * 1024, b'x');
    big.extend_from_slice(b"\"\nspec:\n  image: nginx\n");
    time("10 MiB document", &big, 50);

    let deep = format!("a: {}{}", "[".repeat(100_000), "]".repeat(100_000));
    time("100 000 nested brackets", deep.as_bytes(), 50);

    let doc = "apiVersion: berth.dev/v1\nkind: Image\nmetadata:\n  name: img-N\nspec:\n  reference: busybox\n";
    let many: String =
        (0..1000).map(|i| format!("---\n{}", doc.replace('N', &i.to_string()))).collect();
    time("1000 Image documents", many.as_bytes(), 20);
}
