//! The review service against the real Postgres and Garage, with photos
//! scored by the real worker: the authorisation matrix over every route, the
//! claim race, the reading policy end to end, the blinded QA sample, sessions,
//! CSRF, throttled log-ins, outcomes back to the phone, and the audit trail.

use std::collections::HashMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tests::reading::ReviewClient;
use tests::{Harness, Stack};
use uuid::Uuid;

async fn count(h: &Harness, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(&h.pool).await.expect(sql)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Who {
    Nobody,
    Device,
    GraderA,
    GraderB,
    Senior,
    Admin,
}

const EVERYONE: [Who; 6] = [Who::Nobody, Who::Device, Who::GraderA, Who::GraderB, Who::Senior, Who::Admin];

/// The expected status of each route for each caller, in `EVERYONE`'s order.
/// Routes are tried in the router's order; for one route the callers go in
/// this order too, so a claim taken by grader A is held when the senior asks.
fn expected() -> HashMap<(Method, &'static str), [u16; 6]> {
    let phone = |ok: u16| [401, ok, 401, 401, 401, 401];
    let public = [200; 6];
    let page = [303, 303, 200, 200, 200, 200];
    let api = [401, 401, 200, 200, 200, 200];
    let item_page = [303, 303, 200, 404, 200, 200];
    let item_api = [401, 401, 200, 404, 200, 200];
    HashMap::from([
        ((Method::POST, "/v1/studies"), phone(201)),
        ((Method::GET, "/v1/studies/{id}"), phone(200)),
        ((Method::POST, "/v1/studies/{id}/images"), phone(201)),
        ((Method::GET, "/v1/images/{id}"), phone(200)),
        ((Method::GET, "/healthz"), public),
        ((Method::GET, "/readyz"), public),
        ((Method::GET, "/metrics"), public),
        ((Method::GET, "/openapi.json"), public),
        ((Method::GET, "/review"), [303; 6]),
        ((Method::GET, "/review/"), page),
        ((Method::GET, "/review/login"), public),
        // A wrong password, whoever asks.
        ((Method::POST, "/review/login"), [401; 6]),
        // Run last (it ends the session): see below.
        ((Method::POST, "/review/logout"), [303; 6]),
        ((Method::POST, "/review/next"), [303; 6]),
        // Opening claims for grader A; the senior and the admin see it held.
        ((Method::GET, "/review/items/{id}"), item_page),
        // An invalid decision: refused after the visibility check.
        ((Method::POST, "/review/items/{id}/decision"), [303, 303, 400, 404, 400, 400]),
        // Grader A holds the claim; the others cannot release it.
        ((Method::POST, "/review/items/{id}/release"), [303, 303, 303, 404, 409, 409]),
        ((Method::GET, "/review/images/{id}"), [303, 303, 303, 404, 303, 303]),
        ((Method::GET, "/review/monitoring"), [303, 303, 403, 403, 200, 200]),
        ((Method::GET, "/review/assets/review.js"), public),
        ((Method::GET, "/review/assets/review.css"), public),
        ((Method::GET, "/v1/review/session"), api),
        ((Method::GET, "/v1/review/items"), api),
        ((Method::GET, "/v1/review/items/{id}"), item_api),
        ((Method::POST, "/v1/review/items/{id}/claim"), [401, 401, 200, 404, 409, 409]),
        ((Method::POST, "/v1/review/items/{id}/release"), [401, 401, 204, 404, 409, 409]),
        ((Method::POST, "/v1/review/items/{id}/decision"), [401, 401, 400, 404, 400, 400]),
        ((Method::GET, "/v1/review/stats"), [401, 401, 403, 403, 200, 200]),
        ((Method::GET, "/v1/review/images/{id}/preview"), item_api),
        ((Method::GET, "/v1/review/images/{id}/full"), item_api),
        ((Method::GET, "/v1/review/images/{id}/heatmap"), item_api),
    ])
}

#[tokio::test]
async fn every_route_answers_every_caller_as_the_matrix_says() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    // One photo: `Next` then has one item to hand out, so who holds what is certain.
    let images = h.scored("site-a", 1, 0.0, 0.0).await;
    let image = images[0];
    let item = h.item_of(image).await;
    let study: Uuid = sqlx::query_scalar("SELECT study_id FROM images WHERE id = $1").bind(image).fetch_one(&h.pool).await.expect("study");
    let device = h.device("site-a").await;
    let mut clients = HashMap::new();
    for (who, name, role, sites) in [
        (Who::GraderA, "grader-a", "grader", &["site-a"][..]),
        (Who::GraderB, "grader-b", "grader", &["site-b"][..]),
        (Who::Senior, "senior-a", "senior", &["site-a"][..]),
        (Who::Admin, "admin", "admin", &[][..]),
    ] {
        let pw = h.reader(name, role, sites).await;
        clients.insert(who, h.sign_in(name, &pw).await);
    }
    let expected = expected();
    let mut routes = ingest::routes();
    // Logging out ends the session the rest of the matrix needs.
    routes.sort_by_key(|(m, p)| (*m == Method::POST && *p == "/review/logout") as u8);
    let mut failures = Vec::new();
    for (method, path) in routes {
        let want = expected.get(&(method.clone(), path)).unwrap_or_else(|| panic!("route {method} {path} has no row in the matrix"));
        let id = if path.starts_with("/v1/studies/") {
            study
        } else if path.contains("/images/") {
            image
        } else {
            item
        };
        let mut url = path.replace("{id}", &id.to_string());
        if path == "/v1/studies/{id}/images" {
            url.push_str("?eye=left");
        }
        for (who, want) in EVERYONE.iter().zip(want) {
            // A name of its own per caller: five failures for one name throttle it.
            let nobody = format!("nobody-{who:?}").to_lowercase();
            let client = clients.get(who).cloned().unwrap_or_else(|| ReviewClient::new(&h.base));
            let mut req = if path == "/review/login" && method == Method::POST {
                // A wrong password, from the form as a browser sends it.
                client.login_request(&nobody, "wrong password").await
            } else {
                client.request(method.clone(), &url)
            };
            if *who == Who::Device {
                req = req.bearer_auth(&device);
            }
            if !client.csrf.is_empty() {
                req = req.header("x-csrf-token", &client.csrf);
            }
            req = match (method.as_str(), path) {
                ("POST", "/v1/studies") => req.json(&json!({ "patient_ref": "P-9", "captured_at": "2026-11-30T10:00:00Z" })),
                ("POST", "/v1/studies/{id}/images") => req
                    .header("content-type", "image/jpeg")
                    .body(tests::fixtures::jpeg(640, 512, 99 + *want as u64)),
                ("POST", "/v1/review/items/{id}/decision") => req.json(&json!({ "decision": "maybe" })),
                ("POST", "/review/login") => req,
                ("POST", p) if p.starts_with("/review/") => {
                    let fields: &[(&str, &str)] = match p {
                        "/review/items/{id}/decision" => &[("choice", "maybe")],
                        _ => &[],
                    };
                    req.header("content-type", "application/x-www-form-urlencoded").body(tests::reading::form_body(&client.csrf, fields))
                }
                _ => req,
            };
            let got = req.send().await.expect("request").status().as_u16();
            if got != *want {
                failures.push(format!("{method} {path} as {who:?}: {got}, expected {want}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn two_graders_never_hold_the_same_item() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let images = h.scored("site-a", 1, 0.0, 0.0).await;
    let item = h.item_of(images[0]).await;
    let mut graders = Vec::new();
    for i in 0..12 {
        let name = format!("g{i}");
        let pw = h.reader(&name, "grader", &["site-a"]).await;
        graders.push(h.sign_in(&name, &pw).await);
    }
    // Every grader claims at once, each on a connection of their own.
    let tasks: Vec<_> = graders
        .iter()
        .cloned()
        .map(|c| tokio::spawn(async move { c.claim(item).await }))
        .collect();
    let mut won = 0;
    for t in tasks {
        let (status, body) = t.await.expect("join");
        match status {
            StatusCode::OK => won += 1,
            StatusCode::CONFLICT => assert_eq!(body["code"], "claimed", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(won, 1, "exactly one grader holds the item");
    assert_eq!(count(&h, "SELECT count(*) FROM review_items WHERE claimed_by IS NOT NULL AND claim_until > now()").await, 1);
    // `Next` hands each grader a different item, or none.
    let more = h.scored("site-a", 6, 0.0, 0.0).await;
    assert_eq!(more.len(), 6);
    let tasks: Vec<_> = graders
        .iter()
        .cloned()
        .map(|c| tokio::spawn(async move { c.form("/review/next", &[]).await.headers().get("location").map(|l| l.to_str().unwrap_or("").to_owned()) }))
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        if let Some(l) = t.await.expect("join") {
            if l.starts_with("/review/items/") {
                got.push(l);
            }
        }
    }
    let n = got.len();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), n, "no item handed to two graders: {got:?}");
    // The six new items, and the first one back to the grader who holds it.
    assert_eq!(n, 7, "every item handed out once: {got:?}");
}

#[tokio::test]
async fn a_grader_overruling_the_model_goes_to_a_senior_whose_decision_is_final() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let images = h.scored("site-a", 2, 0.0, 0.0).await;
    let grader = h.sign_in("grader1", &h.reader("grader1", "grader", &["site-a"]).await).await;
    let senior = h.sign_in("senior1", &h.reader("senior1", "senior", &["site-a"]).await).await;

    // The worklist: both photos, referable (threshold 0), oldest first.
    let (status, list) = grader.get("/v1/review/items?state=open").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{list}");
    assert!(items.iter().all(|i| i["reason"] == "referable" && i["state"] == "open" && i["site"] == "site-a"));
    // The first photo of the list, and the other eye of the same study.
    let item: Uuid = items[0]["id"].as_str().expect("id").parse().expect("uuid");
    let left: Uuid = items[0]["image_id"].as_str().expect("id").parse().expect("uuid");
    let right = *images.iter().find(|&&i| i != left).expect("the other eye");

    // Deciding without holding the claim is refused.
    let (status, body) = grader.decide(item, json!({ "decision": "not_referable" })).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("not_claimed")), "{body}");
    let (status, body) = grader.claim(item).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The grader sees the model's output and says it is wrong.
    let (_, view) = grader.get(&format!("/v1/review/items/{item}")).await;
    assert_eq!(view["model"]["label"], "referable", "{view}");
    assert_eq!(view["study"].as_array().map(Vec::len), Some(2), "both eyes of the study: {view}");
    let (status, out) = grader.decide(item, json!({ "decision": "not_referable", "cdr": 0.3, "note": "physiological cup" })).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["state"], "arbitration");

    // Not final yet: the phone still sees the model's preliminary label.
    let token = h.device("site-a").await;
    let (_, img) = h.get(Some(&token), &format!("/v1/images/{left}")).await;
    assert_eq!(img["outcome"]["result"], "preliminary", "{img}");
    // The grader cannot arbitrate; the item is not on their list any more.
    let (status, _) = grader.claim(item).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let other = h.sign_in("grader2", &h.reader("grader2", "grader", &["site-a"]).await).await;
    let (_, view) = other.get(&format!("/v1/review/items/{item}")).await;
    assert_eq!(view["reads"], json!([]), "reads awaiting arbitration are the senior's to see: {view}");
    let (_, list) = grader.get("/v1/review/items").await;
    assert!(list["items"].as_array().expect("items").iter().all(|i| i["id"] != item.to_string()));
    // The senior sees it to arbitrate, with the grader's read.
    let (_, list) = senior.get("/v1/review/items?state=arbitration").await;
    assert_eq!(list["items"][0]["id"], item.to_string(), "{list}");
    senior.claim(item).await;
    let (_, view) = senior.get(&format!("/v1/review/items/{item}")).await;
    assert_eq!(view["reads"][0]["decision"], "not_referable", "{view}");
    assert_eq!(view["reads"][0]["reader"], "grader1");
    let (status, out) = senior.decide(item, json!({ "decision": "referable", "cdr": 0.7 })).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!((out["state"].as_str(), out["final_decision"].as_str()), (Some("decided"), Some("referable")));
    let (status, body) = senior.decide(item, json!({ "decision": "not_referable" })).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("already_decided")));

    // The phone now sees a final outcome, decided by a senior (a role, not a name).
    let (_, img) = h.get(Some(&token), &format!("/v1/images/{left}")).await;
    assert_eq!(img["outcome"]["result"], "final", "{img}");
    assert_eq!(img["outcome"]["label"], "referable");
    assert_eq!(img["outcome"]["decided_by_role"], "senior");
    assert_eq!(img["status"], "reviewed");
    let study = img["study_id"].as_str().expect("study");
    let (status, st) = h.get(Some(&token), &format!("/v1/studies/{study}")).await;
    assert_eq!(status, StatusCode::OK, "{st}");
    assert_eq!((st["recommendation"].as_str(), st["result"].as_str()), (Some("refer"), Some("final")), "{st}");
    assert!(!st.to_string().contains("senior1"), "no reader's name reaches the phone: {st}");

    // The right eye: the grader agrees with the model, so theirs is final.
    let item2 = h.item_of(right).await;
    grader.claim(item2).await;
    let (_, out) = grader.decide(item2, json!({ "decision": "referable" })).await;
    assert_eq!(out["state"], "decided", "{out}");

    // Decisions are append-only rows with who, role, stage and whether the model was shown.
    let rows: Vec<(String, String, bool)> = sqlx::query_as("SELECT role, stage, model_shown FROM review_decisions WHERE item_id = $1 ORDER BY id")
        .bind(item)
        .fetch_all(&h.pool)
        .await
        .expect("decisions");
    assert_eq!(rows, vec![("grader".into(), "read".into(), true), ("senior".into(), "arbitration".into(), true)]);
    let e = sqlx::query("UPDATE review_decisions SET decision = 'ungradable'").execute(&h.pool).await.expect_err("append-only");
    assert!(e.to_string().contains("append-only"), "{e}");
    // Every claim, view and decision is in the audit trail under its real actor.
    for (actor, action, n) in [("grader1", "review.decision", 2), ("senior1", "review.decision", 1), ("grader1", "review.claim", 2), ("senior1", "review.view", 1), ("grader1", "login", 1)] {
        let got: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE actor = $1 AND action = $2")
            .bind(actor)
            .bind(action)
            .fetch_one(&h.pool)
            .await
            .expect("audit");
        assert!(got >= n, "{actor} {action}: {got} audit rows, expected at least {n}");
    }

    // Monitoring for the senior: two reviewed photos, both finally referable and referred.
    let (status, stats) = senior.get("/v1/review/stats").await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    let m = &stats["models"][0];
    assert_eq!((m["sensitivity"]["k"].as_u64(), m["sensitivity"]["n"].as_u64()), (Some(2), Some(2)), "{stats}");
    assert_eq!(m["specificity"]["n"], 0);
    assert_eq!(m["reviewed"], 2);
    assert!(m["sensitivity"]["low"].as_f64().expect("low") < 1.0, "a Wilson interval is never a point at n=2");
    assert_eq!(stats["turnaround"]["n"], 2);
    let readers = stats["readers"].as_array().expect("readers");
    let g = readers.iter().find(|r| r["name"] == "grader1").expect("grader1");
    assert_eq!((g["reads"].as_u64(), g["agreement"]["k"].as_u64(), g["agreement"]["n"].as_u64()), (Some(2), Some(1), Some(2)));
}

