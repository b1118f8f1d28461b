//! Search SQL planning tests on both backends, with hand-made index rows (so they do not depend on the
//! extractor in `search::index`). FHIR R4 search.html semantics per parameter type.

#![allow(clippy::field_reassign_with_default)]

#[path = "../../tests/common/pg.rs"]
mod pg;

use super::shared::IndexRows;
use super::*;
use crate::search::{
    Chain, Include, Modifier, ParamType, Prefix, SearchParam, SearchQuery, SearchValue, SortKey, TokenSystem,
    TotalMode,
};

impl Store {
    async fn put_indexed(&self, rtype: &str, id: &str, body: &str, rows: IndexRows) -> StoredResource {
        match self {
            Store::Sqlite(s) => s.test_put_indexed(rtype, id, body, rows).await,
            Store::Postgres(s) => s.test_put_indexed(rtype, id, body, rows).await,
        }
        .expect("put")
    }
}

const DAY: i64 = 86_400_000;
/// Days since 1970-01-01 (UTC) for y-m-d (civil calendar).
fn day(y: i64, m: i64, d: i64) -> (i64, i64) {
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * DAY, days * DAY + DAY - 1)
}

fn q(rt: &str, params: Vec<SearchParam>) -> SearchQuery {
    SearchQuery {
        resource_type: rt.into(),
        params,
        sort: vec![],
        count: 20,
        offset: 0,
        total: None,
        summary: None,
        elements: vec![],
        includes: vec![],
        revincludes: vec![],
        ignored: vec![],
    }
}

fn sp(code: &str, t: ParamType, modifier: Option<Modifier>, values: Vec<SearchValue>) -> SearchParam {
    SearchParam { code: code.into(), param_type: t, modifier, values, chain: None }
}

fn s_val(text: &str) -> SearchValue {
    SearchValue::String { exact: text.into(), normalized: text.replace(' ', "").to_lowercase() }
}

fn tok(system: TokenSystem, code: Option<&str>) -> SearchValue {
    SearchValue::Token { system, code: code.map(str::to_string) }
}

fn date(prefix: Prefix, (lo, hi): (i64, i64)) -> SearchValue {
    SearchValue::Date { prefix, lo_ms: lo, hi_ms: hi }
}

fn num(prefix: Prefix, v: f64, half: f64) -> (Prefix, f64, f64, f64) {
    (prefix, v, v - half, v + half)
}

