//! Where the CPU went during a measured window, from /proc: this process's threads grouped by
//! name (the API runtime `sw-api`, the worker runtime `sw-worker`, the simulated customers
//! `sw-load`, SQLite's connection threads), the stack's own processes by pid (the Temporal dev
//! server, and the API and the worker when they run as processes), PostgreSQL and the machine
//! as a whole. Figures are in cores: 1.0 = one core busy for the whole window (this machine has
//! 2). On a system without /proc it reports nothing.
//!
//! PostgreSQL is told apart by its process titles (`postgres: … <user> <database> <client>
//! …`): the backends serving the stack's databases and the server's own processes (postmaster,
//! WAL writer, checkpointer, background writer, autovacuum: shared, counted as the stack's) are
//! `postgres`; backends serving any other database on the same server (another test run) are
//! `postgres (other databases)`, reported but never counted as the system's (all of
//! PostgreSQL is, when the store is SQLite).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Clock ticks per second of /proc's utime/stime (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

/// The parts the stack's CPU is summed over (the system under test); the load is apart.
const SYSTEM: &[&str] = &[
    "api",
    "worker",
    "temporal server",
    "postgres",
    "sqlite threads",
];
/// The simulated customers: this process's threads when the API and the worker run apart.
const CLIENT: &[&str] = &["bench clients", "bench other threads"];

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

/// What the CPU is measured over: the stack's processes by name ("temporal server", "api",
/// "worker", "api-2", …) and the PostgreSQL databases that are the stack's.
#[derive(Debug, Clone, Default)]
pub struct Parts {
    pub pids: Vec<(String, u32)>,
    pub databases: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct Sample {
    ticks: BTreeMap<String, u64>,
    machine_busy: u64,
}

/// A process's peak resident memory (VmHWM), in MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kib / 1024.0 * 10.0).round() / 10.0)
}

/// Which PostgreSQL group a process with this title belongs to (with no database of the
/// stack's, the store is SQLite and none of PostgreSQL is the stack's).
fn postgres_group(title: &str, databases: &[String]) -> &'static str {
    if databases.is_empty() {
        return "postgres (other databases)";
    }
    let words: Vec<&str> = title.split_whitespace().collect();
    if words.iter().any(|w| databases.iter().any(|d| d == w)) {
        return "postgres";
    }
    // A backend names its client (`127.0.0.1(41234)`, `[local]`); the server's own processes
    // do not.
    let backend = words
        .iter()
        .any(|w| *w == "[local]" || (w.ends_with(')') && w.contains('(')));
    if backend {
        "postgres (other databases)"
    } else {
        "postgres"
    }
}

fn sample_threads(s: &mut Sample) {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    for e in dir.flatten() {
        if let Ok(stat) = std::fs::read_to_string(e.path().join("stat"))
            && let Some((comm, t)) = ticks_of(&stat)
        {
            *s.ticks.entry(group_of_thread(&comm).into()).or_insert(0) += t;
        }
    }
}

fn sample_postgres(s: &mut Sample, databases: &[String]) {
    s.ticks.insert("postgres".into(), 0);
    s.ticks.insert("postgres (other databases)".into(), 0);
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in dir.flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some((comm, t)) = ticks_of(&stat) else {
            continue;
        };
        if comm != "postgres" && !comm.starts_with("postgres:") {
            continue;
        }
        let title = std::fs::read(e.path().join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        *s.ticks
            .entry(postgres_group(&title, databases).into())
            .or_insert(0) += t;
    }
}

fn sample(parts: &Parts) -> Sample {
    let mut s = Sample::default();
    sample_threads(&mut s);
    for (name, pid) in &parts.pids {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            && let Some((_, t)) = ticks_of(&stat)
        {
            s.ticks.insert(name.clone(), t);
        }
    }
    sample_postgres(&mut s, &parts.databases);
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

fn sum_of(cpu: &BTreeMap<String, f64>, groups: &[&str]) -> f64 {
    cpu.iter()
        .filter(|(k, _)| {
            groups
                .iter()
                .any(|g| k.as_str() == *g || k.strip_prefix(g).is_some_and(|r| r.starts_with('-')))
        })
        .map(|(_, v)| v)
        .sum()
}

/// Cores the system under test used: every API, the worker, the Temporal server and
/// PostgreSQL (SQLite's threads when the store is SQLite).
pub fn system_cores(cpu: &BTreeMap<String, f64>) -> f64 {
    sum_of(cpu, SYSTEM)
}

/// Cores the simulated customers used (the bench's own threads; in-process, its load runtime
/// and whatever else of the bench is not the API's or the worker's).
pub fn client_cores(cpu: &BTreeMap<String, f64>) -> f64 {
    sum_of(cpu, CLIENT)
}

/// Microseconds of CPU per reservation, at `cores` busy while `per_sec` reservations were made.
pub fn micros_per(cores: f64, per_sec: f64) -> f64 {
    if per_sec > 0.0 {
        cores * 1e6 / per_sec
    } else {
        0.0
    }
}

/// Samples at the start and the end of a measured window (after `skip`, for `length`).
pub struct Sampler(tokio::task::JoinHandle<BTreeMap<String, f64>>);

impl Sampler {
    pub fn window(parts: Parts, skip: Duration, length: Duration) -> Self {
        Self(tokio::spawn(async move {
            tokio::time::sleep(skip).await;
            let t0 = Instant::now();
            let a = sample(&parts);
            tokio::time::sleep(length).await;
            let b = sample(&parts);
            diff(&a, &b, t0.elapsed())
        }))
    }

    pub async fn finish(self) -> BTreeMap<String, f64> {
        self.0.await.unwrap_or_default()
    }
}

/// Starts a measurement now; `stop` ends it.
pub struct Span {
    parts: Parts,
    t0: Instant,
    a: Sample,
}

impl Span {
    pub fn start(parts: Parts) -> Self {
        Self {
            a: sample(&parts),
            parts,
            t0: Instant::now(),
        }
    }

    pub fn stop(self) -> BTreeMap<String, f64> {
        let b = sample(&self.parts);
        diff(&self.a, &b, self.t0.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_processes_are_told_apart_by_database() {
        let ours = vec!["sw_bench_app_42".to_string()];
        let g = |t: &str| postgres_group(t, &ours);
        assert_eq!(
            g("postgres: 15/main: postgres sw_bench_app_42 127.0.0.1(5000) idle"),
            "postgres"
        );
        assert_eq!(
            g("postgres: 15/main: postgres sw_e2e_7 127.0.0.1(5001) COMMIT"),
            "postgres (other databases)"
        );
        assert_eq!(g("postgres: 15/main: walwriter"), "postgres");
        assert_eq!(g("/usr/lib/postgresql/15/bin/postgres -D /x"), "postgres");
    }

    #[test]
    fn the_system_and_the_load_are_summed_apart() {
        let cpu = BTreeMap::from([
            ("api".to_string(), 0.5),
            ("api-2".to_string(), 0.25),
            ("worker".to_string(), 0.1),
            ("temporal server".to_string(), 0.05),
            ("postgres".to_string(), 0.4),
            ("postgres (other databases)".to_string(), 0.3),
            ("bench clients".to_string(), 0.2),
            ("machine (all processes)".to_string(), 2.0),
        ]);
        assert!((system_cores(&cpu) - 1.3).abs() < 1e-9);
        assert!((client_cores(&cpu) - 0.2).abs() < 1e-9);
        assert!((micros_per(1.3, 1_000.0) - 1_300.0).abs() < 1e-6);
    }
}