#[tokio::test]
async fn a_second_reading_that_disagrees_goes_to_arbitration() {
    let stack = Stack::shared();
    let h = Harness::start_with(&stack, |c| c.review.second_reading = true).await;
    let images = h.scored("site-a", 1, 1.0, 1.0).await;
    let item = h.item_of(images[0]).await;
    let a = h.sign_in("ga", &h.reader("ga", "grader", &["site-a"]).await).await;
    let b = h.sign_in("gb", &h.reader("gb", "grader", &["site-a"]).await).await;
    a.claim(item).await;
    let (_, out) = a.decide(item, json!({ "decision": "referable" })).await;
    assert_eq!(out["state"], "open", "a second read is due: {out}");
    // The first reader cannot hold it again (that would block the second
    // reader), nor read it again; the second does not see the first read.
    let (status, body) = a.claim(item).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{body}");
    let (status, body) = a.decide(item, json!({ "decision": "referable" })).await;
    assert_eq!(status, StatusCode::CONFLICT, "not holding it: {body}");
    let (status, list) = a.get("/v1/review/items").await;
    assert_eq!((status, list["items"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)), "not on the first reader's list: {list}");
    assert_eq!(b.claim(item).await.0, StatusCode::OK);
    let (_, view) = b.get(&format!("/v1/review/items/{item}")).await;
    assert_eq!(view["reads"], json!([]), "reads are independent: {view}");
    let (_, out) = b.decide(item, json!({ "decision": "not_referable" })).await;
    assert_eq!(out["state"], "arbitration", "{out}");
}

