//! A real headless Chromium for the review UI's tests, driven over the W3C
//! WebDriver protocol through Debian's chromedriver. The protocol is plain
//! JSON over HTTP, so this speaks it with the reqwest client the other tests
//! use: a session, navigation, elements, keyboard actions, script and
//! screenshots. Each browser gets its own profile folder and port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const HOW_TO: &str = "install Debian's chromium and chromium-driver (`apt-get install chromium chromium-driver`), \
    or run the README's test command, `scripts/test`, which does";

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
    base: String,
    profile: PathBuf,
    /// Where `screenshot` writes.
    pub shots: PathBuf,
}

impl Browser {
    pub async fn start(shots: &Path) -> Browser {
        let driver_bin = std::env::var("FUNDUS_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let chromium = std::env::var("FUNDUS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        for bin in [&driver_bin, &chromium] {
            assert!(Path::new(bin).exists(), "{bin} not found: {HOW_TO}");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {driver_bin}: {e}; {HOW_TO}"));
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
        let base = format!("http://127.0.0.1:{port}");
        let t = Instant::now();
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(t.elapsed() < Duration::from_secs(20), "chromedriver did not answer on {base}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = crate::scratch_dir("chromium-profile");
        std::fs::create_dir_all(shots).expect("screenshot folder");
        // Headless, and quiet on the network: this machine reaches nothing outside.
        let args = [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--window-size=1400,1000", &format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        } } });
        let r: Value = http.post(format!("{base}/session")).json(&caps).send().await.expect("new session").json().await.expect("json");
        let session = r["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no WebDriver session: {r}")).to_owned();
        Browser { driver, http, session, base, profile, shots: shots.to_path_buf() }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r: Value = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}")).json().await.expect("json");
        if let Some(err) = r["value"]["error"].as_str() {
            panic!("WebDriver {path}: {err}: {}", r["value"]["message"]);
        }
        r["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None).await.as_str().unwrap_or("").to_owned()
    }

    /// The first element matching `css`, waiting up to 10 s for it.
    pub async fn find(&self, css: &str) -> String {
        let t = Instant::now();
        loop {
            if let Some(id) = self.try_find(css).await {
                return id;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "no element {css:?} on {}", self.url().await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn try_find(&self, css: &str) -> Option<String> {
        let url = format!("{}/session/{}/elements", self.base, self.session);
        let r: Value = self.http.post(&url).json(&json!({ "using": "css selector", "value": css })).send().await.ok()?.json().await.ok()?;
        r["value"].as_array()?.first()?.get(ELEMENT)?.as_str().map(str::to_owned)
    }

    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{id}/click"), Some(json!({}))).await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{id}/value"), Some(json!({ "text": text }))).await;
    }

    pub async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.call(reqwest::Method::GET, &format!("/element/{id}/text"), None).await.as_str().unwrap_or("").to_owned()
    }

    /// Presses keys as a person would, on whatever has the focus (W3C actions;
    /// "\u{E007}" is Enter).
    pub async fn keys(&self, keys: &str) {
        let mut actions = Vec::new();
        for k in keys.chars() {
            actions.push(json!({ "type": "keyDown", "value": k.to_string() }));
            actions.push(json!({ "type": "keyUp", "value": k.to_string() }));
        }
        self.call(reqwest::Method::POST, "/actions", Some(json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] }))).await;
    }

    pub async fn script(&self, js: &str) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({ "script": js, "args": [] }))).await
    }

    /// Waits (10 s at most) until `js` evaluates truthy.
    pub async fn wait_for(&self, js: &str) {
        let t = Instant::now();
        loop {
            let v = self.script(&format!("return !!({js});")).await;
            if v == Value::Bool(true) {
                return;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "still false after 10 s: {js} (on {})", self.url().await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a screenshot as `<name>.png` under `shots`; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine;
        let b64 = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(b64.as_str().unwrap_or("")).expect("base64 PNG");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, &png).expect("writing a screenshot");
        path
    }
}

impl Browser {
    /// Ends the session (Chromium exits with it) and stops chromedriver.
    pub async fn quit(self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.http.delete(url).send().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
