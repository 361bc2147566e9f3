//! Simulated customers: each one a task with its own JWT, reserving one unit at a time through
//! the real gRPC API (`ReserveOrder`, a fresh idempotency key each time) in a closed loop, and
//! recording every latency and every error by its gRPC code.

use sellwindow_api::pb;
use sellwindow_testkit::ApiClient;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Latency samples in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Latencies(Vec<u32>);

#[derive(Debug, Default, Clone, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latencies {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d.as_micros().min(u32::MAX as u128) as u32);
    }

    pub fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub fn summary(&self) -> LatencySummary {
        let mut v = self.0.clone();
        v.sort_unstable();
        let q = |p: f64| -> f64 {
            if v.is_empty() {
                return 0.0;
            }
            let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
            v[i] as f64 / 1000.0
        };
        LatencySummary {
            count: v.len() as u64,
            p50_ms: q(0.50),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
            max_ms: v.last().map_or(0.0, |m| *m as f64 / 1000.0),
            mean_ms: if v.is_empty() {
                0.0
            } else {
                v.iter().map(|x| *x as f64).sum::<f64>() / v.len() as f64 / 1000.0
            },
        }
    }
}

/// One listing to reserve on.
#[derive(Debug, Clone)]
pub struct Target {
    pub sell_window_id: String,
    pub product_id: String,
    pub workflow_id: String,
}

pub struct LoadSpec {
    pub targets: Vec<Target>,
    pub customers_per_target: usize,
    pub warmup: Duration,
    pub measure: Duration,
    /// Unique per phase, so customers and idempotency keys never repeat across phases.
    pub tag: String,
    /// Stop every customer once this many reservations succeeded in total (finalize mode).
    pub stop_after: Option<u64>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct LoadResult {
    /// Reservations answered with an order inside the measured window.
    pub reservations_in_window: u64,
    pub window_seconds: f64,
    pub reservations_per_sec: f64,
    pub latency: LatencySummary,
    /// Every reservation answered with an order (warm-up and tail included).
    pub reservations_ok_total: u64,
    pub errors_total: u64,
    /// Errors by gRPC code (whole run).
    pub errors: BTreeMap<String, u64>,
    /// A few error messages, one per code.
    pub error_samples: BTreeMap<String, String>,
    /// Orders answered, per second of the run (warm-up included): stalls show here.
    pub per_second: Vec<u64>,
    /// Wall time from the first request to the last answer.
    pub total_seconds: f64,
    /// How fast refusals came back (every error answer, whole run).
    pub error_latency: LatencySummary,
    /// The same for refusals answered inside the measured window only (as `latency` is).
    pub error_latency_in_window: LatencySummary,
    /// Each target's p99 inside the measured window (ms), in the targets' order.
    pub per_target_p99_ms: Vec<f64>,
}

impl LoadResult {
    /// The worst target's p99 (ms): the listing served worst.
    pub fn worst_target_p99_ms(&self) -> f64 {
        self.per_target_p99_ms.iter().copied().fold(0.0, f64::max)
    }
}

struct CustomerOutcome {
    target: usize,
    lat: Latencies,
    error_lat: Latencies,
    error_lat_window: Latencies,
    in_window: u64,
    ok_total: u64,
    errors: BTreeMap<String, u64>,
    samples: BTreeMap<String, String>,
    per_second: Vec<u64>,
}

/// One simulated customer's loop and what it needs.
struct Customer {
    api: ApiClient,
    target: Target,
    index: usize,
    id: String,
    tag: String,
    start: Instant,
    warm_end: Instant,
    end: Instant,
    stop_after: Option<u64>,
    succeeded: Arc<AtomicU64>,
}

impl Customer {
    async fn run(self, target_index: usize) -> CustomerOutcome {
        let token = self.api.customer_token(&self.id);
        let mut svc = self.api.customer();
        let mut out = CustomerOutcome {
            target: target_index,
            lat: Latencies::default(),
            error_lat: Latencies::default(),
            error_lat_window: Latencies::default(),
            in_window: 0,
            ok_total: 0,
            errors: BTreeMap::new(),
            samples: BTreeMap::new(),
            per_second: Vec::new(),
        };
        let mut seq = 0u64;
        loop {
            let t0 = Instant::now();
            if t0 >= self.end {
                break;
            }
            if let Some(n) = self.stop_after
                && self.succeeded.fetch_add(1, Ordering::SeqCst) >= n
            {
                break;
            }
            seq += 1;
            let req = ApiClient::req(
                pb::ReserveOrderRequest {
                    sell_window_id: self.target.sell_window_id.clone(),
                    product_id: self.target.product_id.clone(),
                    qty: 1,
                    idempotency_key: format!("{}-{}-{seq}", self.tag, self.id),
                },
                &token,
            );
            let r = svc.reserve_order(req).await;
            let t1 = Instant::now();
            let in_window = t1 >= self.warm_end && t1 <= self.end;
            match r {
                Ok(_) => {
                    out.ok_total += 1;
                    let sec = (t1 - self.start).as_secs() as usize;
                    if out.per_second.len() <= sec {
                        out.per_second.resize(sec + 1, 0);
                    }
                    out.per_second[sec] += 1;
                    if in_window {
                        out.in_window += 1;
                        out.lat.push(t1 - t0);
                    }
                }
                Err(status) => {
                    out.error_lat.push(t1 - t0);
                    if in_window {
                        out.error_lat_window.push(t1 - t0);
                    }
                    self.refused(&mut out, &status, seq).await;
                }
            }
        }
        out
    }

