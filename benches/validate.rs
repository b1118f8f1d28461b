//! Validator throughput: the JP-CLINS collection Bundle example (`Bundle-Bundle-CLINS-Observations-Example-01`,
//! padded to ~20 entries with copies of its Observation entries) — profile validator vs the JSON-schema-only
//! pass in the same run. Prints p50 and resources/s for both after warm-up.
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::Value;
use tobiume_gateway::validation;

fn bundle() -> Value {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/standards/jp-clins/ExampleJson/Bundle-Bundle-CLINS-Observations-Example-01.json");
    let mut b: Value = serde_json::from_str(&std::fs::read_to_string(p).expect("shared folder")).unwrap();
    let entries = b["entry"].as_array().unwrap().clone();
    let mut out = entries.clone();
    let mut i = 0;
    while out.len() < 20 {
        let mut e = entries[1 + i % (entries.len() - 1)].clone();
        let n = out.len();
        e["fullUrl"] = Value::String(format!("urn:uuid:00000000-0000-4000-8000-{n:012}"));
        if let Some(id) = e["resource"]["id"].as_str() {
            e["resource"]["id"] = Value::String(format!("{id}-{n}"));
        }
        out.push(e);
        i += 1;
    }
    b["entry"] = Value::Array(out);
    b
}

fn p50(mut f: impl FnMut(), n: usize) -> f64 {
    let mut t: Vec<f64> = (0..n).map(|_| { let s = Instant::now(); f(); s.elapsed().as_secs_f64() }).collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[n / 2]
}

fn bench(c: &mut Criterion) {
    let b = bundle();
    let v = validation::global().expect("profiles");
    let resources = 1 + b["entry"].as_array().unwrap().len();
    assert!(v.validate(&b, &[]).iter().all(|i| !i.is_error()), "bench bundle must be valid");
    validation::schema::check(&b).expect("schema");
    for _ in 0..50 {
        v.validate(&b, &[]);
    }
    let pv = p50(|| { std::hint::black_box(v.validate(&b, &[])); }, 300);
    let ps = p50(|| { let _ = std::hint::black_box(validation::schema::check(&b)); }, 300);
    eprintln!(
        "JP-CLINS collection Bundle, {} entries: profile validator p50 {:.3} ms ({:.0} resources/s); JSON-schema only p50 {:.3} ms ({:.0} resources/s); ratio {:.1}x",
        resources - 1, pv * 1e3, resources as f64 / pv, ps * 1e3, resources as f64 / ps, pv / ps
    );
    c.bench_function("validate/jp-clins-bundle-20/profile", |bn| bn.iter(|| v.validate(&b, &[])));
    c.bench_function("validate/jp-clins-bundle-20/schema-only", |bn| bn.iter(|| validation::schema::check(&b)));
}

criterion_group!(benches, bench);
criterion_main!(benches);
