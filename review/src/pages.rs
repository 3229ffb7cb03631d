//! The reading UI: server-rendered HTML (maud, checked at compile time), plain
//! forms that work without JavaScript, and one small script for the viewer
//! and the keyboard. Every asset is served by the binary; nothing comes from
//! a CDN.

use axum::Form;
use axum::extract::{FromRequest, Path, Query, State as AxState};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use crate::State;
use crate::api::{ItemsQuery, list};
use crate::auth::{self, PageReader, Reader};
use crate::error::{PageError, ReviewError};
use crate::work::{self, DecisionIn, ItemView, REASONS, parse_id};

const SCRIPT: &str = include_str!("assets/review.js");
const STYLE: &str = include_str!("assets/review.css");

fn layout(title: &str, r: Option<&Reader>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(r) = r { meta name="csrf-token" content=(r.csrf); }
                title { (title) " · Fundus review" }
                link rel="stylesheet" href="/review/assets/review.css";
                script src="/review/assets/review.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/review/" { "Fundus review" }
                    @if let Some(r) = r {
                        nav {
                            a href="/review/" accesskey="w" { "Worklist" }
                            @if r.role.is_senior() { a href="/review/monitoring" { "Monitoring" } }
                        }
                        span.who { (r.name) " · " (r.role.as_str()) }
                        form.inline method="post" action="/review/logout" {
                            input type="hidden" name="csrf" value=(r.csrf);
                            button #logout type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

fn html_response(status: StatusCode, m: Markup) -> Response {
    let mut resp = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], m.into_string()).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' blob:; object-src 'none'; frame-ancestors 'none'; form-action 'self'"),
    );
    resp
}

pub fn error_page(status: StatusCode, code: &str, message: &str) -> Response {
    html_response(
        status,
        layout("Error", None, html! {
            section.error { h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) } p { (message) } p.code { "code: " (code) } p { a href="/review/" { "Back to the worklist" } } }
        }),
    )
}

fn age(t: chrono::DateTime<Utc>) -> String {
    let s = (Utc::now() - t).num_seconds().max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86400),
    }
}

fn reason_label(r: &str) -> &'static str {
    match r {
        "referable" => "Referable",
        "ungradable" => "Ungradable",
        "uncertain" => "Uncertain",
        "scoring_failed" => "Scoring failed",
        "qa_sample" => "QA sample",
        _ => "Other",
    }
}

pub async fn script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT)
}

pub async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

pub async fn to_worklist() -> Redirect {
    Redirect::to("/review/")
}

// ---------------------------------------------------------------------------
// Log-in and log-out