#[tokio::test]
async fn the_qa_sample_is_about_its_rate_and_read_blinded() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    // Threshold 1: the model calls every photo non-referable.
    let n = 2000;
    let images = h.scored("site-a", n, 1.0, 0.10).await;
    let sampled = count(&h, "SELECT count(*) FROM review_items WHERE reason = 'qa_sample'").await;
    // 2,000 draws at 10%: mean 200, standard deviation 13.4; four of them either side.
    assert!((146..=254).contains(&sampled), "{sampled} of {n} sampled");
    assert_eq!(count(&h, "SELECT count(*) FROM results WHERE qa_sampled").await, sampled, "the draw is recorded with the result");
    assert_eq!(count(&h, "SELECT count(*) FROM results WHERE abs(qa_rate - 0.1) < 1e-6").await, n as i64);
    // The draw is the image id's: the same photos whatever the order.
    let drawn: Vec<(Uuid, bool)> = sqlx::query_as("SELECT image_id, qa_sampled FROM results").fetch_all(&h.pool).await.expect("results");
    assert_eq!(drawn.len(), images.len());
    for (id, d) in drawn {
        assert_eq!(d, inference::route::qa_drawn(id, 0.10), "{id}");
    }
    let grader = h.sign_in("qa", &h.reader("qa", "grader", &["site-a"]).await).await;
    let (_, list) = grader.get("/v1/review/items?reason=qa_sample").await;
    let item: Uuid = list["items"][0]["id"].as_str().expect("id").parse().expect("uuid");
    let image: Uuid = list["items"][0]["image_id"].as_str().expect("id").parse().expect("uuid");
    grader.claim(item).await;
    let (_, view) = grader.get(&format!("/v1/review/items/{item}")).await;
    assert_eq!(view["blinded"], true, "{view}");
    assert!(view.get("model").is_none() && view.get("heatmap_url").is_none(), "no model output: {view}");
    assert!(!view.to_string().contains("glaucoma_score"), "{view}");
    let (status, _) = grader.get(&format!("/v1/review/images/{image}/heatmap")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, out) = grader.decide(item, json!({ "decision": "referable" })).await;
    assert_eq!((status, out["state"].as_str()), (StatusCode::OK, Some("decided")), "{out}");
    let shown: bool = sqlx::query_scalar("SELECT model_shown FROM review_decisions WHERE item_id = $1").bind(item).fetch_one(&h.pool).await.expect("decision");
    assert!(!shown, "the read is recorded as blinded");
    // A QA read that finds a referable photo is a miss of the model, counted with its n.
    let senior = h.sign_in("lead", &h.reader("lead", "senior", &["site-a"]).await).await;
    let (_, stats) = senior.get("/v1/review/stats").await;
    assert_eq!((stats["models"][0]["qa_miss_rate"]["k"].as_u64(), stats["models"][0]["qa_miss_rate"]["n"].as_u64()), (Some(1), Some(1)), "{stats}");
}

