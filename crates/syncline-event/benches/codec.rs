//! Encode/decode cost per record, direct reader/writer vs apache-avro's generic path.
//! `cargo bench -p syncline-event --bench codec` prints a markdown table.

use std::hint::black_box;
use std::time::Instant;

use syncline_event::{ChangeEvent, Limits, Op, SchemaRegistry};

fn per_record(n: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let reg = SchemaRegistry::builtin();
    let limits = Limits::default();
    let doc = format!(
        r#"{{"name":"lamp","price":12,"pad":"{}"}}"#,
        "x".repeat(1000)
    );
    let mut e = ChangeEvent::new("product", "p-000123", Op::Upsert, 42, "bench", Some(doc));
    e.invalidate = vec!["search:category:lamps".into()];
    let bytes = reg.encode(&e, &limits).unwrap_or_default();
    let n = 200_000;
    println!("| operation (1 KiB document, {n} records) | µs per record |");
    println!("|---|---|");
    let rows: [(&str, f64); 4] = [
        (
            "encode, direct",
            per_record(n, || {
                black_box(reg.encode(black_box(&e), &limits).ok());
            }),
        ),
        (
            "encode, apache-avro generic",
            per_record(n, || {
                black_box(reg.encode_generic(black_box(&e)).ok());
            }),
        ),
        (
            "decode + validate, direct",
            per_record(n, || {
                black_box(reg.decode(black_box(&bytes), &limits).ok());
            }),
        ),
        (
            "decode + validate, apache-avro resolving",
            per_record(n, || {
                black_box(reg.decode_resolving(black_box(&bytes), &limits).ok());
            }),
        ),
    ];
    for (name, us) in rows {
        println!("| {name} | {us:.2} |");
    }
}
