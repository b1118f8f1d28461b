//! The reference viewer: `GET /view/patient/{id}?mode=emergency|multidisciplinary` renders the patient
//! summary as **one Japanese HTML page** for a phone (390×844 CSS px and up): server-rendered, inline
//! CSS only, no JavaScript, no external assets (a `Content-Security-Policy` forbids them).
//!
//! It builds the summary with [`summary::summarize`] — the same gathering path as `$summary`, every read
//! through `access::read_resources` — so authorization, consent and audit apply to it unchanged.
//!
//! Page: a header with the title (救急用サマリー / 多職種連携サマリー), a switch between the two modes (two
//! links), the patient (name, kana, birth date and age, sex, card id); then the mode's sections in the
//! network's order, each with its last-updated date and its items — each item with its own
//! last-updated date, author and, for merged data, 「出典: SS-MIX2 (病院名)」. Contraindicated drugs
//! are red (`color:#c00`) with a red 禁忌 badge; the emergency referral hospital is highlighted.
//! Every value is HTML-escaped.
//!
//! Errors are small HTML pages with the status of the API error (404 unknown patient, 400 bad mode,
//! 410 deleted, 500).

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::access::RequestContext;
use super::interaction::query_pairs;
use super::operation::summary::{self, SummaryClock};
use super::AppState;
use crate::mapping::registration::Choice;
use crate::summary::{Mode, View};

/// `GET /view/patient/{id}`. Output: 200 `text/html; charset=utf-8`; errors: HTML with the API status.
pub async fn patient(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    ctx: RequestContext,
    clock: Option<Extension<SummaryClock>>,
) -> Response {
    let params = query_pairs(&q);
    let mode = match summary::mode_param(&params) {
        Ok(m) => m,
        Err(_) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "表示モードの指定が正しくありません（emergency または multidisciplinary）。",
            )
        }
    };
    match summary::summarize(&state, &ctx, &id, mode, summary::now(clock.as_deref())).await {
        Ok(s) => {
            let fhir = format!(
                "{}/Patient/{}/$summary?mode={}",
                state.config.base_url.trim_end_matches('/'),
                s.view.patient.id,
                mode.code()
            );
            html_response(StatusCode::OK, render(&s.view, &id, &fhir))
        }
        Err(e) => {
            let msg = match e.status {
                StatusCode::NOT_FOUND => "患者が見つかりません。",
                StatusCode::GONE => "この患者の登録は削除されています。",
                StatusCode::BAD_REQUEST => "要求が正しくありません。",
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => "閲覧する権限がありません。",
                _ => "サーバーでエラーが発生しました。",
            };
            error_page(e.status, msg)
        }
    }
}

fn html_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; frame-ancestors 'none'"),
    );
    r
}

fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<!DOCTYPE html><html lang=\"ja\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>エラー</title>\
         <style>body{{font-family:sans-serif;margin:16px;color:#222}}</style></head>\
         <body><h1>{}</h1><p>{}</p></body></html>",
        status.as_u16(),
        esc(message)
    );
    html_response(status, body)
}

/// HTML-escapes text for element content and double- or single-quoted attributes.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

/// Percent-encodes a path segment (ids are `[A-Za-z0-9.-]` already; this is belt and braces).
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Shows a FHIR date/dateTime as `YYYY-MM-DD` or `YYYY-MM-DD hh:mm`.
fn show_date(d: &str) -> String {
    match d.split_once('T') {
        Some((day, time)) => format!("{day} {}", time.get(..5).unwrap_or(time)),
        None => d.to_string(),
    }
}

const CSS: &str = "\
*{box-sizing:border-box}\
body{margin:0;font-family:-apple-system,'Hiragino Sans','Noto Sans CJK JP','Noto Sans JP',sans-serif;font-size:16px;line-height:1.5;color:#1a1a1a;background:#f2f2f2;-webkit-text-size-adjust:100%}\
header{background:#0b4f8a;color:#fff;padding:10px 12px 12px}\
h1{font-size:20px;margin:0 0 8px}\
nav.mode{display:flex;gap:6px;margin:0 0 10px}\
nav.mode a{flex:1;text-align:center;padding:8px 4px;border-radius:6px;border:1px solid #fff;color:#fff;text-decoration:none;font-size:15px}\
nav.mode a.on{background:#fff;color:#0b4f8a;font-weight:bold}\
.pt{font-size:15px}\
.pt .nm{font-size:22px;font-weight:bold}\
.pt .kn{font-size:14px;margin-left:6px}\
main{padding:8px}\
section{background:#fff;border-radius:8px;margin:0 0 10px;padding:10px 12px;box-shadow:0 1px 2px rgba(0,0,0,.08)}\
h2{font-size:17px;margin:0 0 6px;padding-bottom:4px;border-bottom:2px solid #0b4f8a;display:flex;justify-content:space-between;align-items:baseline;gap:8px}\
h2 .upd{font-size:12px;font-weight:normal;color:#555;white-space:nowrap}\
ul{list-style:none;margin:0;padding:0}\
li{padding:5px 0;border-bottom:1px solid #eee;overflow-wrap:anywhere}\
li:last-child{border-bottom:0}\
.lb{display:inline-block;font-size:12px;color:#555;margin-right:8px}\
.meta{display:block;font-size:12px;color:#666}\
.src{display:inline-block;font-size:12px;color:#0b4f8a;border:1px solid #0b4f8a;border-radius:4px;padding:0 4px;margin-top:2px}\
li.ci,li.ci .lb,li.ci .meta{color:#c00}\
li.ci .tx{font-weight:bold}\
.badge{display:inline-block;background:#c00;color:#fff;font-weight:bold;font-size:13px;border-radius:4px;padding:0 6px;margin-right:6px}\
li.key .tx{font-weight:bold}\
.empty{color:#777}\
.warn{background:#fff3cd;padding:8px;border-radius:6px;margin:0 0 10px}\
a.alert{display:block;margin:10px -12px -12px;padding:8px 12px;background:#c00;color:#fff;font-weight:bold;text-decoration:none}\
.badge.inv{background:#fff;color:#c00}\
footer{font-size:12px;color:#666;padding:4px 12px 20px}\
footer a{color:#0b4f8a}";

