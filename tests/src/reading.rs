//! Helpers for the review tests: accounts, a signed-in client that carries
//! its session cookie and CSRF token, and photos scored by the real worker
//! so that the review queue holds real items.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::{Harness, fixtures, start_worker};

impl Harness {
    /// A review account; returns its password.
    pub async fn reader(&self, name: &str, role: &str, sites: &[&str]) -> String {
        for site in sites {
            if db::access::site_by_name(&self.pool, site).await.is_err() {
                db::access::site_create(&self.pool, site).await.expect("site");
            }
        }
        let password = review::auth::generate_password();
        let hash = review::auth::hash_password(&password).expect("hash");
        let sites: Vec<String> = sites.iter().map(|s| s.to_string()).collect();
        db::users::user_create(&self.pool, name, role, &hash, &sites).await.expect("user");
        password
    }

    /// A client signed in as `name`.
    pub async fn sign_in(&self, name: &str, password: &str) -> ReviewClient {
        let c = ReviewClient::new(&self.base);
        let (status, cookie) = c.log_in(name, password).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "log-in of {name} failed");
        let mut c = c;
        c.cookie = cookie;
        let (status, s) = c.get("/v1/review/session").await;
        assert_eq!(status, StatusCode::OK, "{s}");
        c.csrf = s["csrf_token"].as_str().expect("csrf token").to_owned();
        c
    }

    /// Uploads `n` photos to one study per pair (left and right eye) at
    /// `site`, the k-th study of patient `P-k` (so a second call gives the
    /// same patients an earlier study), and scores them with the real worker on an untrained model at
    /// `threshold` (0: every photo referable; 1: none). Returns the image ids.
    pub async fn scored(&self, site: &str, n: usize, threshold: f32, qa_rate: f32) -> Vec<Uuid> {
        let token = self.device(site).await;
        let mut ids = Vec::new();
        let mut study = Uuid::nil();
        for i in 0..n {
            if i % 2 == 0 {
                let (status, body) = self
                    .post_json(Some(&token), "/v1/studies", serde_json::json!({
                        "patient_ref": format!("P-{}", i / 2), "captured_at": "2026-11-20T10:00:00Z"
                    }))
                    .await;
                assert_eq!(status, StatusCode::CREATED, "{body}");
                study = body["id"].as_str().expect("study id").parse().expect("uuid");
            }
            let eye = if i % 2 == 0 { "left" } else { "right" };
            let req = self
                .http
                .post(format!("{}/v1/studies/{study}/images?eye={eye}", self.base))
                .bearer_auth(&token)
                .header("content-type", "image/jpeg")
                .body(fixtures::jpeg(640, 512, 7000 + i as u64));
            let (status, body) = self.send(req).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            ids.push(body["id"].as_str().expect("id").parse().expect("uuid"));
        }
        let model = fixtures::untrained_model(&crate::scratch_dir("model"), threshold, 64);
        let (worker, _stop) = start_worker(self, &model, |c| {
            c.routing.gradable_threshold = 0.0;
            c.routing.uncertain_odds = Some(1.0);
            c.routing.qa_rate = qa_rate;
        });
        let summary = worker.await.expect("join").expect("worker");
        assert_eq!(summary.done as usize, n, "every photo scored");
        ids
    }

    /// The review item of an image.
    pub async fn item_of(&self, image: Uuid) -> Uuid {
        sqlx::query_scalar("SELECT id FROM review_items WHERE image_id = $1")
            .bind(image)
            .fetch_one(&self.pool)
            .await
            .expect("a review item")
    }
}

/// An HTTP client of the review service with its own session.
#[derive(Clone)]
pub struct ReviewClient {
    pub base: String,
    pub http: reqwest::Client,
    pub cookie: String,
    pub csrf: String,
}

impl ReviewClient {
    pub fn new(base: &str) -> ReviewClient {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        ReviewClient { base: base.to_owned(), http, cookie: String::new(), csrf: String::new() }
    }

    /// The log-in form's token, as a browser gets it: (cookie pair, token).
    pub async fn login_token(&self) -> (String, String) {
        let r = self.http.get(format!("{}/review/login", self.base)).send().await.expect("log-in form");
        let pair = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .find(|p| p.starts_with("fundus_login="))
            .expect("the log-in form sets its cookie")
            .to_owned();
        let token = pair.split_once('=').map(|(_, v)| v.to_owned()).unwrap_or_default();
        (pair, token)
    }

    /// The log-in POST a browser sends from the form (with this client's
    /// session cookie too, when it has one).
    pub async fn login_request(&self, name: &str, password: &str) -> reqwest::RequestBuilder {
        let (pair, token) = self.login_token().await;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("csrf", &token)
            .append_pair("username", name)
            .append_pair("password", password)
            .finish();
        let cookie = if self.cookie.is_empty() { pair } else { format!("{}; {pair}", self.cookie) };
        self.http
            .post(format!("{}/review/login", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", cookie)
            .body(body)
    }

    /// Logs in through the form; returns the status and the session cookie it set.
    pub async fn log_in(&self, name: &str, password: &str) -> (StatusCode, String) {
        let r = self.login_request(name, password).await.send().await.expect("log-in request");
        let cookie = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .find(|p| p.starts_with("fundus_session="))
            .unwrap_or("")
            .to_owned();
        (r.status(), cookie)
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if !self.cookie.is_empty() {
            req = req.header("cookie", &self.cookie);
        }
        req
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        crate::decode(self.request(reqwest::Method::GET, path).send().await.expect("request")).await
    }

    /// A JSON POST with this session's CSRF token.
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let req = self.request(reqwest::Method::POST, path).header("x-csrf-token", &self.csrf).json(&body);
        crate::decode(req.send().await.expect("request")).await
    }

    pub async fn claim(&self, item: Uuid) -> (StatusCode, Value) {
        self.post(&format!("/v1/review/items/{item}/claim"), Value::Null).await
    }

    pub async fn decide(&self, item: Uuid, decision: Value) -> (StatusCode, Value) {
        self.post(&format!("/v1/review/items/{item}/decision"), decision).await
    }

    /// A form POST (as the pages send), with `fields` and the CSRF field.
    pub async fn form(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let body = form_body(&self.csrf, fields);
        self.request(reqwest::Method::POST, path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("form request")
    }
}

/// A urlencoded form body with the CSRF field first.
pub fn form_body(csrf: &str, fields: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    s.append_pair("csrf", csrf);
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.finish()
}
