//! The reference viewer `GET /view/patient/{id}?mode=…` (issue 5), in process: one Japanese page with
//! a viewport meta tag, inline CSS only, no scripts or external assets, sections in the network's order
//! with last-updated dates, contraindicated drugs red with a 禁忌 badge, SS-MIX2 items with their
//! source, a mode switch, HTML-escaped data and HTML error pages.

#[macro_use]
#[path = "common/api_support.rs"]
mod support;

use std::path::Path;

use axum::Extension;
use serde_json::{json, Value};
use support::{App, Db};
use tobiume_gateway::api::operation::summary::SummaryClock;
use tobiume_gateway::import::{import_ssmix2, ImportOptions};
use tobiume_gateway::mapping::registration::{to_fhir, Ids, Registration};

const REG: &str = "tobiume-TB-40-0012345";

async fn app_with_registration(db: Db, edit: impl FnOnce(&mut Registration)) -> App {
    let mut app = support::app(db).await;
    let now = time::OffsetDateTime::parse(
        "2011-09-30T12:00:00+09:00",
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    app.router = app.router.layer(Extension(SummaryClock(now)));
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/conformance/registration.example.json"
    ))
    .unwrap();
    let mut r: Registration = serde_json::from_str(&text).unwrap();
    edit(&mut r);
    let mut res = to_fhir(&r, &Ids::default());
    let p = res
        .iter_mut()
        .find(|v| v["resourceType"] == "Patient")
        .unwrap();
    p["link"] = json!([{"other": {"reference": "Patient/9999013.ADT-00", "display": "福岡市民病院"}, "type": "seealso"}]);
    let entries: Vec<Value> = res
        .iter()
        .map(|r| json!({"resource": r, "request": {"method": "PUT", "url": format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap())}}))
        .collect();
    let b = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let res = app.json("POST", "/fhir", &b.to_string()).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let root = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/ssmix2-real"
    ));
    import_ssmix2(&app.store, root, &ImportOptions::default(), |_| {})
        .await
        .unwrap();
    app
}

/// The `<h2>` section titles in page order.
fn headings(html: &str) -> Vec<String> {
    html.split("<h2><span>")
        .skip(1)
        .map(|s| s.split("</span>").next().unwrap().to_string())
        .collect()
}