#[tokio::test]
async fn sessions_expire_end_at_log_out_and_are_new_at_every_log_in() {
    let stack = Stack::shared();
    let h = Harness::start_with(&stack, |c| c.review.secure_cookie = true).await;
    let pw = h.reader("nurse", "grader", &["site-a"]).await;
    let anon = ReviewClient::new(&h.base);
    // The log-in form's token must come back with its cookie: without it, or
    // with another form's, no log-in (so no page elsewhere can log a browser in).
    let (pair, token) = anon.login_token().await;
    let (_, other) = anon.login_token().await;
    let body = |t: &str| format!("csrf={t}&username=nurse&password={}", url::form_urlencoded::byte_serialize(pw.as_bytes()).collect::<String>());
    for (cookie, field) in [("", token.as_str()), (pair.as_str(), ""), (pair.as_str(), other.as_str())] {
        let r = anon.http.post(format!("{}/review/login", h.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", cookie)
            .body(body(field))
            .send()
            .await
            .expect("log-in");
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "cookie {cookie:?}, field {field:?}");
        assert!(r.headers().get_all("set-cookie").iter().all(|c| !c.to_str().unwrap_or("").starts_with("fundus_session=")));
    }
    let r = anon.login_request("nurse", &pw).await.send().await.expect("log-in");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/review/");
    let cookie = r.headers()["set-cookie"].to_str().expect("cookie").to_owned();
    assert!(cookie.starts_with("fundus_session="), "{cookie}");
    for flag in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} missing from {cookie}");
    }
    let c = h.sign_in("nurse", &pw).await;
    // Logging in while carrying a session (one planted, say) ends that one
    // and starts a new one.
    let planted = h.sign_in("nurse", &pw).await;
    let r = planted.login_request("nurse", &pw).await.send().await.expect("log-in");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let fresh = r.headers()["set-cookie"].to_str().expect("cookie").split(';').next().expect("cookie").to_owned();
    assert_ne!(fresh, planted.cookie, "a new session id at every log-in");
    assert_eq!(planted.get("/v1/review/session").await.0, StatusCode::UNAUTHORIZED, "the carried session ended");
    assert_eq!(c.get("/v1/review/session").await.0, StatusCode::OK, "other sessions of the user are untouched");
    // Only the hash of the id is stored.
    let raw = c.cookie.split_once('=').expect("cookie").1.to_owned();
    let (hashed, plain): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE id_hash = sha256(convert_to($1, 'UTF8'))), count(*) FILTER (WHERE id_hash = convert_to($1, 'UTF8')) FROM sessions",
    )
    .bind(&raw)
    .fetch_one(&h.pool)
    .await
    .expect("sessions");
    assert_eq!((hashed, plain), (1, 0));
    // Idle too long: gone.
    sqlx::query("UPDATE sessions SET last_seen = now() - interval '31 minutes'").execute(&h.pool).await.expect("age");
    let (status, body) = c.get("/v1/review/session").await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("no_session")));
    // Past the absolute expiry, however busy: gone.
    let d = h.sign_in("nurse", &pw).await;
    sqlx::query("UPDATE sessions SET expires_at = now() - interval '1 second'").execute(&h.pool).await.expect("expire");
    assert_eq!(d.get("/v1/review/session").await.0, StatusCode::UNAUTHORIZED);
    // Log-out ends it on the server, not only in the browser.
    let e = h.sign_in("nurse", &pw).await;
    let r = e.form("/review/logout", &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(r.headers()["set-cookie"].to_str().expect("cookie").contains("Max-Age=0"));
    assert_eq!(e.get("/v1/review/session").await.0, StatusCode::UNAUTHORIZED);
    // Disabling a user ends their sessions.
    let f = h.sign_in("nurse", &pw).await;
    db::users::user_disable(&h.pool, "nurse").await.expect("disable");
    assert_eq!(f.get("/v1/review/session").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(ReviewClient::new(&h.base).log_in("nurse", &pw).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn state_changes_need_the_sessions_csrf_token() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let images = h.scored("site-a", 1, 0.0, 0.0).await;
    let item = h.item_of(images[0]).await;
    let a = h.sign_in("csrf-a", &h.reader("csrf-a", "grader", &["site-a"]).await).await;
    let b = h.sign_in("csrf-b", &h.reader("csrf-b", "grader", &["site-a"]).await).await;
    let claim = |c: &ReviewClient, token: Option<&str>| {
        let mut req = c.request(Method::POST, &format!("/v1/review/items/{item}/claim"));
        if let Some(t) = token {
            req = req.header("x-csrf-token", t);
        }
        req.send()
    };
    for token in [None, Some("wrong"), Some(b.csrf.as_str())] {
        let r = claim(&a, token).await.expect("request");
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "token {token:?}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["code"], "csrf");
    }
    assert_eq!(count(&h, "SELECT count(*) FROM review_items WHERE claimed_by IS NOT NULL").await, 0, "nothing changed");
    // The forms carry it as a hidden field.
    let mut bad = a.clone();
    bad.csrf = "forged".into();
    assert_eq!(bad.form("/review/next", &[]).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(claim(&a, Some(&a.csrf)).await.expect("request").status(), StatusCode::OK);
    // A photo is only served through a session: a device token gets nothing.
    let token = h.device("site-a").await;
    let r = h.http.get(format!("{}/v1/review/images/{}/preview", h.base, images[0])).bearer_auth(&token).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = a.request(Method::GET, &format!("/v1/review/images/{}/preview", images[0])).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.headers().contains_key("x-fundus-heatmap-box"));
    let preview = image::load_from_memory(&r.bytes().await.expect("bytes")).expect("a JPEG");
    assert_eq!((preview.width(), preview.height()), (640, 512), "a small photo is not enlarged");
    assert!(count(&h, "SELECT count(*) FROM audit_log WHERE action = 'photo.view' AND actor = 'csrf-a'").await >= 1);
}

#[tokio::test]
async fn failed_log_ins_are_throttled_audited_and_say_nothing_of_the_user() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let pw = h.reader("target", "grader", &["site-a"]).await;
    let c = ReviewClient::new(&h.base);
    // The page, less the fresh token every log-in form carries.
    let body_of = |r: reqwest::Response| async move {
        let status = r.status();
        let text = r.text().await.expect("text");
        let field = "name=\"csrf\" value=\"";
        let start = text.find(field).map(|i| i + field.len()).expect("a token field");
        let end = start + text[start..].find('"').expect("end of the token");
        (status, format!("{}{}", &text[..start], &text[end..]))
    };
    let attempt = |name: &'static str, password: String| {
        let c = c.clone();
        async move { c.login_request(name, &password).await.send().await.expect("log-in") }
    };
    let unknown = body_of(attempt("nobody-here", "x".into()).await).await;
    let wrong = body_of(attempt("target", "x".into()).await).await;
    assert_eq!(unknown.0, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown, wrong, "an unknown user and a wrong password look the same");
    for _ in 0..4 {
        assert_eq!(attempt("target", "guess".into()).await.status(), StatusCode::UNAUTHORIZED);
    }
    // Five failures: now even the right password is refused for a while.
    assert_eq!(attempt("target", pw.clone()).await.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(count(&h, "SELECT count(*) FROM audit_log WHERE action = 'login.failed' AND actor = 'target'").await, 5);
    assert!(count(&h, "SELECT count(*) FROM audit_log WHERE action = 'login.throttled'").await >= 1);
    // The window passes: the right password works again.
    sqlx::query("UPDATE login_failures SET at = at - interval '16 minutes'").execute(&h.pool).await.expect("age");
    assert_eq!(attempt("target", pw.clone()).await.status(), StatusCode::SEE_OTHER);
    // Guesses sent all at once do not pass the throttle together.
    h.reader("target2", "grader", &["site-a"]).await;
    let guesses: Vec<_> = (0..12).map(|i| tokio::spawn(attempt("target2", format!("guess{i}")))).collect();
    let mut checked = 0;
    for g in guesses {
        match g.await.expect("join").status() {
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!(checked <= 5, "{checked} of 12 parallel guesses had their password checked");
    // No password reaches the audit trail.
    assert_eq!(count(&h, &format!("SELECT count(*) FROM audit_log WHERE detail::text LIKE '%{}%'", &pw[..10])).await, 0);
}

#[tokio::test]
async fn the_worklist_is_in_clinical_order_and_filters_by_site_and_reason() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    // QA-sampled negatives at B and A, then two referable photos at A. Site B
    // is created first, so the database's order of sites is not their names'.
    let qa_b = h.scored("site-b", 2, 1.0, 1.0).await;
    let qa_a = h.scored("site-a", 2, 1.0, 1.0).await;
    let refer = h.scored("site-a", 2, 0.0, 0.0).await;
    // Make the QA items older: order is by priority first, age second.
    sqlx::query("UPDATE review_items SET created_at = created_at - interval '1 day' WHERE reason = 'qa_sample'").execute(&h.pool).await.expect("age");
    let admin = h.sign_in("boss", &h.reader("boss", "admin", &[]).await).await;
    let (_, list) = admin.get("/v1/review/items").await;
    let reasons: Vec<&str> = list["items"].as_array().expect("items").iter().map(|i| i["reason"].as_str().expect("reason")).collect();
    assert_eq!(reasons, ["referable", "referable", "qa_sample", "qa_sample", "qa_sample", "qa_sample"], "{list}");
    let (_, list) = admin.get("/v1/review/items?site=site-b").await;
    let ids: Vec<String> = list["items"].as_array().expect("items").iter().map(|i| i["image_id"].as_str().expect("id").to_owned()).collect();
    let mut want: Vec<String> = qa_b.iter().map(Uuid::to_string).collect();
    let mut got = ids.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let grader = h.sign_in("ga", &h.reader("ga", "grader", &["site-a"]).await).await;
    let (_, list) = grader.get("/v1/review/items?reason=qa_sample").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2), "site B is invisible to a grader of A: {list}");
    let (_, list) = grader.get("/v1/review/items?site=site-b").await;
    assert_eq!(list["items"], json!([]), "naming another site shows nothing: {list}");
    // A grader of both sites filters to each.
    let both = h.sign_in("gab", &h.reader("gab", "grader", &["site-b", "site-a"]).await).await;
    for (site, n) in [("site-a", 4), ("site-b", 2)] {
        let (_, list) = both.get(&format!("/v1/review/items?site={site}")).await;
        let items = list["items"].as_array().expect("items");
        assert_eq!(items.len(), n, "{site}: {list}");
        assert!(items.iter().all(|i| i["site"] == site), "{site}: {list}");
    }
    let (status, body) = grader.get("/v1/review/items?reason=bogus").await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_reason")));
    // The worklist page: counts per reason at the top.
    let page = grader.request(Method::GET, "/review/").send().await.expect("page").text().await.expect("html");
    assert!(page.contains(r#"id="count-referable">2<"#) && page.contains(r#"id="count-qa_sample">2<"#), "{page}");
    let _ = (refer, qa_a);
    // The same backlog as Prometheus gauges.
    let metrics = h.http.get(format!("{}/metrics", h.base)).send().await.expect("metrics").text().await.expect("text");
    for line in ["fundus_review_backlog{reason=\"referable\"} 2", "fundus_review_backlog{reason=\"qa_sample\"} 4", "fundus_review_backlog{reason=\"ungradable\"} 0"] {
        assert!(metrics.lines().any(|l| l == line), "{line} missing:\n{metrics}");
    }
    assert!(metrics.contains("fundus_review_oldest_age_seconds") && metrics.contains("fundus_ingest_uploads_total"), "{metrics}");
}