async fn ids(s: &Store, query: &SearchQuery) -> Vec<String> {
    s.search(query).await.expect("search").matches.into_iter().map(|r| r.id).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

async fn seed(s: &Store) {
    let gender = "http://hl7.org/fhir/administrative-gender";
    let name = |e: &str| ("name".to_string(), e.to_string(), e.replace(' ', "").to_lowercase());
    let mut r = IndexRows::default();
    r.string = vec![name("山田 太郎"), name("ヤマダ タロウ")];
    r.date = vec![("birthdate".into(), day(1970, 1, 1).0, day(1970, 1, 1).1)];
    r.token = vec![
        ("gender".into(), Some(gender.into()), "male".into(), None),
        ("identifier".into(), Some("urn:oid:1.2.392.100495.20.3.51.11234567890".into()), "00001".into(), None),
    ];
    s.put_indexed("Patient", "p1", r#"{"resourceType":"Patient"}"#, r).await;
    let mut r = IndexRows::default();
    r.string = vec![name("山田 花子")];
    r.date = vec![("birthdate".into(), day(1985, 5, 5).0, day(1985, 5, 5).1)];
    r.token = vec![("gender".into(), Some(gender.into()), "female".into(), Some("女性".into()))];
    s.put_indexed("Patient", "p2", r#"{"resourceType":"Patient"}"#, r).await;
    let mut r = IndexRows::default();
    r.string = vec![name("佐藤 次郎")];
    r.token = vec![("gender".into(), Some(gender.into()), "male".into(), None)];
    s.put_indexed("Patient", "p3", r#"{"resourceType":"Patient"}"#, r).await;

    let obs = |pid: &str, code: &str, d: (i64, i64), v: f64, half: f64, unit: &str| {
        let mut r = IndexRows::default();
        for p in ["subject", "patient"] {
            r.reference.push((p.into(), Some("Patient".into()), pid.into(), format!("Patient/{pid}")));
        }
        r.token = vec![("code".into(), Some("http://loinc.org".into()), code.into(), None)];
        r.date = vec![("date".into(), d.0, d.1)];
        r.quantity = vec![(
            "value-quantity".into(),
            v,
            v - half,
            v + half,
            Some("http://unitsofmeasure.org".into()),
            Some(unit.into()),
            Some(unit.into()),
        )];
        r
    };
    let t = |h: i64| (day(2024, 1, 1).0 + h * 3_600_000, day(2024, 1, 1).0 + h * 3_600_000);
    s.put_indexed("Observation", "o1", r#"{"resourceType":"Observation"}"#, obs("p1", "1234-5", t(10), 1.50, 0.005, "mmol/L")).await;
    s.put_indexed("Observation", "o2", r#"{"resourceType":"Observation"}"#, obs("p1", "1234-5", t(24 * 31), 3.0, 0.05, "mmol/L")).await;
    s.put_indexed("Observation", "o3", r#"{"resourceType":"Observation"}"#, obs("p2", "9999-9", t(24 * 60), 100.0, 0.5, "mg/dL")).await;

    let mut r = IndexRows::default();
    r.number = vec![("probability".into(), 0.25, 0.245, 0.255)];
    s.put_indexed("RiskAssessment", "r1", r#"{"resourceType":"RiskAssessment"}"#, r).await;
    for (id, url) in [("vs1", "http://example.org/vs/a"), ("vs2", "http://example.org/vs/b")] {
        let mut r = IndexRows::default();
        r.uri = vec![("url".into(), url.into())];
        s.put_indexed("ValueSet", id, r#"{"resourceType":"ValueSet"}"#, r).await;
    }
}

async fn search_semantics(s: &Store) {
    use ParamType as T;
    seed(s).await;
    // string: starts-with on normalized, :exact, :contains
    assert_eq!(sorted(ids(s, &q("Patient", vec![sp("name", T::String, None, vec![s_val("山田")])])).await), strs(&["p1", "p2"]));
    assert_eq!(ids(s, &q("Patient", vec![sp("name", T::String, Some(Modifier::Exact), vec![s_val("山田 太郎")])])).await, strs(&["p1"]));
    assert_eq!(ids(s, &q("Patient", vec![sp("name", T::String, Some(Modifier::Exact), vec![s_val("山田太郎")])])).await, Vec::<String>::new());
    assert_eq!(ids(s, &q("Patient", vec![sp("name", T::String, Some(Modifier::Contains), vec![s_val("太郎")])])).await, strs(&["p1"]));
    assert_eq!(ids(s, &q("Patient", vec![sp("name", T::String, Some(Modifier::Contains), vec![s_val("%")])])).await, Vec::<String>::new());
    // OR list
    assert_eq!(sorted(ids(s, &q("Patient", vec![sp("name", T::String, None, vec![s_val("佐藤"), s_val("ヤマダ")])])).await), strs(&["p1", "p3"]));
    // AND: name + birthdate
    let nb = q(
        "Patient",
        vec![sp("name", T::String, None, vec![s_val("山田")]), sp("birthdate", T::Date, None, vec![date(Prefix::Eq, day(1970, 1, 1))])],
    );
    assert_eq!(ids(s, &nb).await, strs(&["p1"]));
    // date prefixes and :missing
    let year = |y| (day(y, 1, 1).0, day(y, 12, 31).1);
    assert_eq!(ids(s, &q("Patient", vec![sp("birthdate", T::Date, None, vec![date(Prefix::Eq, year(1985))])])).await, strs(&["p2"]));
    assert_eq!(ids(s, &q("Patient", vec![sp("birthdate", T::Date, None, vec![date(Prefix::Ge, day(1980, 1, 1))])])).await, strs(&["p2"]));
    assert_eq!(ids(s, &q("Patient", vec![sp("birthdate", T::Date, None, vec![date(Prefix::Lt, day(1980, 1, 1))])])).await, strs(&["p1"]));
    assert_eq!(ids(s, &q("Patient", vec![sp("birthdate", T::Date, None, vec![date(Prefix::Sa, year(1970))])])).await, strs(&["p2"]));
    assert_eq!(ids(s, &q("Patient", vec![sp("birthdate", T::Date, None, vec![date(Prefix::Eb, year(1985))])])).await, strs(&["p1"]));
    assert_eq!(ids(s, &q("Patient", vec![sp("birthdate", T::Date, None, vec![date(Prefix::Ne, year(1985))])])).await, strs(&["p1"]));
    assert_eq!(ids(s, &q("Patient", vec![sp("birthdate", T::Date, Some(Modifier::Missing), vec![SearchValue::Missing(true)])])).await, strs(&["p3"]));
    assert_eq!(sorted(ids(s, &q("Patient", vec![sp("birthdate", T::Date, Some(Modifier::Missing), vec![SearchValue::Missing(false)])])).await), strs(&["p1", "p2"]));
    // token: code, system|code, |code, system|, :not, :text
    let g = "http://hl7.org/fhir/administrative-gender";
    assert_eq!(ids(s, &q("Patient", vec![sp("gender", T::Token, None, vec![tok(TokenSystem::Any, Some("male"))])])).await, strs(&["p1", "p3"]));
    assert_eq!(ids(s, &q("Patient", vec![sp("gender", T::Token, None, vec![tok(TokenSystem::Is(g.into()), Some("female"))])])).await, strs(&["p2"]));
    assert_eq!(ids(s, &q("Patient", vec![sp("gender", T::Token, None, vec![tok(TokenSystem::NoSystem, Some("male"))])])).await, Vec::<String>::new());
    assert_eq!(ids(s, &q("Patient", vec![sp("gender", T::Token, None, vec![tok(TokenSystem::Is(g.into()), None)])])).await.len(), 3);
    assert_eq!(ids(s, &q("Patient", vec![sp("gender", T::Token, Some(Modifier::Not), vec![tok(TokenSystem::Any, Some("male"))])])).await, strs(&["p2"]));
    assert_eq!(ids(s, &q("Patient", vec![sp("gender", T::Token, Some(Modifier::Text), vec![tok(TokenSystem::Any, Some("女"))])])).await, strs(&["p2"]));
    assert_eq!(
        ids(s, &q("Patient", vec![sp("identifier", T::Token, None, vec![tok(TokenSystem::Is("urn:oid:1.2.392.100495.20.3.51.11234567890".into()), Some("00001"))])])).await,
        strs(&["p1"])
    );
    // reference + token + sort by date descending
    let mut obs_q = q(
        "Observation",
        vec![
            sp("patient", T::Reference, None, vec![SearchValue::Reference { target_type: Some("Patient".into()), id: "p1".into(), url: "Patient/p1".into() }]),
            sp("code", T::Token, None, vec![tok(TokenSystem::Is("http://loinc.org".into()), Some("1234-5"))]),
        ],
    );
    obs_q.sort = vec![SortKey { code: "date".into(), param_type: T::Date, descending: true }];
    assert_eq!(ids(s, &obs_q).await, strs(&["o2", "o1"]));
    obs_q.sort[0].descending = false;
    assert_eq!(ids(s, &obs_q).await, strs(&["o1", "o2"]));
    assert_eq!(
        ids(s, &q("Observation", vec![sp("subject", T::Reference, Some(Modifier::Type("Patient".into())), vec![SearchValue::Reference { target_type: None, id: "p2".into(), url: "p2".into() }])])).await,
        strs(&["o3"])
    );
    assert_eq!(
        ids(s, &q("Observation", vec![sp("subject", T::Reference, None, vec![SearchValue::Reference { target_type: None, id: String::new(), url: "Patient/p2".into() }])])).await,
        strs(&["o3"])
    );
    // quantity
    let qty = |(prefix, value, lo, hi): (Prefix, f64, f64, f64), system: Option<&str>, code: Option<&str>| SearchValue::Quantity {
        prefix,
        value,
        lo,
        hi,
        system: system.map(str::to_string),
        code: code.map(str::to_string),
    };
    assert_eq!(ids(s, &q("Observation", vec![sp("value-quantity", T::Quantity, None, vec![qty(num(Prefix::Gt, 2.0, 0.5), None, None)])])).await, strs(&["o2", "o3"]));
    assert_eq!(ids(s, &q("Observation", vec![sp("value-quantity", T::Quantity, None, vec![qty(num(Prefix::Eq, 1.5, 0.05), None, Some("mmol/L"))])])).await, strs(&["o1"]));
    assert_eq!(ids(s, &q("Observation", vec![sp("value-quantity", T::Quantity, None, vec![qty(num(Prefix::Eq, 1.5, 0.05), None, Some("mg/dL"))])])).await, Vec::<String>::new());
    assert_eq!(
        ids(s, &q("Observation", vec![sp("value-quantity", T::Quantity, None, vec![qty(num(Prefix::Le, 100.0, 0.5), Some("http://unitsofmeasure.org"), Some("mg/dL"))])])).await,
        strs(&["o3"])
    );
    // number
    let n = |(prefix, value, lo, hi): (Prefix, f64, f64, f64)| SearchValue::Number { prefix, value, lo, hi };
    assert_eq!(ids(s, &q("RiskAssessment", vec![sp("probability", T::Number, None, vec![n(num(Prefix::Eq, 0.25, 0.005))])])).await, strs(&["r1"]));
    assert_eq!(ids(s, &q("RiskAssessment", vec![sp("probability", T::Number, None, vec![n(num(Prefix::Gt, 0.3, 0.05))])])).await, Vec::<String>::new());
    assert_eq!(ids(s, &q("RiskAssessment", vec![sp("probability", T::Number, None, vec![n(num(Prefix::Ne, 0.5, 0.05))])])).await, strs(&["r1"]));
    // uri
    assert_eq!(ids(s, &q("ValueSet", vec![sp("url", T::Uri, None, vec![SearchValue::Uri("http://example.org/vs/a".into())])])).await, strs(&["vs1"]));
    assert_eq!(ids(s, &q("ValueSet", vec![sp("url", T::Uri, Some(Modifier::Contains), vec![SearchValue::Uri("vs/".into())])])).await, strs(&["vs1", "vs2"]));
    // chains
    let chain = |code: &str, inner: SearchParam| SearchParam {
        code: code.into(),
        param_type: T::Reference,
        modifier: None,
        values: vec![],
        chain: Some(Chain { target_type: "Patient".into(), param: Box::new(inner) }),
    };
    assert_eq!(ids(s, &q("Observation", vec![chain("subject", sp("name", T::String, None, vec![s_val("山田 花")]))])).await, strs(&["o3"]));
    assert_eq!(
        ids(s, &q("Observation", vec![chain("patient", sp("birthdate", T::Date, None, vec![date(Prefix::Lt, day(1980, 1, 1))]))])).await,
        strs(&["o1", "o2"])
    );
    assert_eq!(
        ids(s, &q("Observation", vec![chain("patient", sp("_id", T::Token, None, vec![tok(TokenSystem::Any, Some("p2"))]))])).await,
        strs(&["o3"])
    );
    // _id, _lastUpdated
    assert_eq!(ids(s, &q("Patient", vec![sp("_id", T::Token, None, vec![tok(TokenSystem::Any, Some("p2")), tok(TokenSystem::Any, Some("p3"))])])).await, strs(&["p2", "p3"]));
    assert_eq!(ids(s, &q("Patient", vec![sp("_lastUpdated", T::Date, None, vec![date(Prefix::Gt, day(2000, 1, 1))])])).await.len(), 3);
    assert_eq!(ids(s, &q("Patient", vec![sp("_lastUpdated", T::Date, None, vec![date(Prefix::Lt, day(2000, 1, 1))])])).await.len(), 0);
    // _include / _revinclude
    let mut inc = q("Observation", vec![sp("_id", T::Token, None, vec![tok(TokenSystem::Any, Some("o1"))])]);
    inc.includes = vec![Include { source_type: "Observation".into(), param: "patient".into(), target_type: None, iterate: false }];
    let page = s.search(&inc).await.unwrap();
    assert_eq!(page.matches.len(), 1);
    assert_eq!(page.included.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), vec!["p1"]);
    let mut rev = q("Patient", vec![sp("_id", T::Token, None, vec![tok(TokenSystem::Any, Some("p1"))])]);
    rev.revincludes = vec![Include { source_type: "Observation".into(), param: "patient".into(), target_type: None, iterate: false }];
    let page = s.search(&rev).await.unwrap();
    assert_eq!(sorted(page.included.iter().map(|r| r.id.clone()).collect()), strs(&["o1", "o2"]));
    // paging, _sort=_id, totals
    let mut pg = q("Patient", vec![]);
    pg.sort = vec![SortKey { code: "_id".into(), param_type: T::Token, descending: true }];
    pg.count = 1;
    pg.total = Some(TotalMode::Accurate);
    let page = s.search(&pg).await.unwrap();
    assert_eq!((page.matches[0].id.as_str(), page.total), ("p3", Some(3)));
    pg.offset = 1;
    assert_eq!(ids(s, &pg).await, strs(&["p2"]));
    pg.total = None;
    pg.count = 10;
    pg.offset = 0;
    assert_eq!(s.search(&pg).await.unwrap().total, Some(3));
    pg.summary = Some(crate::search::SummaryMode::Count);
    let page = s.search(&pg).await.unwrap();
    assert_eq!((page.matches.len(), page.total), (0, Some(3)));
    // sort by string
    let mut by_name = q("Patient", vec![]);
    by_name.sort = vec![SortKey { code: "name".into(), param_type: T::String, descending: false }];
    assert_eq!(ids(s, &by_name).await, strs(&["p1", "p3", "p2"])); // ヤマダ… < 佐藤… < 山田花子 in code-point order
    // conditional helpers
    assert_eq!(s.search_ids(&q("Patient", vec![sp("name", T::String, None, vec![s_val("山田")])]), 2).await.unwrap().len(), 2);
    // deleted resources leave the index
    s.delete("Patient", "p3").await.unwrap();
    assert_eq!(ids(s, &q("Patient", vec![sp("gender", T::Token, None, vec![tok(TokenSystem::Any, Some("male"))])])).await, strs(&["p1"]));
    assert_eq!(ids(s, &q("Patient", vec![])).await, strs(&["p1", "p2"]));
    // updates replace the index rows
    s.put_indexed("Patient", "p2", r#"{"resourceType":"Patient"}"#, IndexRows::default()).await;
    assert_eq!(ids(s, &q("Patient", vec![sp("name", T::String, None, vec![s_val("山田")])])).await, strs(&["p1"]));
    // unsupported parameter types are an Invalid error, not a panic
    assert!(matches!(
        s.search(&q("Patient", vec![sp("x", T::Composite, None, vec![tok(TokenSystem::Any, Some("a"))])])).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.search(&q("Patient", vec![sp("name", T::String, None, vec![tok(TokenSystem::Any, Some("a"))])])).await,
        Err(StoreError::Invalid(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_semantics_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    let s = Store::connect(&url).await.unwrap();
    search_semantics(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_semantics_postgres() {
    if let Some(url) = pg::fresh_database_url().await {
        let s = Store::connect(&url).await.unwrap();
        search_semantics(&s).await;
    }
}

impl Store {
    async fn bulk_indexed(&self, items: Vec<(String, String, String, IndexRows)>) {
        match self {
            Store::Sqlite(s) => s.test_bulk_indexed(items).await,
            Store::Postgres(s) => s.test_bulk_indexed(items).await,
        }
        .expect("bulk")
    }
}

/// Tiny deterministic PRNG (xorshift) for the perf data set.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const FAMILIES: [&str; 20] = [
    "山田", "佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "中村", "小林", "加藤", "吉田", "山本", "松本", "井上",
    "木村", "林", "清水", "山崎", "森", "池田",
];

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p) as usize]
}

/// Seeds `n` patients with 3 observations each and times the target queries.
/// Run: `PERF_PATIENTS=100000 cargo test --release --lib store::tests::perf -- --ignored --nocapture`
async fn perf(s: &Store, label: &str) {
    use std::time::Instant;
    let n: usize = std::env::var("PERF_PATIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let mut rng = Rng(0x9E3779B97F4A7C15);
    let gender = "http://hl7.org/fhir/administrative-gender";
    let reuse = std::env::var("PERF_REUSE").is_ok();
    let t0 = Instant::now();
    let mut batch = Vec::new();
    let mut written = 0usize;
    for i in 0..n {
        let fam = FAMILIES[rng.below(20) as usize];
        let given = format!("名{}", rng.below(500));
        let bd = day(1930 + rng.below(90) as i64, 1 + rng.below(12) as i64, 1 + rng.below(28) as i64);
        let mut r = IndexRows::default();
        r.string = vec![("name".into(), format!("{fam} {given}"), format!("{fam}{given}")), ("family".into(), fam.into(), fam.into())];
        r.date = vec![("birthdate".into(), bd.0, bd.1)];
        r.token = vec![
            ("gender".into(), Some(gender.into()), if i % 2 == 0 { "male" } else { "female" }.into(), None),
            ("identifier".into(), Some("urn:oid:1.2.392.100495.20.3.51.1".into()), format!("{i:08}"), None),
        ];
        let body = format!(
            r#"{{"resourceType":"Patient","identifier":[{{"system":"urn:oid:1.2.392.100495.20.3.51.1","value":"{i:08}"}}],"name":[{{"family":"{fam}","given":["{given}"]}}],"gender":"{}","birthDate":"x"}}"#,
            if i % 2 == 0 { "male" } else { "female" }
        );
        batch.push(("Patient".to_string(), format!("p{i}"), body, r));
        for k in 0..3 {
            let code = format!("{}-{}", 1000 + rng.below(50), k);
            let d = day(2020 + rng.below(5) as i64, 1 + rng.below(12) as i64, 1 + rng.below(28) as i64).0 + rng.below(86_400_000) as i64;
            let v = rng.below(10_000) as f64 / 100.0;
            let mut r = IndexRows::default();
            for p in ["subject", "patient"] {
                r.reference.push((p.into(), Some("Patient".into()), format!("p{i}"), format!("Patient/p{i}")));
            }
            r.token = vec![("code".into(), Some("http://loinc.org".into()), code.clone(), None)];
            r.date = vec![("date".into(), d, d)];
            r.quantity = vec![("value-quantity".into(), v, v - 0.005, v + 0.005, Some("http://unitsofmeasure.org".into()), Some("mg/dL".into()), Some("mg/dL".into()))];
            let body = format!(
                r#"{{"resourceType":"Observation","status":"final","code":{{"coding":[{{"system":"http://loinc.org","code":"{code}"}}]}},"subject":{{"reference":"Patient/p{i}"}},"valueQuantity":{{"value":{v:.2},"unit":"mg/dL"}}}}"#
            );
            batch.push(("Observation".to_string(), format!("o{i}-{k}"), body, r));
        }
        if reuse {
            batch.clear();
        }
        if batch.len() >= 4000 {
            written += batch.len();
            s.bulk_indexed(std::mem::take(&mut batch)).await;
        }
    }
    written += batch.len();
    s.bulk_indexed(batch).await;
    let secs = t0.elapsed().as_secs_f64();
    eprintln!("[{label}] seeded {written} resources in {secs:.1}s = {:.0} resources/s", written as f64 / secs);
    let t = Instant::now();
    s.analyze().await.unwrap();
    eprintln!("[{label}] analyze {:.1}s", t.elapsed().as_secs_f64());

    use ParamType as T;
    let mut lat = Vec::new();
    let mut hits = 0;
    for _ in 0..500 {
        let fam = FAMILIES[rng.below(20) as usize];
        let bd = day(1930 + rng.below(90) as i64, 1 + rng.below(12) as i64, 1 + rng.below(28) as i64);
        let query = q(
            "Patient",
            vec![sp("name", T::String, None, vec![s_val(fam)]), sp("birthdate", T::Date, None, vec![date(Prefix::Eq, bd)])],
        );
        let t = Instant::now();
        hits += s.search(&query).await.unwrap().matches.len();
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    eprintln!("[{label}] Patient?name=&birthdate=  p50 {:.2} ms  p99 {:.2} ms  ({hits} hits)", pct(&mut lat, 0.5), pct(&mut lat, 0.99));
    let mut lat = Vec::new();
    let mut hits = 0;
    for _ in 0..500 {
        let p = rng.below(n as u64);
        let code = format!("{}-{}", 1000 + rng.below(50), rng.below(3));
        let mut query = q(
            "Observation",
            vec![
                sp("patient", T::Reference, None, vec![SearchValue::Reference { target_type: Some("Patient".into()), id: format!("p{p}"), url: String::new() }]),
                sp("code", T::Token, None, vec![tok(TokenSystem::Is("http://loinc.org".into()), Some(&code))]),
            ],
        );
        query.sort = vec![SortKey { code: "date".into(), param_type: T::Date, descending: true }];
        let t = Instant::now();
        hits += s.search(&query).await.unwrap().matches.len();
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    eprintln!("[{label}] Observation?patient=&code=&_sort=-date  p50 {:.2} ms  p99 {:.2} ms  ({hits} hits)", pct(&mut lat, 0.5), pct(&mut lat, 0.99));
    let mut lat = Vec::new();
    for _ in 0..500 {
        let p = rng.below(n as u64);
        let mut query = q(
            "Observation",
            vec![sp("patient", T::Reference, None, vec![SearchValue::Reference { target_type: Some("Patient".into()), id: format!("p{p}"), url: String::new() }])],
        );
        query.sort = vec![SortKey { code: "date".into(), param_type: T::Date, descending: true }];
        query.revincludes = vec![];
        query.includes = vec![Include { source_type: "Observation".into(), param: "patient".into(), target_type: None, iterate: false }];
        query.total = Some(TotalMode::Accurate);
        let t = Instant::now();
        s.search(&query).await.unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    eprintln!("[{label}] Observation?patient=&_sort=-date&_include&_total=accurate  p50 {:.2} ms  p99 {:.2} ms", pct(&mut lat, 0.5), pct(&mut lat, 0.99));
    let mut lat = Vec::new();
    for _ in 0..200 {
        let query = q("Patient", vec![sp("identifier", T::Token, None, vec![tok(TokenSystem::Any, Some(&format!("{:08}", rng.below(n as u64))))])]);
        let t = Instant::now();
        assert_eq!(s.search(&query).await.unwrap().matches.len(), 1);
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    eprintln!("[{label}] Patient?identifier=  p50 {:.2} ms  p99 {:.2} ms", pct(&mut lat, 0.5), pct(&mut lat, 0.99));
    // reads: 2 concurrent readers for 2 s
    let t = Instant::now();
    let mut hs = Vec::new();
    for w in 0..4u64 {
        let s = s.clone();
        hs.push(tokio::spawn(async move {
            let mut rng = Rng(w + 7);
            let mut k = 0u64;
            while t.elapsed().as_secs_f64() < 2.0 {
                s.read("Patient", &format!("p{}", rng.below(n as u64))).await.unwrap();
                k += 1;
            }
            k
        }));
    }
    let mut total = 0;
    for h in hs {
        total += h.await.unwrap();
    }
    eprintln!("[{label}] reads: {:.0}/s (4 tasks)", total as f64 / t.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "performance run; see fn perf"]
async fn perf_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = std::env::var("PERF_DB").map(std::path::PathBuf::from).unwrap_or_else(|_| dir.path().join("perf.db"));
    if std::env::var("PERF_REUSE").is_err() {
        let _ = std::fs::remove_file(&path);
    }
    let s = Store::connect(&format!("sqlite://{}?mode=rwc", path.display())).await.unwrap();
    perf(&s, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "performance run; see fn perf"]
async fn perf_postgres() {
    if let Some(url) = pg::fresh_database_url().await {
        let s = Store::connect(&url).await.unwrap();
        perf(&s, "postgres").await;
    }
}

/// Index names in the database (SQLite `sqlite_master`, PostgreSQL `pg_indexes` of the public schema).
async fn index_names(url: &str) -> std::collections::BTreeSet<String> {
    use sqlx::Row;
    let rows = if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let r: Vec<String> = sqlx::query("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        pool.close().await;
        r
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let r: Vec<String> = sqlx::query("SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public'")
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        pool.close().await;
        r
    };
    rows.into_iter().collect()
}

/// Bulk load (initial import): the secondary indexes are dropped while it runs — searches stay correct —
/// and rebuilt to exactly the migrated set at its end; an interrupted one is resumed by the next import
/// or repaired at `serve` start; a store that already holds resources is never bulk-loaded.
async fn bulk_load(url: &str) {
    let s = Store::connect(url).await.unwrap();
    let migrated = index_names(url).await;
    assert!(s.begin_bulk_load().await.unwrap(), "an empty store is bulk-loaded");
    let during = index_names(url).await;
    assert!(during.is_subset(&migrated) && during.len() < migrated.len(), "{during:?} vs {migrated:?}");
    let mut rows = IndexRows::default();
    rows.string.push(("name".into(), "Yamada".into(), "yamada".into()));
    s.put_indexed("Patient", "p1", r#"{"resourceType":"Patient","name":[{"family":"Yamada"}]}"#, rows).await;
    let by_name = q("Patient", vec![sp("name", ParamType::String, None, vec![s_val("Yamada")])]);
    assert_eq!(ids(&s, &by_name).await, vec!["p1"], "search without the dropped indexes");
    s.close().await;

    // killed before finish_bulk_load: the next import resumes the bulk load although the store is not empty
    let s = Store::connect(url).await.unwrap();
    assert!(s.begin_bulk_load().await.unwrap(), "an interrupted bulk load is resumed");
    // …or `serve` repairs it
    assert!(s.repair_bulk_load().await.unwrap());
    assert_eq!(index_names(url).await, migrated, "every migrated index is back");
    if let Store::Sqlite(w) = &s {
        // the build's connection settings (sorter threads, small page cache, file temp store) are the
        // server's again afterwards
        for (pragma, server) in [("threads", 0), ("cache_size", -8192), ("temp_store", 2), ("wal_autocheckpoint", 1000)] {
            assert_eq!(w.test_writer_pragma(pragma).await, server, "PRAGMA {pragma} after the bulk load");
        }
    }
    assert_eq!(ids(&s, &by_name).await, vec!["p1"]);
    assert!(!s.repair_bulk_load().await.unwrap(), "nothing left to repair");
    assert!(!s.begin_bulk_load().await.unwrap(), "a store with resources is not bulk-loaded");
    assert_eq!(index_names(url).await, migrated);
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_load_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    bulk_load(&format!("sqlite://{}?mode=rwc", dir.path().join("b.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_load_postgres() {
    if let Some(url) = pg::fresh_database_url().await {
        bulk_load(&url).await;
    }
}

/// Migration 0006 on a store written by the earlier schema: every version kept exactly once (current
/// in `resources`, older ones in the history), index rows re-keyed to interned ids, reads, vreads,
/// history and searches answer as before, and new writes continue the version chain.
async fn migrate_0006(url: &str) {
    let p1v1 = r#"{"resourceType":"Patient","id":"p1","meta":{"versionId":"1","lastUpdated":"2026-01-01T00:00:00.000Z"},"name":[{"family":"Yamada"}]}"#;
    let p1v2 = r#"{"resourceType":"Patient","id":"p1","meta":{"versionId":"2","lastUpdated":"2026-01-02T00:00:00.000Z"},"name":[{"family":"Yamada"}],"gender":"male"}"#;
    let o1 = r#"{"resourceType":"Observation","id":"o1","meta":{"versionId":"1","lastUpdated":"2026-01-03T00:00:00.000Z"},"status":"final","code":{"coding":[{"system":"urn:oid:1.2.392.200119.4.504","code":"3B035000002327201"}]},"subject":{"reference":"Patient/p1"},"valueQuantity":{"value":1.50}}"#;
    let t = |d: i64| 1_767_225_600_000 + d * DAY; // 2026-01-01 + d days
    let old_schema = [
        format!("INSERT INTO resources (rtype, id, version, last_updated, deleted, content_hash, json) VALUES ('Patient', 'p1', 2, {}, FALSE, 'h2', '{p1v2}')", t(1)),
        format!("INSERT INTO resources (rtype, id, version, last_updated, deleted, content_hash, json) VALUES ('Observation', 'o1', 1, {}, FALSE, 'h3', '{o1}')", t(2)),
        format!("INSERT INTO resource_history (rtype, id, version, last_updated, deleted, json) VALUES ('Patient', 'p1', 1, {}, FALSE, '{p1v1}')", t(0)),
        format!("INSERT INTO resource_history (rtype, id, version, last_updated, deleted, json) VALUES ('Patient', 'p1', 2, {}, FALSE, '{p1v2}')", t(1)),
        format!("INSERT INTO resource_history (rtype, id, version, last_updated, deleted, json) VALUES ('Observation', 'o1', 1, {}, FALSE, '{o1}')", t(2)),
        "INSERT INTO idx_string (rid, rtype, param, exact, normalized) SELECT rid, 'Patient', 'name', 'Yamada', 'yamada' FROM resources WHERE id = 'p1'".into(),
        "INSERT INTO idx_token (rid, rtype, param, system, code, display) SELECT rid, 'Patient', 'gender', 'http://hl7.org/fhir/administrative-gender', 'male', NULL FROM resources WHERE id = 'p1'".into(),
        "INSERT INTO idx_token (rid, rtype, param, system, code, display) SELECT rid, 'Observation', 'code', 'urn:oid:1.2.392.200119.4.504', '3B035000002327201', NULL FROM resources WHERE id = 'o1'".into(),
        "INSERT INTO idx_token (rid, rtype, param, system, code, display) SELECT rid, 'Observation', 'status', NULL, 'final', NULL FROM resources WHERE id = 'o1'".into(),
        "INSERT INTO idx_reference (rid, rtype, param, target_type, target_id, url) SELECT rid, 'Observation', 'subject', 'Patient', 'p1', 'Patient/p1' FROM resources WHERE id = 'o1'".into(),
        "INSERT INTO idx_date (rid, rtype, param, lo, hi) SELECT rid, 'Patient', 'birthdate', 0, 86399999 FROM resources WHERE id = 'p1'".into(),
        "INSERT INTO idx_quantity (rid, rtype, param, value, lo, hi, system, code, unit) SELECT rid, 'Observation', 'value-quantity', 1.5, 1.495, 1.505, NULL, NULL, NULL FROM resources WHERE id = 'o1'".into(),
    ];
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let mut m = sqlx::migrate!("migrations/sqlite");
        m.migrations = m.migrations.iter().filter(|x| x.version < 6).cloned().collect::<Vec<_>>().into();
        m.run(&pool).await.unwrap();
        for sql in &old_schema {
            sqlx::query(sqlx::AssertSqlSafe(sql.clone())).execute(&pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let mut m = sqlx::migrate!("migrations/postgres");
        m.migrations = m.migrations.iter().filter(|x| x.version < 6).cloned().collect::<Vec<_>>().into();
        m.run(&pool).await.unwrap();
        for sql in &old_schema {
            sqlx::query(sqlx::AssertSqlSafe(sql.clone())).execute(&pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        pool.close().await;
    }
    let s = Store::connect(url).await.unwrap();
    let r = s.read("Patient", "p1").await.unwrap();
    assert_eq!((r.version_id, r.json.as_str()), (2, p1v2));
    assert_eq!(s.vread("Patient", "p1", 1).await.unwrap().json, p1v1);
    assert_eq!(s.vread("Patient", "p1", 2).await.unwrap().json, p1v2);
    let h: Vec<i64> = s.history(Some("Patient"), Some("p1"), None, 10).await.unwrap().iter().map(|r| r.version_id).collect();
    assert_eq!(h, vec![2, 1], "each version once");
    let sys: Vec<(String, i64)> =
        s.history(None, None, None, 10).await.unwrap().iter().map(|r| (r.id.clone(), r.version_id)).collect();
    assert_eq!(sys, vec![("o1".to_string(), 1), ("p1".to_string(), 2), ("p1".to_string(), 1)]);
    let by_name = q("Patient", vec![sp("name", ParamType::String, None, vec![s_val("yamada")])]);
    assert_eq!(ids(&s, &by_name).await, vec!["p1"]);
    let by_gender = q(
        "Patient",
        vec![sp("gender", ParamType::Token, None, vec![tok(TokenSystem::Is("http://hl7.org/fhir/administrative-gender".into()), Some("male"))])],
    );
    assert_eq!(ids(&s, &by_gender).await, vec!["p1"]);
    let by_code = q(
        "Observation",
        vec![
            sp("code", ParamType::Token, None, vec![tok(TokenSystem::Is("urn:oid:1.2.392.200119.4.504".into()), Some("3B035000002327201"))]),
            sp("status", ParamType::Token, None, vec![tok(TokenSystem::NoSystem, Some("final"))]),
            sp("subject", ParamType::Reference, None, vec![SearchValue::Reference { target_type: Some("Patient".into()), id: "p1".into(), url: "Patient/p1".into() }]),
        ],
    );
    assert_eq!(ids(&s, &by_code).await, vec!["o1"]);
    let by_value = q(
        "Observation",
        vec![sp("value-quantity", ParamType::Quantity, None, vec![SearchValue::Quantity { prefix: Prefix::Eq, value: 1.5, lo: 1.45, hi: 1.55, system: None, code: None }])],
    );
    assert_eq!(ids(&s, &by_value).await, vec!["o1"]);
    let mut inc = by_code.clone();
    inc.includes.push(Include { source_type: "Observation".into(), param: "subject".into(), target_type: None, iterate: false });
    let page = s.search(&inc).await.unwrap();
    assert_eq!(page.included.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), vec!["p1"]);
    // a new version continues the chain; the replaced one moves to the history
    let body = r#"{"resourceType":"Patient","id":"p1","name":[{"family":"Sato"}]}"#;
    let (w, _) = s.update_raw("Patient", "p1", body, Some(2)).await.unwrap();
    assert_eq!(w.version_id, 3);
    let h: Vec<i64> = s.history(Some("Patient"), Some("p1"), None, 10).await.unwrap().iter().map(|r| r.version_id).collect();
    assert_eq!(h, vec![3, 2, 1]);
    assert_eq!(s.vread("Patient", "p1", 2).await.unwrap().json, p1v2);
    assert!(ids(&s, &by_name).await.is_empty(), "index rows of the replaced version are gone");
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_0006_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    migrate_0006(&format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_0006_postgres() {
    if let Some(url) = pg::fresh_database_url().await {
        migrate_0006(&url).await;
    }
}

/// The SQLite resource cache (`sqlite_cache`) through the real write paths: a read after an update or a
/// delete returns the new version, never the cached one — at once when this store committed it, after at
/// most `CROSS_PROCESS_WINDOW` when a second store on the same file did (as another process would);
/// unchanged rows are served from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_cache_follows_writes_of_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
    let a = Store::connect(&url).await.unwrap();
    let b = Store::connect(&url).await.unwrap();
    let stats = |s: &Store| match s {
        Store::Sqlite(s) => s.resource_cache_stats().expect("cache on by default"),
        Store::Postgres(_) => unreachable!(),
    };
    let patient =
        |family: &str| serde_json::json!({"resourceType": "Patient", "name": [{"family": family}]});
    let p = a.create("Patient", patient("Yamada")).await.unwrap();
    let other = a.create("Patient", patient("Sato")).await.unwrap();
    assert_eq!(a.read("Patient", &p.id).await.unwrap().version_id, 1);
    assert_eq!(a.read("Patient", &p.id).await.unwrap().version_id, 1);
    assert_eq!(a.read("Patient", &other.id).await.unwrap().version_id, 1);
    let before = stats(&a);
    assert_eq!(before.hits, 1);

    let window = crate::store::sqlite_cache::CROSS_PROCESS_WINDOW;
    // an update through the other store (other connections, as another process)
    b.update("Patient", &p.id, patient("Tanaka"), Some(1))
        .await
        .unwrap();
    tokio::time::sleep(window).await;
    let r = a.read("Patient", &p.id).await.unwrap();
    assert_eq!(r.version_id, 2);
    assert!(r.json.contains("Tanaka"), "{}", r.json);
    // every entry was retired by that write, the untouched one too; then it is served again
    assert_eq!(a.read("Patient", &other.id).await.unwrap().version_id, 1);
    assert_eq!(stats(&a).hits, before.hits);
    assert_eq!(a.read("Patient", &other.id).await.unwrap().version_id, 1);
    assert_eq!(stats(&a).hits, before.hits + 1);

    // this store's own update, right after a hit (the generation is fresh): seen at once, and its
    // own delete too
    a.update("Patient", &p.id, patient("Suzuki"), Some(2))
        .await
        .unwrap();
    assert!(a
        .read("Patient", &p.id)
        .await
        .unwrap()
        .json
        .contains("Suzuki"));
    assert_eq!(a.read("Patient", &other.id).await.unwrap().version_id, 1);
    a.delete("Patient", &other.id).await.unwrap();
    assert!(matches!(a.read("Patient", &other.id).await, Err(StoreError::Gone(..))));
    b.delete("Patient", &p.id).await.unwrap();
    tokio::time::sleep(window).await;
    assert!(
        matches!(a.read("Patient", &p.id).await, Err(StoreError::Gone(..))),
        "a deleted resource reads as gone"
    );
}
