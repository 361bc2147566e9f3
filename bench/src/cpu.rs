//! Where the CPU went during a measured window, from /proc: this process's threads grouped by
//! name (the API runtime `sw-api`, the worker runtime `sw-worker`, the simulated customers
//! `sw-load`, SQLite's connection threads), the stack's own processes by pid (the Temporal dev
//! server, and the API and the worker when they run as processes), PostgreSQL (every
//! `postgres` process) and the machine as a whole. Figures are in cores: 1.0 = one core busy for
//! the whole window (this machine has 2). On a system without /proc it reports nothing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Clock ticks per second of /proc's utime/stime (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

fn ticks_of(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // Fields 14 and 15 (utime, stime); `rest` starts at field 3.
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

fn group_of_thread(comm: &str) -> &'static str {
    if comm.starts_with("sw-api") {
        "api"
    } else if comm.starts_with("sw-worker") {
        "worker"
    } else if comm.starts_with("sw-load") || comm == "bench" {
        "bench clients"
    } else if comm.starts_with("sqlx-sqlite") {
        "sqlite threads"
    } else {
        "bench other threads"
    }
}

#[derive(Debug, Clone, Default)]
struct Sample {
    ticks: BTreeMap<String, u64>,
    machine_busy: u64,
}

/// The stack's processes by name ("temporal server", "api", "worker").
pub type Pids = Vec<(String, u32)>;

/// A process's peak resident memory (VmHWM), in MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kib / 1024.0 * 10.0).round() / 10.0)
}

fn sample(pids: &Pids) -> Sample {
    let mut s = Sample::default();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for e in dir.flatten() {
            if let Ok(stat) = std::fs::read_to_string(e.path().join("stat"))
                && let Some((comm, t)) = ticks_of(&stat)
            {
                *s.ticks.entry(group_of_thread(&comm).into()).or_insert(0) += t;
            }
        }
    }
    for (name, pid) in pids {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            && let Some((_, t)) = ticks_of(&stat)
        {
            s.ticks.insert(name.clone(), t);
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc") {
        let mut pg = 0;
        for e in dir.flatten() {
            let name = e.file_name();
            if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if let Ok(stat) = std::fs::read_to_string(e.path().join("stat"))
                && let Some((comm, t)) = ticks_of(&stat)
                && (comm == "postgres" || comm.starts_with("postgres:"))
            {
                pg += t;
            }
        }
        s.ticks.insert("postgres".into(), pg);
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/stat")
        && let Some(line) = stat.lines().next()
    {
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal
        let total: u64 = v.iter().take(8).sum();
        let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        s.machine_busy = total.saturating_sub(idle);
    }
    s
}

fn diff(a: &Sample, b: &Sample, wall: Duration) -> BTreeMap<String, f64> {
    let secs = wall.as_secs_f64().max(1e-3);
    let mut out = BTreeMap::new();
    let mut ours = 0.0;
    for (k, tb) in &b.ticks {
        let ta = a.ticks.get(k).copied().unwrap_or(0);
        // A postgres backend that exited in between makes the sum go down: clamp.
        let c = tb.saturating_sub(ta) as f64 / TICKS / secs;
        ours += c;
        out.insert(k.clone(), round2(c));
    }
    let machine = b.machine_busy.saturating_sub(a.machine_busy) as f64 / TICKS / secs;
    out.insert("machine (all processes)".into(), round2(machine));
    out.insert("everything else".into(), round2((machine - ours).max(0.0)));
    out
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Samples at the start and the end of a measured window (after `skip`, for `length`).
pub struct Sampler(tokio::task::JoinHandle<BTreeMap<String, f64>>);

impl Sampler {
    pub fn window(pids: Pids, skip: Duration, length: Duration) -> Self {
        Self(tokio::spawn(async move {
            tokio::time::sleep(skip).await;
            let t0 = Instant::now();
            let a = sample(&pids);
            tokio::time::sleep(length).await;
            let b = sample(&pids);
            diff(&a, &b, t0.elapsed())
        }))
    }

    pub async fn finish(self) -> BTreeMap<String, f64> {
        self.0.await.unwrap_or_default()
    }
}

/// Starts a measurement now; `stop` ends it.
pub struct Span {
    pids: Pids,
    t0: Instant,
    a: Sample,
}

impl Span {
    pub fn start(pids: Pids) -> Self {
        Self {
            a: sample(&pids),
            pids,
            t0: Instant::now(),
        }
    }

    pub fn stop(self) -> BTreeMap<String, f64> {
        let b = sample(&self.pids);
        diff(&self.a, &b, self.t0.elapsed())
    }
}