both_db!(one_page_per_mode_with_red_contraindications);
async fn one_page_per_mode_with_red_contraindications(db: Db) {
    let app = app_with_registration(db, |_| {}).await;
    let res = app
        .get(&format!("/view/patient/{REG}?mode=emergency"))
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(res.header("cache-control"), Some("no-store"));
    assert!(res
        .header("content-security-policy")
        .unwrap()
        .starts_with("default-src 'none'"));
    let html = &res.body;
    assert!(html.starts_with("<!DOCTYPE html><html lang=\"ja\">"));
    assert!(
        html.contains("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
    );
    assert!(html.contains("<style>"));
    for banned in ["<script", "<link", "src=\"http", "@import", "url("] {
        assert!(!html.contains(banned), "{banned} in page");
    }
    assert!(html.contains("<h1>救急用サマリー</h1>"));
    assert!(html.contains("<span class=\"nm\">梅野 花子</span>"));
    assert!(
        html.contains("1938-03-14 生（73歳）"),
        "age at the fixed now"
    );
    assert_eq!(
        headings(html),
        [
            "患者基本情報",
            "処方",
            "禁忌薬",
            "主な病名",
            "病名・病歴等",
            "アレルギー",
            "現在の医療・処置",
            "搬送先病院に希望する医療"
        ]
    );
    // Mode switch: two links, the current one marked.
    assert!(html.contains(&format!("<a href=\"/view/patient/{REG}?mode=emergency\" class=\"on\" aria-current=\"page\">救急モード</a>")));
    assert!(html.contains(&format!(
        "<a href=\"/view/patient/{REG}?mode=multidisciplinary\">多職種連携モード</a>"
    )));
    // Contraindicated drugs: red item with a red 禁忌 badge, and the red banner at the top.
    assert!(html.contains(
        "<li class=\"ci\" style=\"color:#c00\"><span class=\"badge\" style=\"background:#c00;color:#fff\">禁忌</span><span class=\"lb\">禁忌薬</span><span class=\"tx\">ワーファリン（理由: 脳出血の既往のため抗凝固薬禁忌）</span>"
    ));
    assert!(html.contains("禁忌薬</span>ワーファリン／ロキソプロフェンナトリウム</a>"));
    // Last-updated dates: per section and per item.
    assert!(html.contains("<span>禁忌薬</span><span class=\"upd\">最終更新 2026-08-20</span>"));
    assert!(html.contains(
        "<span>搬送先病院に希望する医療</span><span class=\"upd\">最終更新 2026-09-01 15:30</span>"
    ));
    assert!(html.contains(
        "<span class=\"meta\">更新 2026-07-01　博多 一郎（とびうめ内科クリニック）</span>"
    ));
    // The emergency referral hospital, and SS-MIX2 data with its source.
    assert!(html.contains("<li class=\"key\"><span class=\"lb\">緊急時紹介先医療機関</span><span class=\"tx\">福岡市民病院 TEL 092-632-1111"));
    assert!(html.contains("<span class=\"tx\">胃炎 発症 2011-08-31（活動中）</span><span class=\"meta\">更新 2011-08-31</span><span class=\"src\">出典: SS-MIX2 (福岡市民病院)</span>"));
    // Nothing of the multi-disciplinary view.
    for absent in ["日常生活状態", "行動の特徴", "認知自立度", "徘徊"] {
        assert!(!html.contains(absent), "{absent} in emergency mode");
    }

    let res = app
        .get(&format!("/view/patient/{REG}?mode=multidisciplinary"))
        .await;
    assert_eq!(res.status, 200);
    let html = &res.body;
    assert!(html.contains("<h1>多職種連携サマリー</h1>"));
    assert_eq!(headings(html).len(), 16);
    assert_eq!(
        headings(html)[8..],
        [
            "患者の意向",
            "備考",
            "日常生活状態",
            "障害者医療",
            "介護保険",
            "障害情報",
            "認知自立度",
            "行動の特徴"
        ]
    );
    assert!(html.contains(
        "<a href=\"/view/patient/tobiume-TB-40-0012345?mode=multidisciplinary\" class=\"on\""
    ));
    assert!(html.contains("style=\"color:#c00\""));
    assert!(html.contains("見守り（むせ込みに注意）"));
}

both_db!(data_is_escaped_and_errors_are_pages);
async fn data_is_escaped_and_errors_are_pages(db: Db) {
    let app = app_with_registration(db, |r| {
        r.demographics.name_kanji.value.family = "<script>alert('x')</script>".into();
        r.contraindicated_drugs[0].value.drug = "ワーファリン<img src=x onerror=alert(1)>".into();
    })
    .await;
    let res = app.get(&format!("/view/patient/{REG}")).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let html = &res.body;
    assert!(!html.contains("<script"), "unescaped script");
    assert!(!html.contains("<img"), "unescaped img");
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; 花子"));
    assert!(html.contains("ワーファリン&lt;img src=x onerror=alert(1)&gt;"));
    assert!(
        html.contains("<h1>救急用サマリー</h1>"),
        "default mode is emergency"
    );
    // The FHIR narrative is escaped as well.
    let b = app
        .get(&format!("/fhir/Patient/{REG}/$summary"))
        .await
        .json();
    let comp = &b["entry"][0]["resource"];
    let divs: Vec<&str> = comp["section"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["text"]["div"].as_str().unwrap())
        .collect();
    assert!(divs
        .iter()
        .all(|d| !d.contains("<script") && !d.contains("<img")));
    assert!(divs[0].contains("&lt;script&gt;"));

    let res = app.get("/view/patient/nobody?mode=emergency").await;
    assert_eq!(res.status, 404);
    assert!(res.header("content-type").unwrap().starts_with("text/html"));
    assert!(res.body.contains("患者が見つかりません"));
    let res = app
        .get(&format!("/view/patient/{REG}?mode=%3Cscript%3E"))
        .await;
    assert_eq!(res.status, 400);
    assert!(!res.body.contains("<script"));
}