/// The log-in form. Each one carries a fresh token, also set as a cookie
/// scoped to the form; a log-in is accepted only when the two match, so no
/// other page can log a browser in to an account of its choosing.
fn login_page(s: &State, status: StatusCode, message: Option<&str>) -> Response {
    let token = auth::new_csrf_token();
    let mut resp = html_response(
        status,
        layout("Log in", None, html! {
            section.login {
                h1 { "Log in" }
                @if let Some(m) = message { p.alert #login-error role="alert" { (m) } }
                form method="post" action="/review/login" {
                    input type="hidden" name="csrf" value=(token);
                    label { "User name" input #username name="username" autocomplete="username" required autofocus; }
                    label { "Password" input #password name="password" type="password" autocomplete="current-password" required; }
                    button #login type="submit" { "Log in" }
                }
            }
        }),
    );
    if let Ok(v) = HeaderValue::from_str(&auth::login_cookie(&token, s.config.secure_cookie)) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

pub async fn login_form(AxState(s): AxState<State>) -> Response {
    login_page(&s, StatusCode::OK, None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub csrf: String,
}

pub async fn login(AxState(s): AxState<State>, req: axum::extract::Request) -> Result<Response, PageError> {
    let addr = auth::client_addr(req.extensions());
    let headers = req.headers().clone();
    let Form(f): Form<LoginForm> = match Form::from_request(req, &s).await {
        Ok(f) => f,
        Err(_) => return Ok(login_page(&s, StatusCode::BAD_REQUEST, Some("Enter a user name and a password."))),
    };
    if !auth::login_token_matches(&headers, &f.csrf) {
        return Ok(login_page(&s, StatusCode::FORBIDDEN, Some("This log-in form has expired; log in again.")));
    }
    let user = match auth::log_in(&s, &f.username, &f.password, &addr).await {
        Ok(u) => u,
        Err(ReviewError::BadLogin) => return Ok(login_page(&s, StatusCode::UNAUTHORIZED, Some("Wrong user name or password."))),
        Err(ReviewError::Throttled) => {
            return Ok(login_page(&s, StatusCode::TOO_MANY_REQUESTS, Some("Too many failed log-ins. Wait a few minutes, then try again.")));
        }
        Err(e) => return Err(e.into()),
    };
    // A log-in always starts a new session: an id planted before it is worthless.
    if let Some(old) = auth::session_hash(&headers) {
        db::users::session_end(&s.db, &old, &user.name).await?;
    }
    let (id, hash) = auth::new_session_id();
    let absolute = s.config.session_hours * 3600;
    db::users::session_create(&s.db, &hash, &user, &auth::new_csrf_token(), &addr, absolute as f64).await?;
    let mut resp = Redirect::to("/review/").into_response();
    let cookie = auth::session_cookie(&id, absolute, s.config.secure_cookie);
    resp.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).map_err(|e| ReviewError::Internal(e.to_string()))?);
    Ok(resp)
}


#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

pub async fn logout(AxState(s): AxState<State>, PageReader(r): PageReader, Form(f): Form<CsrfForm>) -> Result<Response, PageError> {
    r.check_csrf(&f.csrf)?;
    db::users::session_end(&s.db, &r.session_hash, &r.name).await?;
    let mut resp = Redirect::to("/review/login").into_response();
    let cookie = auth::clear_cookie(s.config.secure_cookie);
    resp.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).map_err(|e| ReviewError::Internal(e.to_string()))?);
    Ok(resp)
}

// ---------------------------------------------------------------------------
// Worklist

/// The header counts stop at this: past it the page says "10000+", and the
/// page costs the same however long the backlog.
const COUNT_CAP: i64 = 10_000;

fn capped(n: i64) -> String {
    if n >= COUNT_CAP { format!("{COUNT_CAP}+") } else { n.to_string() }
}

#[derive(Deserialize)]
pub struct WorklistQuery {
    pub reason: Option<String>,
    pub site: Option<String>,
    pub empty: Option<String>,
}

pub async fn worklist(AxState(s): AxState<State>, PageReader(r): PageReader, Query(q): Query<WorklistQuery>) -> Result<Response, PageError> {
    let items = list(&s, &r, &ItemsQuery { state: None, reason: q.reason.clone(), site: q.site.clone(), limit: Some(100) }).await?;
    let sites = crate::api::sites_for(&r, q.site.as_deref());
    let counts = db::review::page_counts(&s.db, &sites, COUNT_CAP).await?;
    let count = |reason: &str| capped(counts.iter().filter(|c| c.reason == reason).map(|c| c.n).sum());
    let arbitration = capped(counts.iter().map(|c| c.arbitration).sum());
    let oldest = counts.iter().filter_map(|c| c.oldest).min();
    let sel_reason = q.reason.as_deref().unwrap_or("");
    let sel_site = q.site.as_deref().unwrap_or("");
    let body = html! {
        section.summary {
            @for reason in REASONS {
                a.count href={ "/review/?reason=" (reason) } { span.n #{ "count-" (reason) } { (count(reason)) } " " (reason_label(reason)) }
            }
            @if r.role.is_senior() { span.count { span.n #count-arbitration { (arbitration) } " to arbitrate" } }
            span.count { "Oldest: " span #oldest { (oldest.map(age).unwrap_or_else(|| "—".into())) } }
        }
        @if q.empty.is_some() { p.alert #worklist-empty role="status" { "Nothing left to read in your worklist." } }
        section.tools {
            form.inline #next-form method="post" action="/review/next" {
                input type="hidden" name="csrf" value=(r.csrf);
                button #next type="submit" title="Next item (j)" { "Next item " kbd { "j" } }
            }
            form.inline method="get" action="/review/" {
                label { "Site "
                    select name="site" {
                        option value="" { "All my sites" }
                        @for name in &r.site_names { option value=(name) selected[name == sel_site] { (name) } }
                    }
                }
                label { " Reason "
                    select name="reason" {
                        option value="" { "All" }
                        @for reason in REASONS { option value=(reason) selected[reason == sel_reason] { (reason_label(reason)) } }
                    }
                }
                button type="submit" { "Filter" }
            }
        }
        table #worklist {
            thead { tr { th { "Reason" } th { "Site" } th { "Eye" } th { "Waiting" } th { "State" } th { "Reader" } } }
            tbody {
                @for it in &items {
                    tr.item data-reason=(it.reason) {
                        td { a.open href={ "/review/items/" (it.id) } { (reason_label(&it.reason)) } }
                        td { (it.site) } td { (it.eye) } td { (age(it.created_at)) } td { (it.state) }
                        td { (it.claimed_by.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
        @if items.is_empty() { p.empty { "No open items." } }
    };
    Ok(html_response(StatusCode::OK, layout("Worklist", Some(&r), body)))
}

/// Claims the next item and opens it; back to the worklist when none is left.
pub async fn next(AxState(s): AxState<State>, PageReader(r): PageReader, Form(f): Form<CsrfForm>) -> Result<Redirect, PageError> {
    r.check_csrf(&f.csrf)?;
    Ok(next_redirect(&s, &r).await?)
}

async fn next_redirect(s: &State, r: &Reader) -> Result<Redirect, ReviewError> {
    Ok(match work::next(s, r).await? {
        Some(id) => Redirect::to(&format!("/review/items/{id}")),
        None => Redirect::to("/review/?empty=1"),
    })
}

// ---------------------------------------------------------------------------
// The viewer

fn pct(v: f32) -> String {
    format!("{:.1}%", v * 100.0)
}

fn outcome_text(o: &crate::policy::PhotoOutcome) -> String {
    match (&o.label, &o.ungradable_action) {
        (Some(l), Some(a)) => format!("{l} ({a}), {}", o.result),
        (Some(l), None) => format!("{l}, {}", o.result),
        _ => o.result.to_owned(),
    }
}

fn photo_strip(photos: &[work::StudyPhoto], current: uuid::Uuid) -> Markup {
    html! {
        div.strip {
            @for p in photos {
                figure.eye.current[p.image_id == current] data-eye=(p.eye) {
                    img.thumb loading="lazy" alt={ (p.eye) " eye" } data-src=(p.preview_url);
                    figcaption { strong { (p.eye) } " · " (outcome_text(&p.outcome)) }
                }
            }
        }
    }
}

fn item_page(r: &Reader, v: &ItemView, holds: bool, note: Option<&str>) -> Markup {
    let can_decide = holds && v.state != "decided";
    html! {
        section.itemhead {
            h1 { (reason_label(&v.reason)) " · " (v.eye) " eye · " (v.site) }
            p.meta {
                "Patient " (v.patient_ref) " · captured " (v.captured_at.format("%Y-%m-%d")) " · waiting " (age(v.created_at)) " · state "
                span #item-state { (v.state) }
            }
            @if let Some(n) = note { p.alert role="status" { (n) } }
        }
        div.reader {
            div.viewport #viewport tabindex="0" data-preview=(v.preview_url) data-full=(v.full_url)
                data-item=(v.id) data-claim=(if can_decide { "1" } else { "0" }) {
                div.stage #stage {
                    img #photo alt="fundus photograph";
                    @if let Some(h) = &v.heatmap_url { img #heatmap.hidden alt="heatmap" data-src=(h); }
                }
            }
            aside.panel {
                div.controls {
                    button type="button" data-act="zoom-in" title="Zoom in (+)" { "+" }
                    button type="button" data-act="zoom-out" title="Zoom out (-)" { "−" }
                    button type="button" data-act="reset" title="Reset view (0)" { "1:1" }
                    @if v.heatmap_url.is_some() { button #toggle-heatmap type="button" data-act="heatmap" title="Heatmap (h)" { "Heatmap " kbd { "h" } } }
                    label { "Brightness " input #brightness type="range" min="50" max="200" value="100"; }
                    label { "Contrast " input #contrast type="range" min="50" max="200" value="100"; }
                    @if v.heatmap_url.is_some() { label { "Heatmap opacity " input #heatmap-opacity type="range" min="0" max="100" value="60"; } }
                }
                @if v.blinded {
                    p.blinded #blinded { "Blinded QA read: the model's output is hidden." }
                } @else if let Some(m) = &v.model {
                    dl #model-output {
                        dt { "Glaucoma" } dd #glaucoma-score { (pct(m.glaucoma_score)) " (threshold " (pct(m.threshold)) ")" }
                        dt { "Gradable" } dd { (pct(m.gradable_score)) }
                        dt { "Model says" } dd #model-label { (m.label) }
                        dt { "Model" } dd { (m.model) " v" (m.model_version) }
                    }
                }
                @if !v.quality_issues.is_empty() { p.quality { "Upload quality: " (v.quality_issues.join(", ")) } }
                @if !v.reads.is_empty() {
                    h2 { "Reads" }
                    ul #reads {
                        @for d in &v.reads {
                            li { strong { (d.reader) } " (" (d.role) ", " (d.stage) "): " (d.decision)
                                @if let Some(a) = &d.ungradable_action { " / " (a) }
                                @if let Some(c) = d.cdr { " · CDR " (format!("{c:.2}")) }
                                @if let Some(n) = &d.note { br; em { (n) } } }
                        }
                    }
                }
                @if let Some(f) = &v.final_outcome {
                    p.final #final-outcome { "Final: " (f.decision) @if let Some(a) = &f.ungradable_action { " (" (a) ")" } }
                }
                @if can_decide {
                    form #decision method="post" action={ "/review/items/" (v.id) "/decision" } {
                        input type="hidden" name="csrf" value=(r.csrf);
                        fieldset {
                            legend { @if v.state == "arbitration" { "Arbitration (final)" } @else { "Your decision" } }
                            label { input type="radio" name="choice" value="referable" required; " Referable " kbd { "r" } }
                            label { input type="radio" name="choice" value="not_referable"; " Not referable " kbd { "n" } }
                            label { input type="radio" name="choice" value="ungradable:retake"; " Ungradable, retake " kbd { "u" } }
                            label { input type="radio" name="choice" value="ungradable:examine"; " Ungradable, examine " kbd { "e" } }
                        }
                        label { "Vertical CDR " input #cdr name="cdr" type="number" min="0" max="1" step="0.05"; }
                        label { "Note " textarea #note name="note" maxlength="2000" rows="2" {} }
                        button #submit-decision type="submit" { "Decide " kbd { "Enter" } }
                    }
                    form.inline method="post" action={ "/review/items/" (v.id) "/release" } {
                        input type="hidden" name="csrf" value=(r.csrf);
                        button #release type="submit" { "Release" }
                    }
                }
                form.inline #next-form method="post" action="/review/next" {
                    input type="hidden" name="csrf" value=(r.csrf);
                    button #next type="submit" { "Next item " kbd { "j" } }
                }
                details.keys {
                    summary { "Keyboard" }
                    p { kbd { "r" } " " kbd { "n" } " " kbd { "u" } " " kbd { "e" } " choose, " kbd { "Enter" } " decide, " kbd { "j" } " next, "
                        kbd { "h" } " heatmap, " kbd { "+" } " " kbd { "-" } " " kbd { "0" } " zoom, arrows pan, " kbd { "[" } " " kbd { "]" } " brightness, "
                        kbd { "{" } " " kbd { "}" } " contrast, " kbd { "w" } " worklist" }
                }
            }
        }
        section.study {
            h2 { "This study" }
            (photo_strip(&v.study, v.image_id))
            @if !v.history.is_empty() {
                h2 { "Earlier studies" }
                @for h in &v.history {
                    h3 { (h.captured_at.format("%Y-%m-%d")) }
                    (photo_strip(&h.photos, v.image_id))
                }
            }
        }
    }
}

/// Opens an item: claims it when it can be read, and shows it either way.
pub async fn item(AxState(s): AxState<State>, PageReader(r): PageReader, Path(id): Path<String>) -> Result<Response, PageError> {
    let id = parse_id(&id, "review item")?;
    let it = work::visible_item(&s, &r, id).await?;
    let (holds, note) = if it.state == "decided" {
        (false, Some("This item is decided.".to_owned()))
    } else if it.state == "arbitration" && !r.role.is_senior() {
        (false, Some("This item awaits a senior's arbitration.".to_owned()))
    } else {
        match work::claim(&s, &r, id).await {
            Ok(_) => (true, None),
            Err(ReviewError::Claimed) => (false, Some(format!("{} is reading this item.", it.claimed_by_name.clone().unwrap_or_default()))),
            Err(ReviewError::Forbidden(why)) => (false, Some(format!("Read only: {why}."))),
            Err(e) => return Err(e.into()),
        }
    };
    let it = if holds { work::visible_item(&s, &r, id).await? } else { it };
    let v = work::view(&s, &r, it).await?;
    Ok(html_response(StatusCode::OK, layout("Read", Some(&r), item_page(&r, &v, holds, note.as_deref()))))
}

#[derive(Deserialize)]
pub struct DecisionForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub choice: String,
    pub cdr: Option<String>,
    pub note: Option<String>,
}

/// A decision from the form; then on to the next item.
pub async fn decide(AxState(s): AxState<State>, PageReader(r): PageReader, Path(id): Path<String>, Form(f): Form<DecisionForm>) -> Result<Response, PageError> {
    r.check_csrf(&f.csrf)?;
    let id = parse_id(&id, "review item")?;
    let (decision, action) = match f.choice.split_once(':') {
        Some((d, a)) => (d.to_owned(), Some(a.to_owned())),
        None => (f.choice.clone(), None),
    };
    let cdr = match f.cdr.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(c.parse::<f32>().map_err(|_| crate::error::bad("invalid_cdr", "cdr must be a number between 0 and 1"))?),
    };
    work::decide(&s, &r, id, &DecisionIn { decision, ungradable_action: action, cdr, note: f.note }).await?;
    Ok(next_redirect(&s, &r).await?.into_response())
}

pub async fn release(AxState(s): AxState<State>, PageReader(r): PageReader, Path(id): Path<String>, Form(f): Form<CsrfForm>) -> Result<Redirect, PageError> {
    r.check_csrf(&f.csrf)?;
    let id = parse_id(&id, "review item")?;
    work::release(&s, &r, id).await?;
    Ok(Redirect::to("/review/"))
}

/// A photo's review item, for links from reports: `/review/images/{image id}`.
pub async fn image(AxState(s): AxState<State>, PageReader(r): PageReader, Path(id): Path<String>) -> Result<Redirect, PageError> {
    let id = parse_id(&id, "image")?;
    match db::review::image_access(&s.db, id).await? {
        Some(a) if r.sees(a.site_id) => match a.item_id {
            Some(item) => Ok(Redirect::to(&format!("/review/items/{item}"))),
            None => Err(ReviewError::NotFound("review item of this image").into()),
        },
        _ => Err(ReviewError::NotFound("image").into()),
    }
}

// ---------------------------------------------------------------------------
// Monitoring

fn rate(r: &crate::stats::Rate) -> Markup {
    html! {
        @match (r.value, r.low, r.high) {
            (Some(v), Some(l), Some(h)) => { (format!("{:.1}%", v * 100.0)) " " span.ci { (format!("({:.1}–{:.1}%)", l * 100.0, h * 100.0)) } " " span.n { "n=" (r.n) } }
            _ => { "—" " " span.n { "n=0" } }
        }
    }
}

fn kappa(k: &crate::stats::Kappa) -> Markup {
    html! { (k.value.map(|v| format!("{v:.2}")).unwrap_or_else(|| "—".into())) " " span.n { "n=" (k.n) } }
}

fn secs(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(s) if s < 120.0 => format!("{s:.0} s"),
        Some(s) if s < 7200.0 => format!("{:.0} min", s / 60.0),
        Some(s) => format!("{:.1} h", s / 3600.0),
    }
}

pub async fn monitoring(AxState(s): AxState<State>, PageReader(r): PageReader) -> Result<Response, PageError> {
    r.require_senior()?;
    let st = crate::stats::stats(&s.db, &r.site_ids).await?;
    let body = html! {
        h1 { "The model in the field" }
        p.note { "Figures over reviewed photos only, against the final human outcome, with 95% Wilson intervals. All referable model outputs are reviewed but negatives only through the uncertainty band and the blinded QA sample, so sensitivity here is an upper bound; the QA miss rate is the unbiased view of the negatives." }
        table #models {
            thead { tr { th { "Model" } th { "Sensitivity" } th { "Specificity" } th { "QA miss rate" } th { "κ reader–model" } th { "Reviewed" } } }
            tbody { @for m in &st.models { tr { td { (m.model) " v" (m.version) } td { (rate(&m.sensitivity)) } td { (rate(&m.specificity)) } td { (rate(&m.qa_miss_rate)) } td { (kappa(&m.kappa_reader_model)) } td { (m.reviewed) } } } }
        }
        h2 { "Readers" }
        p { "Agreement between readers of the same photo (Cohen's κ): " (kappa(&st.kappa_reader_reader)) }
        table #readers {
            thead { tr { th { "Reader" } th { "Reads" } th { "Agreement with final" } th { "Median time per read" } } }
            tbody { @for g in &st.readers { tr { td { (g.name) } td { (g.reads) } td { (rate(&g.agreement)) } td { (secs(g.median_secs_per_read)) } } } }
        }
        h2 { "Turnaround and backlog" }
        p { "Upload to final outcome: p50 " (secs(st.turnaround.p50_secs)) ", p90 " (secs(st.turnaround.p90_secs)) " " span.n { "n=" (st.turnaround.n) } }
        p { "Waiting: " (st.backlog.under_1h) " under an hour, " (st.backlog.under_1d) " under a day, " (st.backlog.under_7d) " under a week, " (st.backlog.over_7d) " older; oldest " (secs(st.backlog.oldest_age_secs)) }
    };
    Ok(html_response(StatusCode::OK, layout("Monitoring", Some(&r), body)))
}