/// Renders the view as one HTML page. `requested_id` is the id in the URL (the mode links point back
/// to it); `fhir_url` is the `$summary` link in the footer.
pub fn render(v: &View, requested_id: &str, fhir_url: &str) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let name = v.patient.name.as_deref().unwrap_or("（氏名未登録）");
    h.push_str("<!DOCTYPE html><html lang=\"ja\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    h.push_str("<meta name=\"robots\" content=\"noindex\">");
    h.push_str(&format!("<title>{} {}</title>", esc(v.title), esc(name)));
    h.push_str(&format!("<style>{CSS}</style></head><body>"));
    h.push_str(&format!(
        "<header><h1>{}</h1><nav class=\"mode\">",
        esc(v.title)
    ));
    for m in [Mode::Emergency, Mode::Multidisciplinary] {
        let on = if m == v.mode {
            " class=\"on\" aria-current=\"page\""
        } else {
            ""
        };
        h.push_str(&format!(
            "<a href=\"/view/patient/{}?mode={}\"{on}>{}</a>",
            seg(requested_id),
            m.code(),
            esc(m.label())
        ));
    }
    h.push_str("</nav><div class=\"pt\">");
    h.push_str(&format!("<span class=\"nm\">{}</span>", esc(name)));
    if let Some(k) = &v.patient.kana {
        h.push_str(&format!("<span class=\"kn\">{}</span>", esc(k)));
    }
    let mut line = Vec::new();
    if let Some(b) = &v.patient.birth_date {
        match v.patient.age {
            Some(a) => line.push(format!("{} 生（{a}歳）", esc(b))),
            None => line.push(format!("{} 生", esc(b))),
        }
    }
    if let Some(s) = &v.patient.sex {
        line.push(esc(s));
    }
    if let Some(c) = &v.patient.card_id {
        line.push(format!("ID {}", esc(c)));
    }
    h.push_str(&format!("<div>{}</div></div>", line.join("　")));
    // Contraindicated drugs repeated at the top, in red, so they are seen without scrolling (the
    // section itself stays in the network's order below).
    let ci: Vec<&str> = v
        .sections
        .iter()
        .flat_map(|s| s.items.iter())
        .filter(|i| i.contraindicated)
        .map(|i| i.text.split('（').next().unwrap_or(&i.text))
        .collect();
    if !ci.is_empty() {
        h.push_str(&format!(
            "<a class=\"alert\" href=\"#contraindicated-drugs\" style=\"background:#c00;color:#fff\"><span class=\"badge inv\">禁忌薬</span>{}</a>",
            ci.iter().map(|t| esc(t)).collect::<Vec<_>>().join("／")
        ));
    }
    h.push_str("</header><main>");
    if v.degraded {
        h.push_str("<div class=\"warn\">登録情報の一部を正しく読み取れなかったため、簡易表示しています。</div>");
    }
    for s in &v.sections {
        h.push_str(&format!(
            "<section id=\"{}\"><h2><span>{}</span>",
            s.section.code(),
            esc(s.title)
        ));
        if let Some(d) = &s.last_updated {
            h.push_str(&format!(
                "<span class=\"upd\">最終更新 {}</span>",
                esc(&show_date(d))
            ));
        }
        h.push_str("</h2>");
        if s.items.is_empty() {
            h.push_str("<p class=\"empty\">登録なし</p></section>");
            continue;
        }
        h.push_str("<ul>");
        for it in &s.items {
            if it.contraindicated {
                h.push_str("<li class=\"ci\" style=\"color:#c00\"><span class=\"badge\" style=\"background:#c00;color:#fff\">禁忌</span>");
            } else if it.key {
                h.push_str("<li class=\"key\">");
            } else {
                h.push_str("<li>");
            }
            h.push_str(&format!(
                "<span class=\"lb\">{}</span><span class=\"tx\">{}</span>",
                esc(&it.label),
                esc(&it.text)
            ));
            let mut meta = Vec::new();
            if let Some(d) = &it.last_updated {
                meta.push(format!("更新 {}", esc(&show_date(d))));
            }
            if let Some(a) = &it.author {
                meta.push(esc(a));
            }
            if !meta.is_empty() {
                h.push_str(&format!("<span class=\"meta\">{}</span>", meta.join("　")));
            }
            if let Some(src) = &it.source {
                h.push_str(&format!("<span class=\"src\">出典: {}</span>", esc(src)));
            }
            h.push_str("</li>");
        }
        h.push_str("</ul></section>");
    }
    h.push_str(&format!(
        "</main><footer>作成 {}　<a href=\"{}\">FHIR (JSON)</a></footer></body></html>",
        esc(&show_date(&v.generated)),
        esc(fhir_url)
    ));
    h
}
