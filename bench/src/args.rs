//! The command line: `bench <command> [--key value | --key=value | --flag]...`.

use std::collections::BTreeMap;

pub const USAGE: &str = "\
usage:
  bench reserve  [--customers 64,256,512] [--seconds 20] [--warmup 1] [--repeat 1] [--apis 1]
                 [--baseline-clients 2,8,32,64] [--baseline-seconds 4] [--no-baseline]
                 one hot listing per level; per level: reservations/s, p50/p95/p99, errors,
                 oversold, CPU µs per reservation (API + worker + Temporal + PostgreSQL; the
                 load client apart), history events per reservation, Temporal server cores,
                 reservations per reserve transaction and its mean time, and the rate against
                 pgbench's best on the app's schema and on a bare two-table schema.
                 --repeat N runs each level N times, each on a fresh listing, and reports
                 the median with the lowest and highest (one run varies by ±10% here)
                 --apis 1,3 runs each level with one API process and with three (the stack
                 starts the most; a level with fewer leaves the rest idle), interleaved, and
                 prints the three-API median against the one-API median of the same run
  bench finalize [--orders 10000] [--customers 256] [--paid-percent 90] [--close-in SECS]
  bench listings [--listings 50] [--customers-per-listing 8] [--seconds 10] [--warmup 1]
                 total reservations/s against pgbench on a quota row at random of as many
                 rows (both schemas), the worst listing's p99, history events and CPU per
                 reservation; also 1 listing with as many customers each, and 1 with them all
  bench endings  [--orders 100000]   every ending of a listing that size, timed and checked
  bench overload [--customers 5000] [--seconds 20]   far past capacity: bounded memory,
                 refusals answered at once, nothing oversold
  bench growth   [--orders 1000000] [--customers 256] [--paid-percent 10]   one listing to
                 that size (reserve, confirm, pay, close): at 1%, 10% and 100% of it the
                 reserving rate and p99, the runs and the bytes a run carries, the worker's
                 and the API's peak RSS
  bench smoke    (same as `bench --smoke`): all of them, tiny and quick, on SQLite (CI)
common options:
  --store postgres|sqlite   the app's store (default postgres; sqlite with --smoke)
  --postgres-url URL        default postgres://postgres@127.0.0.1:5432/postgres; scratch
                            databases sw_bench_<pid>, sw_bench_bare_<pid> (the baseline) and
                            sw_bench_app_<pid> (the app) are made and dropped
  --json FILE               write every figure as JSON
  --smoke                   tiny N and ~2 s phases; skips the baseline if PostgreSQL is down
  --cap N                   the reserve listings' cap (default 1000000, the largest allowed)
  --clients-per-connection N  simulated customers sharing one HTTP/2 connection (default 1;
                            overload: 32)
  --in-process              run the API and the worker inside the bench process (the smoke run
                            does); by default they run as their own processes, the `starter`
                            binary beside the bench's (cargo build --release --bins)
  --apis N[,M…]             API processes sharing the worker, the database and Temporal, the
                            customers' connections spread over them (default 1; the scale-out
                            shape; not with --in-process). The stack runs the most given;
                            `reserve` runs each level with each count, the others use them all";

const FLAGS: &[&str] = &["smoke", "no-baseline", "keep-going", "help", "in-process"];

pub struct Args {
    pub command: String,
    pub smoke: bool,
    values: BTreeMap<String, String>,
    flags: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Postgres,
    Sqlite,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Postgres => "postgres",
            StoreKind::Sqlite => "sqlite",
        }
    }
}