    /// Counts a refusal and waits before the next call: as a gRPC client with a retry policy
    /// does, what the server asks (jittered, so refused customers do not return in step), else
    /// a little, never spinning on a failing path.
    async fn refused(&self, out: &mut CustomerOutcome, status: &tonic::Status, seq: u64) {
        if self.stop_after.is_some() {
            // The ticket was not used: give it back.
            self.succeeded.fetch_sub(1, Ordering::SeqCst);
        }
        let code = format!("{:?}", status.code());
        *out.errors.entry(code.clone()).or_insert(0) += 1;
        out.samples
            .entry(code)
            .or_insert_with(|| status.message().to_string());
        let pushback_ms = status
            .metadata()
            .get("grpc-retry-pushback-ms")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let wait_ms = match pushback_ms {
            Some(ms) => ms / 2 + (self.index as u64 * 7919 + seq * 104_729) % ms.max(1),
            None => 20,
        };
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
    }
}

pub async fn run(clients: &[ApiClient], spec: &LoadSpec) -> LoadResult {
    let start = Instant::now();
    let warm_end = start + spec.warmup;
    let end = warm_end + spec.measure;
    let succeeded = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let mut k = 0usize;
    for (t, target) in spec.targets.iter().enumerate() {
        for c in 0..spec.customers_per_target {
            let customer = Customer {
                api: clients[k % clients.len()].clone(),
                target: target.clone(),
                index: c,
                id: format!("cus-{}-{t}-{c}", spec.tag),
                tag: spec.tag.clone(),
                start,
                warm_end,
                end,
                stop_after: spec.stop_after,
                succeeded: succeeded.clone(),
            };
            k += 1;
            tasks.push(tokio::spawn(customer.run(t)));
        }
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    let mut panicked = 0;
    for t in tasks {
        match t.await {
            Ok(o) => outcomes.push(o),
            Err(_) => panicked += 1,
        }
    }
    let mut result = merge(outcomes, spec.targets.len());
    if panicked > 0 {
        result.errors.insert("TaskPanicked".into(), panicked);
    }
    result.total_seconds = start.elapsed().as_secs_f64();
    result.errors_total = result.errors.values().sum();
    result.window_seconds = if spec.stop_after.is_some() {
        result.total_seconds
    } else {
        spec.measure.as_secs_f64()
    };
    if spec.stop_after.is_some() {
        // Finalize mode: no window, every answer counts.
        result.reservations_in_window = result.reservations_ok_total;
    }
    result.reservations_per_sec = result.reservations_in_window as f64 / result.window_seconds;
    result
}

/// Every customer's outcome in one result (its latencies summarised, per target too).
fn merge(outcomes: Vec<CustomerOutcome>, targets: usize) -> LoadResult {
    let mut result = LoadResult::default();
    let mut per_target: Vec<Latencies> = vec![Latencies::default(); targets];
    let (mut error_lat, mut error_lat_window) = (Latencies::default(), Latencies::default());
    for o in outcomes {
        if let Some(t) = per_target.get_mut(o.target) {
            t.merge(o.lat);
        }
        error_lat.merge(o.error_lat);
        error_lat_window.merge(o.error_lat_window);
        result.reservations_in_window += o.in_window;
        result.reservations_ok_total += o.ok_total;
        for (code, n) in o.errors {
            *result.errors.entry(code).or_insert(0) += n;
        }
        for (code, m) in o.samples {
            result.error_samples.entry(code).or_insert(m);
        }
        if result.per_second.len() < o.per_second.len() {
            result.per_second.resize(o.per_second.len(), 0);
        }
        for (i, n) in o.per_second.into_iter().enumerate() {
            result.per_second[i] += n;
        }
    }
    result.per_target_p99_ms = per_target.iter().map(|l| l.summary().p99_ms).collect();
    let mut lat = Latencies::default();
    for t in per_target {
        lat.merge(t);
    }
    result.latency = lat.summary();
    result.error_latency = error_lat.summary();
    result.error_latency_in_window = error_lat_window.summary();
    result
}
