//! Test harness: each test gets its own real Temporal dev server (the project-installed CLI on
//! free ports, in-memory), its own database (a SQLite file, or a fresh PostgreSQL database when
//! `SELLWINDOW_TEST_POSTGRES_URL` is set), an in-process worker, and the real API on free ports.
//! Everything is stopped when the `TestApp` drops.

use sellwindow_api::Application;
use sellwindow_api::pb;
use sellwindow_domain::{CustomerId, SellWindowId};
use sellwindow_runtime::{Config, Env};
use sellwindow_store::Store;
use sellwindow_store::lists::{NotificationFilter, PageRequest};
use sellwindow_store::queries::{NotificationRow, WorkOrderRow};
use sellwindow_testkit::{ApiClient, Ledger, Provider};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use tokio::process::{Child, Command};

/// How long a wait may last before a test is taken to be hung. Never a measure of speed (the
/// bench measures that): a test guarantees that something happens, not how fast.
pub const HUNG: Duration = Duration::from_secs(300);

/// A port nobody listens on, never handed out twice by this process. Ports come from below
/// the kernel's ephemeral range (32768 and up), where the dev servers pick their own internal
/// ports and client sockets get theirs: a port taken from that range and released again could
/// be picked by a test beside this one before its server binds it (a dev server that loses such
/// a race dies, while the harness may find someone else's listener on the port).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    // Start somewhere different in each run, so a port a crashed run left in use is skipped.
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {}", FIRST + SPAN);
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The project-installed Temporal CLI (installed on first use).
fn temporal_bin() -> PathBuf {
    if let Ok(p) = std::env::var("TEMPORAL_BIN") {
        return p.into();
    }
    let out = std::process::Command::new("bash")
        .arg(workspace_root().join("scripts/install-temporal.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run install-temporal.sh");
    assert!(out.status.success(), "installing the Temporal CLI failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

pub struct TemporalServer {
    pub child: Child,
    pub address: String,
    /// The frontend port and the SQLite file (if any): a restart reuses both.
    pub port: u16,
    pub db_file: Option<PathBuf>,
    /// `--dynamic-config-value` settings, kept for a restart.
    pub dynamic_config: Vec<String>,
}

impl TemporalServer {
    /// Starts a fresh server on a free port, persisting to `db_file` when given. The dev server
    /// picks more ports of its own, and a test beside this one may take one of them between
    /// the pick and the bind: then the process exits, and it is started again on new ports.
    pub async fn start(db_file: Option<PathBuf>, dynamic_config: Vec<String>) -> Self {
        for _ in 0..5 {
            let started =
                Self::try_start_on(free_port(), db_file.clone(), dynamic_config.clone()).await;
            if let Some(server) = started {
                return server;
            }
            if let Some(f) = &db_file {
                let _ = std::fs::remove_file(f);
            }
        }
        panic!("the Temporal dev server did not start in five attempts");
    }

    /// Starts again on the same port and database file (a restart after a crash).
    pub async fn restart(port: u16, db_file: Option<PathBuf>, dynamic_config: Vec<String>) -> Self {
        for _ in 0..5 {
            let started = Self::try_start_on(port, db_file.clone(), dynamic_config.clone()).await;
            if let Some(server) = started {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("the Temporal dev server did not restart on port {port} in five attempts");
    }

    /// Starts on `port` and waits until it listens there; `None` when the process exits
    /// first (its stderr, inherited, says why).
    async fn try_start_on(
        port: u16,
        db_file: Option<PathBuf>,
        dynamic_config: Vec<String>,
    ) -> Option<Self> {
        let mut cmd = Command::new(temporal_bin());
        cmd.args([
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--log-level",
            "error",
        ])
        .args([
            "--port",
            &port.to_string(),
            "--ui-port",
            &free_port().to_string(),
        ])
        .args([
            "--http-port",
            &free_port().to_string(),
            "--metrics-port",
            &free_port().to_string(),
        ])
        .args([
            "--search-attribute",
            "SellWindowId=Keyword",
            "--search-attribute",
            "ProductId=Keyword",
        ])
        .args(["--search-attribute", "ListingPhase=Keyword"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
        if let Some(f) = &db_file {
            cmd.arg("--db-filename").arg(f);
        }
        for kv in &dynamic_config {
            cmd.arg("--dynamic-config-value").arg(kv);
        }
        let mut child = cmd.spawn().expect("start temporal dev server");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                eprintln!("the Temporal dev server on port {port} exited at start: {status}");
                return None;
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill().await;
                eprintln!("the Temporal dev server did not listen on port {port} within 60 s");
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(Self {
            child,
            address: format!("http://127.0.0.1:{port}"),
            port,
            db_file,
            dynamic_config,
        })
    }
}

/// A database of the test's own.
/// Drops a test's own PostgreSQL database (SQLite files go with the temp folder).
async fn drop_test_database(store: &Store, url: &str) {
    let Ok(admin_url) = std::env::var("SELLWINDOW_TEST_POSTGRES_URL") else {
        return;
    };
    let Some((_, name)) = url.rsplit_once('/') else {
        return;
    };
    if !url.starts_with("postgres") || !name.starts_with("sw_test_") {
        return;
    }
    store.pool().close().await;
    if let Ok(pool) = sqlx::AnyPool::connect(&admin_url).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&pool)
            .await;
        pool.close().await;
    }
}

/// Which store the end-to-end tests run on: `SELLWINDOW_TEST_STORE` (`sqlite` or `postgres`)
/// when set (`scripts/test.sh` sets it for each pass), else PostgreSQL when
/// `SELLWINDOW_TEST_POSTGRES_URL` is set, else SQLite.
pub fn on_postgres() -> bool {
    let url = std::env::var("SELLWINDOW_TEST_POSTGRES_URL").unwrap_or_default();
    match std::env::var("SELLWINDOW_TEST_STORE").as_deref() {
        Ok("sqlite") => false,
        Ok("postgres") => {
            assert!(
                !url.is_empty(),
                "SELLWINDOW_TEST_STORE=postgres needs SELLWINDOW_TEST_POSTGRES_URL"
            );
            true
        }
        Ok(other) => panic!("SELLWINDOW_TEST_STORE={other}: use sqlite or postgres"),
        Err(_) => !url.is_empty(),
    }
}

async fn test_database(dir: &std::path::Path) -> String {
    if !on_postgres() {
        return format!("sqlite://{}?mode=rwc", dir.join("sellwindow.db").display());
    }
    let admin_url = std::env::var("SELLWINDOW_TEST_POSTGRES_URL").expect("checked");
    sqlx::any::install_default_drivers();
    let name = format!("sw_test_{}_{}", std::process::id(), free_port());
    let pool = sqlx::AnyPool::connect(&admin_url)
        .await
        .expect("connect to PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .expect("create test database");
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b.to_string())
        .unwrap_or(admin_url);
    format!("{base}/{name}")
}

pub struct TestApp {
    pub api: ApiClient,
    /// The payment provider the tests play: what it sends is in its ledger, which the money
    /// checks compare the books with. The payment sandbox's callbacks reach the API through
    /// its relay, so they are in the ledger too.
    pub provider: Provider,
    pub store: Store,
    pub cfg: Config,
    pub temporal: temporalio_client::Client,
    app: Option<Application>,
    worker_stop: Option<tokio::sync::oneshot::Sender<()>>,
    worker: Option<std::thread::JoinHandle<()>>,
    _relay: tokio::task::JoinHandle<()>,
    _server: TemporalServer,
    _dir: tempdir::TempDir,
}

mod tempdir {
    /// A temporary folder removed on drop.
    pub struct TempDir(pub std::path::PathBuf);
    impl TempDir {
        pub fn new() -> Self {
            let p = std::env::temp_dir().join(format!(
                "sellwindow-test-{}-{}",
                std::process::id(),
                super::free_port()
            ));
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

impl TestApp {
    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
        if let Some(tx) = self.worker_stop.take() {
            let _ = tx.send(());
        }
        if let Some(w) = self.worker.take() {
            let joined = tokio::time::timeout(
                Duration::from_secs(20),
                tokio::task::spawn_blocking(move || w.join()),
            )
            .await;
            // A worker that died during the test fails it, even if nothing waited on it.
            if let Ok(Ok(Err(panic))) = joined {
                std::panic::resume_unwind(panic);
            }
        }
        self._relay.abort();
        let _ = self._server.child.kill().await;
        drop_test_database(&self.store, &self.cfg.database_url).await;
    }

    /// The dev server's frontend port (plaintext, on loopback).
    pub fn temporal_port(&self) -> u16 {
        self._server.port
    }

    /// The test's scratch folder, removed with the app.
    pub fn scratch_dir(&self) -> &std::path::Path {
        &self._dir.0
    }

    pub fn admin(&self) -> String {
        self.api.admin_token()
    }

    pub async fn product(&self, price: i64) -> pb::Product {
        self.api
            .admin()
            .create_product(ApiClient::req(
                pb::CreateProductRequest {
                    id: String::new(),
                    name: format!("product-{}", free_port()),
                    unit_price: Some(pb::Money {
                        currency: "TWD".into(),
                        amount_minor: price,
                    }),
                    work_steps: vec!["cut".into(), "assemble".into()],
                },
                &self.admin(),
            ))
            .await
            .unwrap()
            .into_inner()
    }

    /// A window with one listing closing `close_in` from now.
    pub async fn window(
        &self,
        product: &pb::Product,
        min: u32,
        max: u32,
        close_in: Duration,
        pay_window_secs: i64,
    ) -> pb::SellWindow {
        let close_at = sellwindow_api::convert::now_ms().0 + close_in.as_millis() as i64;
        self.api
            .admin()
            .create_sell_window(ApiClient::req(
                pb::CreateSellWindowRequest {
                    name: "test window".into(),
                    close_at: Some(sellwindow_api::convert::ts(close_at)),
                    listings: vec![pb::ListingInput {
                        product_id: product.id.clone(),
                        min_qty: min,
                        max_qty: max,
                        payment_window: Some(prost_types::Duration {
                            seconds: pay_window_secs,
                            nanos: 0,
                        }),
                        per_customer_limit: 0,
                        min_paid_policy: 0,
                    }],
                    request_id: String::new(),
                },
                &self.admin(),
            ))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn reserve(
        &self,
        w: &pb::SellWindow,
        customer: &str,
        qty: u32,
        key: &str,
    ) -> Result<pb::Order, tonic::Status> {
        self.api
            .customer()
            .reserve_order(ApiClient::req(
                pb::ReserveOrderRequest {
                    sell_window_id: w.id.clone(),
                    product_id: w.listings[0].product_id.clone(),
                    qty,
                    idempotency_key: key.into(),
                },
                &self.api.customer_token(customer),
            ))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn confirm(
        &self,
        w: &pb::SellWindow,
    ) -> Result<pb::ConfirmBatchResponse, tonic::Status> {
        self.api
            .admin()
            .confirm_batch(ApiClient::req(
                pb::ConfirmBatchRequest {
                    sell_window_id: w.id.clone(),
                    product_id: w.listings[0].product_id.clone(),
                },
                &self.admin(),
            ))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn order(&self, id: &str) -> pb::Order {
        let o = self
            .store
            .order(&sellwindow_domain::OrderId::parse(id).unwrap())
            .await
            .unwrap()
            .unwrap();
        sellwindow_api::convert::order(&o)
    }

    /// Waits until the order has a payment link.
    pub async fn payment_of(&self, order_id: &str) -> pb::Order {
        for _ in 0..100 {
            let o = self.order(order_id).await;
            if !o.payment_id.is_empty() {
                return o;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("order {order_id} got no payment");
    }

    /// Sends a provider callback signed with `secret`, returning the HTTP status. Signed with
    /// the provider's own secret and fresh, it is the provider's event (in its ledger).
    pub async fn callback(&self, body: &serde_json::Value, secret: &str, t: i64) -> u16 {
        self.provider.post(body, secret, t).await
    }

    pub async fn pay(&self, o: &pb::Order, outcome: &str, event_id: &str) -> u16 {
        self.provider
            .report(&o.payment_id, &o.id, outcome, event_id)
            .await
    }

    /// The window's whole event log, read through the API a page at a time.
    pub async fn events(&self, w: &pb::SellWindow) -> Vec<pb::Event> {
        let (mut events, mut token) = (Vec::new(), String::new());
        loop {
            let page = self
                .api
                .admin()
                .list_events(ApiClient::req(
                    pb::ListEventsRequest {
                        sell_window_id: w.id.clone(),
                        page_size: 1_000,
                        page_token: token,
                        ..Default::default()
                    },
                    &self.admin(),
                ))
                .await
                .unwrap()
                .into_inner();
            events.extend(page.events);
            if page.next_page_token.is_empty() {
                return events;
            }
            token = page.next_page_token;
        }
    }

    /// Every notification (a customer's own, or with `customer` None all of them), optionally
    /// of one window, read from the store a page at a time.
    pub async fn notifications(
        &self,
        customer: Option<&str>,
        sw: Option<&SellWindowId>,
    ) -> Vec<NotificationRow> {
        let filter = NotificationFilter {
            customer: customer.map(|c| CustomerId::parse(c).unwrap()),
            sell_window_id: sw.cloned(),
            ..NotificationFilter::default()
        };
        let (mut all, mut after) = (Vec::new(), None);
        loop {
            let p = PageRequest { after, size: 1_000 };
            let page = self.store.notifications(&filter, &p).await.unwrap();
            all.extend(page.items);
            match page.next {
                Some(next) => after = Some(next),
                None => return all,
            }
        }
    }

    /// The window's work orders with their steps.
    pub async fn work_orders(&self, sw: &SellWindowId) -> Vec<WorkOrderRow> {
        let p = PageRequest {
            after: None,
            size: 1_000,
        };
        self.store
            .work_orders(Some(sw), None, &p)
            .await
            .unwrap()
            .items
    }

    /// Saves, for the replay test (when `SELLWINDOW_RECORD_HISTORIES` is set), the listing
    /// workflow's last run once it has completed: a recorded history runs to its end. A
    /// listing the test left going is driven to an end first (cancelled while it takes
    /// reservations, its work steps completed while in production).
    pub async fn record_history(&self, w: &pb::SellWindow, name: &str) {
        if std::env::var("SELLWINDOW_RECORD_HISTORIES").is_err() {
            return;
        }
        self.drive_to_an_end(w).await;
        use temporalio_client::WorkflowExecutionStatus;
        let id = w.listings[0].workflow_id.clone();
        let h = self
            .temporal
            .get_workflow_handle::<sellwindow_workflows::SellWindow>(&id);
        self.until("the listing's workflow to complete", HUNG, || async {
            let d = h.describe(Default::default()).await.ok()?;
            (d.status() == WorkflowExecutionStatus::Completed).then_some(())
        })
        .await;
        self.save_run(&id, None, name).await;
    }

    async fn drive_to_an_end(&self, w: &pb::SellWindow) {
        self.until("the listing to end", HUNG, || async {
            let phase = self.api.sell_window(&w.id).await.unwrap().listings[0]
                .phase
                .clone();
            let ended = ["SHIPPED", "NOTHING_TO_PRODUCE", "FAILED", "CANCELLED"];
            if ended.contains(&phase.as_str()) {
                return Some(());
            }
            self.push_to_an_end(w, &phase).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            None
        })
        .await;
    }

    async fn push_to_an_end(&self, w: &pb::SellWindow, phase: &str) {
        match phase {
            "OPEN" | "CONFIRMED" => {
                let _ = self.cancel_window(w).await;
            }
            "IN_PRODUCTION" => {
                let sw = SellWindowId::parse(w.id.clone()).unwrap();
                for wo in self.work_orders(&sw).await {
                    for (step, ..) in &wo.steps {
                        let req = ApiClient::req(
                            pb::CompleteWorkStepRequest {
                                work_order_id: wo.id.clone(),
                                step_id: step.clone(),
                            },
                            &self.admin(),
                        );
                        let _ = self.api.admin().complete_work_step(req).await;
                    }
                }
            }
            _ => {}
        }
    }

    /// Saves, for the replay test, the run of the listing's workflow before its current one:
    /// a history that ends by handing over (continue-as-new).
    pub async fn record_hand_over(&self, w: &pb::SellWindow, name: &str) {
        if std::env::var("SELLWINDOW_RECORD_HISTORIES").is_err() {
            return;
        }
        let id = w.listings[0].workflow_id.clone();
        let latest = self.run_events(&id, None).await;
        let previous = latest.iter().find_map(|e| match e.attributes.as_ref() {
            Some(Attributes::WorkflowExecutionStartedEventAttributes(a))
                if !a.continued_execution_run_id.is_empty() =>
            {
                Some(a.continued_execution_run_id.clone())
            }
            _ => None,
        });
        let previous = previous.expect("the listing handed over at least once");
        self.save_run(&id, Some(previous), name).await;
    }

    /// `per_customer` single units for each of `customers` concurrent customers (`c-<n>`, keys
    /// scoped to the window), every one taken.
    pub async fn reserve_many(&self, w: &pb::SellWindow, customers: u32, per_customer: u32) {
        let mut tasks = Vec::new();
        for c in 0..customers {
            let (api, sw, p) = (
                self.api.clone(),
                w.id.clone(),
                w.listings[0].product_id.clone(),
            );
            tasks.push(tokio::spawn(async move {
                for k in 0..per_customer {
                    api.customer()
                        .reserve_order(ApiClient::req(
                            pb::ReserveOrderRequest {
                                sell_window_id: sw.clone(),
                                product_id: p.clone(),
                                qty: 1,
                                idempotency_key: format!("{sw}-{k}"),
                            },
                            &api.customer_token(&format!("c-{c}")),
                        ))
                        .await
                        .unwrap_or_else(|e| panic!("reservation {c}/{k} refused: {e:?}"));
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }

    /// Makes the in-process API drop (or send again) every progress signal, as a crash between
    /// a commit and its signal would.
    pub fn drop_progress_signals(&self, dropping: bool) {
        self.app
            .as_ref()
            .expect("the in-process API")
            .progress_signals()
            .drop_all(dropping);
    }

    /// Sends the listing's workflow a progress signal as an API process would.
    pub async fn signal_progress(&self, w: &pb::SellWindow, p: sellwindow_domain::Progress) {
        use sellwindow_workflows::SellWindow;
        self.temporal
            .get_workflow_handle::<SellWindow>(&w.listings[0].workflow_id)
            .signal(SellWindow::progress, p, Default::default())
            .await
            .expect("a progress signal");
    }

    /// The kinds of the events of the listing workflow's current run, in order.
    pub async fn run_event_names(&self, w: &pb::SellWindow) -> Vec<String> {
        let events = self.run_events(&w.listings[0].workflow_id, None).await;
        events
            .iter()
            .map(|e| {
                let name = format!("{:?}", e.event_type());
                name.trim_start_matches("EventType").to_string()
            })
            .collect()
    }

    /// How many runs of the listing's workflow ran the activity `name` (its type ends so).
    pub async fn runs_running(&self, w: &pb::SellWindow, name: &str) -> usize {
        let id = w.listings[0].workflow_id.clone();
        let (mut runs, mut run) = (0, None);
        loop {
            let events = self.run_events(&id, run.take()).await;
            let ran = events.iter().any(|e| {
                matches!(&e.attributes, Some(Attributes::ActivityTaskScheduledEventAttributes(a))
                    if a.activity_type.as_ref().is_some_and(|t| t.name.ends_with(name)))
            });
            runs += usize::from(ran);
            match events.first().and_then(|e| e.attributes.as_ref()) {
                Some(Attributes::WorkflowExecutionStartedEventAttributes(a))
                    if !a.continued_execution_run_id.is_empty() =>
                {
                    run = Some(a.continued_execution_run_id.clone())
                }
                _ => return runs,
            }
        }
    }

    /// Why each run of the listing's workflow after the first was handed over to, oldest
    /// first (read from what each run was started with).
    pub async fn hand_overs(
        &self,
        w: &pb::SellWindow,
    ) -> Vec<sellwindow_workflows::listing::start::HandOver> {
        let id = w.listings[0].workflow_id.clone();
        let (mut reasons, mut run) = (Vec::new(), None);
        loop {
            let events = self.run_events(&id, run.take()).await;
            let Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) =
                events.first().and_then(|e| e.attributes.as_ref())
            else {
                panic!("a run without its start");
            };
            if a.continued_execution_run_id.is_empty() {
                reasons.reverse();
                return reasons;
            }
            let input = a
                .input
                .as_ref()
                .and_then(|p| p.payloads.first())
                .expect("input");
            let start: sellwindow_workflows::ListingRun =
                serde_json::from_slice(&input.data).expect("a listing's start");
            reasons.push(start.carried.expect("carried over").reason);
            run = Some(a.continued_execution_run_id.clone());
        }
    }

    async fn run_events(
        &self,
        workflow_id: &str,
        run: Option<String>,
    ) -> Vec<temporalio_common::protos::temporal::api::history::v1::HistoryEvent> {
        self.run_of(workflow_id, run)
            .fetch_history(Default::default())
            .into_events()
            .await
            .expect("the run's history")
    }

    fn run_of(
        &self,
        workflow_id: &str,
        run: Option<String>,
    ) -> temporalio_client::UntypedWorkflowHandle<temporalio_client::Client> {
        temporalio_client::WorkflowExecutionInfo::builder()
            .namespace(self.cfg.temporal_namespace.clone())
            .workflow_id(workflow_id.to_string())
            .maybe_run_id(run)
            .build()
            .bind_untyped(self.temporal.clone())
    }

    async fn save_run(&self, workflow_id: &str, run: Option<String>, name: &str) {
        let json = self
            .run_of(workflow_id, run)
            .fetch_history(Default::default())
            .to_json()
            .await
            .unwrap();
        let dir = workspace_root().join("workflows/tests/histories");
        std::fs::create_dir_all(&dir).unwrap();
        if json.len() < 200_000 {
            std::fs::write(dir.join(format!("{name}.json")), json).unwrap();
        } else {
            // Large ones are kept compressed.
            use std::io::Write;
            let file = std::fs::File::create(dir.join(format!("{name}.json.gz"))).unwrap();
            let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::best());
            gz.write_all(&json).unwrap();
            gz.finish().unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fault injection (faults.rs, security.rs): the app with its worker as a child process, restarts
// of Temporal and of the API, and snapshots of the database to show that nothing changed.

/// How `spawn_app_with` builds the app (`Default` is what `spawn_app` builds).
#[derive(Debug, Clone, Default)]
pub struct AppOptions {
    /// No in-process worker: the test runs its own `starter worker` children (`Proc::worker`).
    pub no_in_process_worker: bool,
    /// Temporal persists to a SQLite file in the test's folder, so `restart_temporal` finds its
    /// workflows and timers again.
    pub temporal_on_disk: bool,
    /// How listings cut their fan-outs and hand over (small numbers exercise both with few
    /// orders).
    pub tuning: sellwindow_workflows::Tuning,
    /// The history size (bytes) past which the server suggests continuing as new (4 MiB by
    /// default): small values make listings hand over by size in a test-sized run.
    pub suggest_continue_as_new_bytes: Option<u64>,
    /// The API's deadline for one call (10 s when not given).
    pub rpc_deadline: Option<Duration>,
    /// Calls the API serves at once (4,096 when not given).
    pub max_concurrent_calls: Option<usize>,
}

/// `spawn_app` with options.
pub async fn spawn_app_with(opts: AppOptions) -> TestApp {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let dir = tempdir::TempDir::new();
    let server = TemporalServer::start(
        opts.temporal_on_disk.then(|| dir.0.join("temporal.db")),
        opts.suggest_continue_as_new_bytes
            .map(|b| format!("limit.historySize.suggestContinueAsNew={b}"))
            .into_iter()
            .collect(),
    )
    .await;
    let (grpc_port, http_port) = (free_port(), free_port());
    let relay = Relay::start().await;
    let cfg = Config {
        env: Env::Development,
        database_url: test_database(&dir.0).await,
        temporal_address: server.address.clone(),
        temporal_namespace: "default".into(),
        task_queue: format!("sellwindow-test-{grpc_port}"),
        grpc_addr: format!("127.0.0.1:{grpc_port}").parse().unwrap(),
        http_addr: format!("127.0.0.1:{http_port}").parse().unwrap(),
        public_base_url: format!("http://127.0.0.1:{http_port}"),
        payment_callback_url: relay.url.clone(),
        jwt_secret: "test-jwt-secret".into(),
        callback_secret: "test-callback-secret".into(),
        notify_webhook_url: None,
        sandbox_in_production: false,
        listing_tuning: opts.tuning,
        temporal_grpc_gzip: false,
        rpc_deadline: opts.rpc_deadline.unwrap_or(Duration::from_secs(10)),
        max_concurrent_calls: opts.max_concurrent_calls.unwrap_or(4_096),
        temporal_ui_url: "http://localhost:8233".into(),
        jwt_issuer: None,
        jwt_audience: None,
        jwt_max_lifetime_secs: 30 * 24 * 3600,
        temporal_tls: None,
        worker_metrics_addr: None,
    };
    let store = Store::connect(&cfg.database_url).await.expect("database");
    let client = sellwindow_runtime::connect_temporal(&cfg)
        .await
        .expect("temporal");
    wait_temporal_ready(&client, Duration::from_secs(30)).await;
    // Free ports are picked before they are bound, so another test may take one first: then
    // pick again (before the worker starts, so it shares the API's final addresses).
    let mut cfg = cfg;
    let mut attempts = 0;
    let app = loop {
        match Application::build(cfg.clone(), store.clone(), client.clone()).await {
            Ok(app) => break app,
            Err(e) if attempts < 5 && e.to_string().contains("Address already in use") => {
                attempts += 1;
                let (grpc_port, http_port) = (free_port(), free_port());
                cfg.grpc_addr = format!("127.0.0.1:{grpc_port}").parse().unwrap();
                cfg.http_addr = format!("127.0.0.1:{http_port}").parse().unwrap();
                cfg.public_base_url = format!("http://127.0.0.1:{http_port}");
            }
            Err(e) => panic!("api: {e:?}"),
        }
    };
    let (worker_stop, worker) = if opts.no_in_process_worker {
        (None, None)
    } else {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let worker_cfg = cfg.clone();
        let worker = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(sellwindow_worker::run(worker_cfg, async {
                let _ = stop_rx.await;
            }))
            .expect("worker");
        });
        (Some(stop_tx), Some(worker))
    };
    let callback = format!("http://{}/payments/callback", app.http_addr);
    *relay.target.lock().unwrap() = callback.clone();
    let provider =
        Provider::new(callback, cfg.callback_secret.clone()).with_ledger(relay.ledger.clone());
    let api = ApiClient::connect(
        &format!("http://{}", app.grpc_addr),
        &format!("http://{}", app.http_addr),
        &cfg.jwt_secret,
    )
    .await
    .expect("api client")
    .with_provider(provider.clone());
    TestApp {
        api,
        provider,
        store,
        cfg,
        temporal: client,
        app: Some(app),
        worker_stop,
        worker,
        _relay: relay.task,
        _server: server,
        _dir: dir,
    }
}

/// Where the payment sandbox sends its callbacks in tests: a relay to the API that records each
/// callback in the provider's ledger, as the provider's own books would.
struct Relay {
    url: String,
    target: std::sync::Arc<std::sync::Mutex<String>>,
    ledger: Ledger,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start() -> Self {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, StatusCode};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/payments/callback",
            listener.local_addr().unwrap()
        );
        let target = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let ledger = Ledger::default();
        let (to, book, http) = (target.clone(), ledger.clone(), reqwest::Client::new());
        let forward = move |headers: HeaderMap, body: Bytes| {
            let (to, book, http) = (to.lock().unwrap().clone(), book.clone(), http.clone());
            async move {
                let mut req = http.post(to).body(body.clone());
                for name in ["x-signature", "content-type"] {
                    if let Some(v) = headers.get(name) {
                        req = req.header(name, v.as_bytes());
                    }
                }
                let Ok(answer) = req.send().await else {
                    return (StatusCode::BAD_GATEWAY, Bytes::new());
                };
                let status = answer.status().as_u16();
                if let Ok(json) = serde_json::from_slice(&body) {
                    book.record_body(&json, status);
                }
                let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                (code, answer.bytes().await.unwrap_or_default())
            }
        };
        let router = axum::Router::new().route("/payments/callback", axum::routing::post(forward));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            url,
            target,
            ledger,
            task,
        }
    }
}

/// Waits until the Temporal server answers namespace calls, not just connections.
pub async fn wait_temporal_ready(client: &temporalio_client::Client, timeout: Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        let h = client.get_workflow_handle::<sellwindow_workflows::SellWindow>("probe");
        let probe =
            tokio::time::timeout(Duration::from_secs(5), h.describe(Default::default())).await;
        if let Ok(Err(temporalio_client::errors::WorkflowInteractionError::NotFound(_))) = probe {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the Temporal server did not come up within {timeout:?}");
}

/// The environment a `starter` child needs to act as the app configured by `cfg`.
pub fn config_env(cfg: &Config) -> Vec<(&'static str, String)> {
    let mut env = cfg.to_env();
    env.push((
        "RUST_LOG",
        std::env::var("SELLWINDOW_CHILD_LOG").unwrap_or_else(|_| "warn".into()),
    ));
    env
}

/// A `starter` child process (`worker` or `serve`), logging to a file; killed on drop.
pub struct Proc {
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `starter <command>` configured as `cfg`.
    pub fn start(command: &str, cfg: &Config, log: PathBuf) -> Self {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("child log file");
        let child = Command::new(env!("CARGO_BIN_EXE_starter"))
            .arg(command)
            .envs(config_env(cfg))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file handle"))
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .expect("start the starter binary");
        Self { child, log }
    }

    /// `starter worker` for `app`'s task queue, database and Temporal.
    pub fn worker(app: &TestApp) -> Self {
        Self::worker_with(app, &app.cfg)
    }

    /// `starter worker` with its own configuration (e.g. another database role).
    pub fn worker_with(app: &TestApp, cfg: &Config) -> Self {
        let log = app._dir.0.join(format!("worker-{}.log", free_port()));
        Self::start("worker", cfg, log)
    }

    /// `starter serve`: another API process of `app`, on `grpc` and `http` ports.
    pub fn api(app: &TestApp, grpc: u16, http: u16) -> Self {
        let mut cfg = app.cfg.clone();
        cfg.grpc_addr = format!("127.0.0.1:{grpc}").parse().unwrap();
        cfg.http_addr = format!("127.0.0.1:{http}").parse().unwrap();
        cfg.public_base_url = format!("http://127.0.0.1:{http}");
        let log = app._dir.0.join(format!("api-{grpc}.log"));
        Self::start("serve", &cfg, log)
    }

    /// SIGTERM, then waits (at most `patience`) for it to exit; returns whether it exited
    /// cleanly. A graceful stop: it takes no new calls and answers those in flight.
    pub async fn terminate(&mut self, patience: Duration) -> bool {
        let Some(pid) = self.child.id() else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
        match tokio::time::timeout(patience, self.child.wait()).await {
            Ok(Ok(status)) => status.success(),
            _ => false,
        }
    }

    /// SIGKILL, and reap it: a crash, nothing flushed or handed over.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last lines of its log (for failure messages).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Every table of the schema, for before/after comparisons.
pub const TABLES: &[&str] = &[
    "products",
    "sell_windows",
    "product_sell_windows",
    "sell_window_quota",
    "counters",
    "batches",
    "orders",
    "payments",
    "payment_callbacks",
    "notifications",
    "work_orders",
    "work_steps",
    "shipments",
    "idempotency_keys",
    "events",
];

/// A fingerprint of the database: row counts of every table, and every order's status,
/// every payment's status, every quota row and every counter row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbSnapshot {
    pub counts: Vec<(&'static str, i64)>,
    pub rows: Vec<String>,
}

impl TestApp {
    pub async fn count(&self, sql: &str, bind: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .bind(bind)
            .fetch_one(self.store.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub async fn snapshot(&self) -> DbSnapshot {
        let mut counts = Vec::new();
        for t in TABLES {
            let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {t}"))
                .fetch_one(self.store.pool())
                .await
                .unwrap_or_else(|e| panic!("count {t}: {e}"));
            counts.push((*t, n));
        }
        let mut rows = Vec::new();
        for sql in [
            "SELECT id || ':' || status || ':' || CAST(qty AS TEXT) FROM orders ORDER BY id",
            "SELECT id || ':' || status FROM payments ORDER BY id",
            "SELECT sell_window_id || ':' || product_id || ':' || CAST(sold_qty AS TEXT) || ':' || status FROM sell_window_quota ORDER BY 1",
            "SELECT sell_window_id || ':' || product_id || ':' || CAST(reserved_qty AS TEXT) || ':' || CAST(paid_qty AS TEXT) || ':' || status FROM counters ORDER BY 1",
            "SELECT sell_window_id || ':' || product_id || ':' || phase FROM product_sell_windows ORDER BY 1",
        ] {
            let r: Vec<String> = sqlx::query_scalar(sql)
                .fetch_all(self.store.pool())
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            rows.extend(r);
        }
        DbSnapshot { counts, rows }
    }

    /// How many times each event name appears in the window's log.
    pub async fn event_counts(
        &self,
        w: &pb::SellWindow,
    ) -> std::collections::BTreeMap<String, usize> {
        let mut m = std::collections::BTreeMap::new();
        for e in self.events(w).await {
            *m.entry(e.name).or_insert(0) += 1;
        }
        m
    }

    /// Stops the Temporal server abruptly (SIGKILL): a crash of the whole engine.
    pub async fn stop_temporal(&mut self) {
        let _ = self._server.child.kill().await;
    }

    /// Starts the Temporal server again on the same port and the same database file.
    pub async fn start_temporal(&mut self) {
        assert!(
            self._server.db_file.is_some(),
            "restarting Temporal needs AppOptions::temporal_on_disk"
        );
        // The port may linger for a moment after the kill.
        for _ in 0..50 {
            if std::net::TcpListener::bind(("127.0.0.1", self._server.port)).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self._server = TemporalServer::restart(
            self._server.port,
            self._server.db_file.clone(),
            self._server.dynamic_config.clone(),
        )
        .await;
        wait_temporal_ready(&self.temporal, Duration::from_secs(60)).await;
    }

    /// Shuts the in-process API down (gracefully) and builds it again on the same ports: a
    /// restart of the API process. Clients keep their channel and reconnect.
    pub async fn restart_api(&mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
        let mut last = None;
        for _ in 0..50 {
            match Application::build(self.cfg.clone(), self.store.clone(), self.temporal.clone())
                .await
            {
                Ok(app) => {
                    self.app = Some(app);
                    return;
                }
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        panic!("the API did not start again: {last:?}");
    }

    /// The PostgreSQL server URL and this test's database name, when on PostgreSQL.
    pub fn postgres(&self) -> Option<(String, String)> {
        let admin = std::env::var("SELLWINDOW_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())?;
        let name = self.cfg.database_url.rsplit('/').next()?.to_string();
        Some((admin, name))
    }
}

// ---------------------------------------------------------------------------------------------
// The saga's books and its size: money conserved per order, and what a listing's runs cost in
// Temporal (history events per run, the largest activity input or result).

/// The terms of a one-listing window (`TestApp::window_with`).
#[derive(Debug, Clone)]
pub struct Terms {
    pub min: u32,
    pub max: u32,
    pub close_in: Duration,
    pub pay_secs: i64,
    pub limit: u32,
    pub policy: pb::MinPaidPolicy,
    pub price: i64,
}

impl Default for Terms {
    fn default() -> Self {
        Self {
            min: 1,
            max: 5,
            close_in: Duration::from_secs(120),
            pay_secs: 60,
            limit: 0,
            policy: pb::MinPaidPolicy::Unspecified,
            price: 100,
        }
    }
}

impl TestApp {
    /// A window with one listing on its own new product.
    pub async fn window_with(&self, t: Terms) -> pb::SellWindow {
        let product = self.product(t.price).await;
        let close_at = sellwindow_api::convert::now_ms().0 + t.close_in.as_millis() as i64;
        self.api
            .admin()
            .create_sell_window(ApiClient::req(
                pb::CreateSellWindowRequest {
                    name: "test window".into(),
                    close_at: Some(sellwindow_api::convert::ts(close_at)),
                    listings: vec![pb::ListingInput {
                        product_id: product.id.clone(),
                        min_qty: t.min,
                        max_qty: t.max,
                        payment_window: Some(prost_types::Duration {
                            seconds: t.pay_secs,
                            nanos: 0,
                        }),
                        per_customer_limit: t.limit,
                        min_paid_policy: t.policy as i32,
                    }],
                    request_id: String::new(),
                },
                &self.admin(),
            ))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn cancel_window(&self, w: &pb::SellWindow) -> Result<pb::SellWindow, tonic::Status> {
        self.api
            .admin()
            .cancel_sell_window(ApiClient::req(
                pb::CancelSellWindowRequest {
                    sell_window_id: w.id.clone(),
                },
                &self.admin(),
            ))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn retry_payment(
        &self,
        customer: &str,
        order_id: &str,
    ) -> Result<pb::Order, tonic::Status> {
        self.api
            .customer()
            .retry_payment(ApiClient::req(
                pb::RetryPaymentRequest {
                    order_id: order_id.into(),
                },
                &self.api.customer_token(customer),
            ))
            .await
            .map(|r| r.into_inner())
    }

    /// Waits until `f` gives `Some`, failing the test with `what` after `timeout`.
    pub async fn until<T, F, Fut>(&self, what: &str, timeout: Duration, mut f: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(v) = f().await {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_order_status(&self, order: &str, status: &str) -> pb::Order {
        let what = format!("order {order} to become {status}");
        self.until(&what, Duration::from_secs(30), || async {
            let o = self.order(order).await;
            (o.status == status).then_some(o)
        })
        .await
    }

    /// A payment's status as stored.
    pub async fn payment_status(&self, payment_id: &str) -> String {
        sqlx::query_scalar("SELECT status FROM payments WHERE id = $1")
            .bind(payment_id)
            .fetch_one(self.store.pool())
            .await
            .unwrap_or_else(|e| panic!("payment {payment_id}: {e}"))
    }

    pub async fn wait_payment_status(&self, payment_id: &str, status: &str) {
        let what = format!("payment {payment_id} to become {status}");
        self.until(&what, Duration::from_secs(30), || async {
            (self.payment_status(payment_id).await == status).then_some(())
        })
        .await
    }

    /// The saga's books, for every order in the database, against the provider's ledger of
    /// what it sent (`sellwindow_testkit::books`): which attempts were charged comes from the
    /// provider's events; per order, charged minus refunded is the order's amount when it ended
    /// PAID and zero otherwise; every charge not kept is refunded once, with its event.
    pub async fn books_balance(&self) -> sellwindow_testkit::books::Books {
        sellwindow_testkit::books::check(
            self.store.pool(),
            &self.provider.ledger,
            &sellwindow_testkit::books::Scope::Everything,
            Duration::from_secs(60),
        )
        .await
        .unwrap_or_else(|e| panic!("the books do not balance: {e}"))
    }

    /// The listing's figures as its workflow holds them, from the workflow's own query (the
    /// test fails if it does not answer).
    pub async fn workflow_figures(&self, w: &pb::SellWindow) -> sellwindow_domain::ListingFigures {
        use sellwindow_workflows::SellWindow;
        let h = self
            .temporal
            .get_workflow_handle::<SellWindow>(&w.listings[0].workflow_id);
        let q = h.query(SellWindow::figures, (), Default::default());
        match tokio::time::timeout(Duration::from_secs(20), q).await {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => panic!("the listing's workflow did not answer its query: {e:?}"),
            Err(_) => panic!("the listing's workflow did not answer its query in 20 s"),
        }
    }

    /// The listing's rows agree with each other (the quota row is the sum over the orders that
    /// hold quota, never past the cap) and, once the listing is quiet, with its workflow's
    /// figures (asked of the workflow itself). Returns the agreed figures.
    pub async fn listing_agrees(&self, w: &pb::SellWindow) -> sellwindow_domain::ListingFigures {
        let (sw, p) = (&w.id, &w.listings[0].product_id);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let rows: (i64, i64, i64, i64, String) = sqlx::query_as(
                "SELECT q.sold_qty, q.max_qty, c.reserved_qty, c.paid_qty, c.status FROM sell_window_quota q \
                 JOIN counters c ON c.sell_window_id = q.sell_window_id AND c.product_id = q.product_id \
                 WHERE q.sell_window_id = $1 AND q.product_id = $2",
            )
            .bind(sw)
            .bind(p)
            .fetch_one(self.store.pool())
            .await
            .expect("the listing's rows");
            let held = self
                .store
                .quota_check(
                    &SellWindowId::parse(sw.clone()).unwrap(),
                    &sellwindow_domain::ProductId::parse(p.clone()).unwrap(),
                )
                .await
                .unwrap()
                .2;
            let (sold, max, reserved, paid, threshold) = rows;
            assert!(sold <= max, "oversold: {sold} of {max}");
            assert_eq!(
                sold,
                i64::from(held),
                "the quota row and the orders disagree"
            );
            assert_eq!(sold, reserved + paid, "sold is not reserved + paid");
            let f = self.workflow_figures(w).await;
            let workflow = (
                i64::from(f.sold_qty),
                i64::from(f.reserved_qty),
                i64::from(f.paid_qty),
                f.threshold_status.as_str().to_string(),
            );
            if workflow == (sold, reserved, paid, threshold.clone()) {
                return f;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the workflow's figures {workflow:?} never came to the database's {:?}",
                (sold, reserved, paid, threshold)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What a listing's workflow runs cost in Temporal, over all its runs.
    pub async fn history_cost(&self, workflow_id: &str) -> sellwindow_api::history::HistoryCost {
        sellwindow_api::history::cost(&self.temporal, &self.cfg.temporal_namespace, workflow_id)
            .await
            .expect("the listing's history")
    }
}