impl Args {
    pub fn parse(mut it: impl Iterator<Item = String>) -> anyhow::Result<Self> {
        let mut command = None;
        let mut values = BTreeMap::new();
        let mut flags = Vec::new();
        while let Some(a) = it.next() {
            if let Some(k) = a.strip_prefix("--") {
                if let Some((k, v)) = k.split_once('=') {
                    values.insert(k.to_string(), v.to_string());
                } else if FLAGS.contains(&k) {
                    flags.push(k.to_string());
                } else {
                    let v = it
                        .next()
                        .ok_or_else(|| anyhow::anyhow!("--{k} needs a value"))?;
                    values.insert(k.to_string(), v);
                }
            } else if command.is_none() {
                command = Some(a);
            } else {
                anyhow::bail!("unexpected argument {a:?}");
            }
        }
        let smoke = flags.iter().any(|f| f == "smoke");
        let command = match command {
            Some(c) => c,
            None if smoke => "smoke".to_string(),
            None if flags.iter().any(|f| f == "help") => "help".to_string(),
            None => anyhow::bail!(
                "which benchmark? reserve, finalize, listings, endings, overload or smoke"
            ),
        };
        if ![
            "reserve", "finalize", "listings", "endings", "overload", "growth", "smoke", "help",
        ]
        .contains(&command.as_str())
        {
            anyhow::bail!("unknown command {command:?}");
        }
        Ok(Self {
            smoke: smoke || command == "smoke",
            command,
            values,
            flags,
        })
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.values.get(k).map(String::as_str)
    }

    pub fn flag(&self, k: &str) -> bool {
        self.flags.iter().any(|f| f == k)
    }

    pub fn int(&self, k: &str, default: u64) -> anyhow::Result<u64> {
        match self.get(k) {
            None => Ok(default),
            Some(v) => v
                .replace('_', "")
                .parse()
                .map_err(|e| anyhow::anyhow!("--{k} {v}: {e}")),
        }
    }

    pub fn float(&self, k: &str, default: f64) -> anyhow::Result<f64> {
        match self.get(k) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| anyhow::anyhow!("--{k} {v}: {e}")),
        }
    }

    pub fn list(&self, k: &str, default: &[usize]) -> anyhow::Result<Vec<usize>> {
        match self.get(k) {
            None => Ok(default.to_vec()),
            Some(v) => v
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| {
                    s.trim()
                        .replace('_', "")
                        .parse::<usize>()
                        .map_err(|e| anyhow::anyhow!("--{k} {v}: {e}"))
                })
                .collect(),
        }
    }

    pub fn postgres_url(&self) -> String {
        self.get("postgres-url")
            .map(str::to_string)
            .or_else(|| std::env::var("SELLWINDOW_TEST_POSTGRES_URL").ok())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into())
    }

    /// The app's store: PostgreSQL unless told otherwise (SQLite by default in smoke runs).
    pub fn store(&self, pg_up: bool) -> anyhow::Result<StoreKind> {
        match self.get("store") {
            Some("postgres") | Some("pg") | Some("postgresql") => {
                anyhow::ensure!(pg_up, "--store postgres, but PostgreSQL is unreachable");
                Ok(StoreKind::Postgres)
            }
            Some("sqlite") => Ok(StoreKind::Sqlite),
            Some(other) => anyhow::bail!("--store {other}: postgres or sqlite"),
            None if self.smoke => Ok(StoreKind::Sqlite),
            None => {
                anyhow::ensure!(
                    pg_up,
                    "PostgreSQL is unreachable (use --store sqlite to bench on SQLite)"
                );
                Ok(StoreKind::Postgres)
            }
        }
    }

    /// The API process counts asked for (`--apis 1,3`), in the order given, at least 1 each.
    pub fn apis(&self) -> anyhow::Result<Vec<usize>> {
        let mut apis = self.list("apis", &[1])?;
        anyhow::ensure!(
            !apis.is_empty() && apis.iter().all(|a| *a >= 1),
            "--apis needs counts of at least 1"
        );
        let mut seen = Vec::new();
        apis.retain(|a| {
            let new = !seen.contains(a);
            seen.push(*a);
            new
        });
        Ok(apis)
    }

    /// Everything given, for the JSON report.
    pub fn echo(&self) -> BTreeMap<String, String> {
        let mut m = self.values.clone();
        for f in &self.flags {
            m.insert(f.clone(), "true".into());
        }
        m
    }
}
