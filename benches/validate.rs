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

/// Resident set size of this process in MB (Linux `/proc/self/status` `VmRSS`; 0 elsewhere).
fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

fn bench(c: &mut Criterion) {
    let b = bundle();
    // start-up cost, as the server pays it on its warm-up thread: load the packages, then compile
    let rss0 = rss_mb();
    let t = Instant::now();
    let fresh = validation::Validator::load(&validation::profiles_dir()).expect("profiles");
    let load = t.elapsed();
    let rss1 = rss_mb();
    let t = Instant::now();
    let compiled = fresh.warm_up();
    let warm = t.elapsed();
    eprintln!(
        "start-up: load {} definitions {:.0} ms (+{:.0} MB RSS), warm-up {compiled} StructureDefinitions {:.0} ms (+{:.0} MB RSS); process RSS {:.0} MB (before loading {:.0} MB)",
        fresh.packages().len(), load.as_secs_f64() * 1e3, rss1 - rss0, warm.as_secs_f64() * 1e3, rss_mb() - rss1, rss_mb(), rss0
    );
    drop(fresh);
    let v = validation::global().expect("profiles");
    v.warm_up();
    let resources = 1 + b["entry"].as_array().unwrap().len();
    assert!(v.validate(&b, &[]).iter().all(|i| !i.is_error()), "bench bundle must be valid");
    validation::schema::check(&b).expect("schema");
    for _ in 0..50 {
        v.validate(&b, &[]);
    }
    if let Ok(secs) = std::env::var("VALIDATE_PERF_SECS") {
        // perf target: `VALIDATE_PERF_SECS=5 VALIDATE_PERF=profile|schema perf record -g …` loops one pass
        let secs: u64 = secs.parse().unwrap_or(5);
        let schema_only = std::env::var("VALIDATE_PERF").as_deref() == Ok("schema");
        let start = Instant::now();
        while start.elapsed().as_secs() < secs {
            if schema_only {
                let _ = std::hint::black_box(validation::schema::check(&b));
            } else {
                std::hint::black_box(v.validate(&b, &[]));
            }
        }
    }
    let pv = p50(|| { std::hint::black_box(v.validate(&b, &[])); }, 300);
    let ps = p50(|| { let _ = std::hint::black_box(validation::schema::check(&b)); }, 300);
    eprintln!(
        "JP-CLINS collection Bundle, {} entries: profile validator p50 {:.3} ms ({:.0} resources/s); JSON-schema only p50 {:.3} ms ({:.0} resources/s); ratio {:.1}x",
        resources - 1, pv * 1e3, resources as f64 / pv, ps * 1e3, resources as f64 / ps, pv / ps
    );
    if std::env::var_os("VALIDATE_BREAKDOWN").is_some() {
        breakdown(v, &b);
    }
    c.bench_function("validate/jp-clins-bundle-20/profile", |bn| bn.iter(|| v.validate(&b, &[])));
    c.bench_function("validate/jp-clins-bundle-20/schema-only", |bn| bn.iter(|| validation::schema::check(&b)));
}

/// `VALIDATE_BREAKDOWN=1`: the cost of each invariant the walk evaluates on the first Observation entry
/// (and its first contained resource), to see where the FHIRPath time goes.
fn breakdown(v: &validation::Validator, b: &Value) {
    use std::borrow::Cow;
    use tobiume_gateway::fhirpath::{self, Item};
    let obs = &b["entry"][1]["resource"];
    let contained = &obs["contained"][0];
    let urls = [
        ("Observation", "http://hl7.org/fhir/StructureDefinition/Observation", obs),
        ("Observation", "http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Observation_LabResult_eCS", obs),
        (contained["resourceType"].as_str().unwrap(), "http://hl7.org/fhir/StructureDefinition/Encounter", contained),
        ("Bundle", "http://hl7.org/fhir/StructureDefinition/Bundle", b),
        ("Bundle", "http://jpfhir.jp/fhir/clins/StructureDefinition/JP_Bundle_CLINS", b),
    ];
    if let Ok(x) = std::env::var("VALIDATE_LOOP") {
        // perf target: one expression on the first Observation, for ~3 s
        let e = fhirpath::parse(&x).expect("parses");
        let focus = [Item { value: Cow::Borrowed(obs), type_name: Some("Observation"), fhir_type: None }];
        let start = Instant::now();
        while start.elapsed().as_secs() < 3 {
            std::hint::black_box(fhirpath::evaluate_on(&e, &focus, obs));
        }
    }
    for x in [
        "descendants()",
        "descendants().count()",
        "%resource.descendants().reference",
        "%resource.descendants().as(canonical)",
        "%resource.descendants().as(uri)",
        "(%resource.descendants().reference | %resource.descendants().as(canonical) | %resource.descendants().as(uri) | %resource.descendants().as(url))",
        "contained.where(('#'+id in (%resource.descendants().reference | %resource.descendants().as(canonical) | %resource.descendants().as(uri) | %resource.descendants().as(url))))",
        "contained.descendants().where(reference = '#')",
        "text.div.exists()",
        "code",
    ] {
        let e = fhirpath::parse(x).expect("parses");
        let focus = [Item { value: Cow::Borrowed(obs), type_name: Some("Observation"), fhir_type: None }];
        let n = fhirpath::evaluate_on(&e, &focus, obs).len();
        let t = p50(|| { std::hint::black_box(fhirpath::evaluate_on(&e, &focus, obs)); }, 200);
        eprintln!("  {:>8.2} us  ({n} items) {x}", t * 1e6);
    }
    for (ty, url, r) in urls {
        let p = v.profile(url).expect("profile");
        for c in &p.elems[0].constraints {
            let Some(e) = &c.expr else { continue };
            let focus = [Item { value: Cow::Borrowed(r), type_name: Some(ty), fhir_type: None }];
            let t = p50(|| { std::hint::black_box(fhirpath::evaluate_on(e, &focus, r)); }, 200);
            eprintln!("  {:>8.2} us  {} {}", t * 1e6, url.rsplit('/').next().unwrap(), c.key);
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
