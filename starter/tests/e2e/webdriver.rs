//! A small W3C WebDriver client (the handful of commands the browser tests use), driving
//! Debian's `chromium` headless through `chromedriver`.

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    _driver: Child,
}

/// Where chromedriver is, if it is installed.
pub fn chromedriver() -> Option<std::path::PathBuf> {
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
}

/// Whether a driver error says only that the element went away while the page redrew.
fn is_transient(v: &Value) -> bool {
    let (error, message) = (
        v["error"].as_str().unwrap_or_default(),
        v["message"].as_str().unwrap_or_default(),
    );
    error == "stale element reference"
        || error == "no such element"
        || message.contains("does not belong to the document")
}

impl Browser {
    pub async fn start(driver: &std::path::Path, port: u16) -> Self {
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=430,1400"]
            }
        }}});
        let session = loop {
            if let Ok(r) = http
                .post(format!("{base}/session"))
                .json(&caps)
                .send()
                .await
            {
                let v: Value = r.json().await.expect("session answer");
                if let Some(id) = v["value"]["sessionId"].as_str() {
                    break id.to_string();
                }
                panic!("no browser session: {v}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        Self {
            http,
            base,
            session,
            _driver: child,
        }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut r = self.http.request(method, url);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let v: Value = r
            .send()
            .await
            .expect("webdriver")
            .json()
            .await
            .expect("json");
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// The elements matching `css` now.
    pub async fn all(&self, css: &str) -> Vec<String> {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        // A driver error is a failure, never "no elements".
        let Some(found) = v.as_array() else {
            panic!("the browser could not look for {css}: {v}");
        };
        found
            .iter()
            .map(|e| {
                e[ELEMENT]
                    .as_str()
                    .unwrap_or_else(|| panic!("an element without its id: {e}"))
                    .to_string()
            })
            .collect()
    }

    /// Waits (up to `within`) for an element matching `css`.
    pub async fn find(&self, css: &str, within: Duration) -> String {
        let started = Instant::now();
        loop {
            if let Some(e) = self.all(css).await.into_iter().next() {
                return e;
            }
            assert!(
                started.elapsed() < within,
                "no element {css} after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Clicks the first element matching `css`, finding it again if the page redrew it.
    pub async fn click(&self, css: &str) {
        let started = Instant::now();
        loop {
            let e = self.find(css, Duration::from_secs(30)).await;
            let v = self
                .cmd(
                    reqwest::Method::POST,
                    &format!("/element/{e}/click"),
                    Some(json!({})),
                )
                .await;
            if v.is_null() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "cannot click {css}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css, Duration::from_secs(30)).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/clear"),
            Some(json!({})),
        )
        .await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        // The page may redraw or navigate between finding the body and reading it (Chromium
        // then answers "stale element reference", or an inspector error that the node "does
        // not belong to the document"): read it again. A driver error that persists fails the
        // test rather than reading as an empty page.
        let mut last = Value::Null;
        for _ in 0..20 {
            let body = self.find("body", Duration::from_secs(10)).await;
            let v = self
                .cmd(reqwest::Method::GET, &format!("/element/{body}/text"), None)
                .await;
            if let Some(text) = v.as_str() {
                return text.to_string();
            }
            if !is_transient(&v) {
                panic!("the browser could not read the page: {v}");
            }
            last = v;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the page kept changing under the reader: {last}")
    }

    /// Waits (up to `within`) until the page's text contains `what`.
    pub async fn wait_text(&self, what: &str, within: Duration) -> String {
        let started = Instant::now();
        loop {
            let t = self.text().await;
            if t.contains(what) {
                return t;
            }
            assert!(
                started.elapsed() < within,
                "the page never showed {what:?}; it shows:\n{t}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Runs `script` in the page and returns what it returns (a promise is awaited).
    pub async fn run(&self, script: &str) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({ "script": format!(
                "const done = arguments[arguments.length - 1]; (async () => {{ {script} }})().then(done, (e) => done(String(e)));"
            ), "args": [] })),
        )
        .await
    }

    pub async fn screenshot(&self, file: &std::path::Path) {
        use base64::Engine;
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("a PNG");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, png).unwrap();
    }

    pub async fn quit(self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
    }
}
