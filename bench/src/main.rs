//! `bench`: measures the reserve path of sellwindow against the seed's own design, in one run.
//!
//! ```text
//! bench reserve  [--customers 64,256,512] [--seconds 20] [--warmup 1] [--repeat 1] [--apis 1,3]
//!                [--baseline-clients 2,8,32,64] [--baseline-seconds 4] [--no-baseline]
//! bench finalize [--orders 10000] [--customers 256] [--paid-percent 90] [--close-in SECS]
//! bench listings [--listings 50] [--customers-per-listing 8] [--seconds 10] [--warmup 1]
//! bench endings  [--orders 100000]: every ending of a listing that size, timed and checked
//! bench overload [--customers 5000] [--seconds 20]: far past capacity, refused at once
//! bench growth   [--orders 1000000]: one listing to that size; what must not grow with it
//! bench smoke    (or `bench --smoke`): all of them, tiny and quick, SQLite; for CI
//! common:        [--store postgres|sqlite] [--postgres-url URL] [--json FILE] [--smoke]
//!                [--cap N] [--clients-per-connection 1] [--keep-going] [--apis 1]
//! ```
//!
//! By default the shape users deploy: the API (`starter`) and the worker run as their own release
//! processes beside this binary, against the Temporal dev server (the project-installed CLI,
//! default limits) and PostgreSQL, with the load from this process, one HTTP/2 connection per
//! customer (`--clients-per-connection N` to share). A reservation is the API's: every
//! reservation waiting in an API process goes into one database transaction where the
//! listing's quota row arbitrates, and the listing's workflow hears of it by a coalesced
//! progress signal; so the bench reports what a reservation costs the whole system (CPU per
//! reservation over the API, the worker, the Temporal server and PostgreSQL, the load client
//! apart; history events per reservation) against PostgreSQL's own `pgbench` running the
//! seed's row-lock reserve, measured in the same run on the app's schema and on a bare
//! two-table one (`baseline/`). With `--in-process` (the smoke run's shape) the worker and the
//! API run on runtimes of their own inside this process (threads `sw-worker`, `sw-api`) beside
//! the load (`sw-load`). Either way the CPU each part used can be told apart (`cpu.rs`). The
//! exit status is non-zero only when a check fails: oversell, the database and the workflow
//! disagreeing once quiet, lost answers, unbalanced books, or errors.

mod args;
mod baseline;
mod check;
mod cpu;
mod endings;
mod finalize;
mod growth;
mod listings;
mod load;
mod metrics;
mod overload;
mod pgstats;
mod processes;
mod report;
mod reserve;
mod runs;
mod stack;
mod temporal;

use anyhow::Context;
use args::Args;
use report::Report;

/// The same allocator as the `starter` and `worker` binaries: the API and the worker run in here.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench: {e}\n\n{}", args::USAGE);
            std::process::exit(2);
        }
    };
    if args.command == "help" {
        println!("{}", args::USAGE);
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sw-load")
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = rt.block_on(async move {
        match run(args).await {
            Ok(report) => {
                if report.failures.is_empty() {
                    println!("\nbench: every check passed");
                    0
                } else {
                    eprintln!("\nbench: FAILED");
                    for f in &report.failures {
                        eprintln!("  - {f}");
                    }
                    1
                }
            }
            Err(e) => {
                eprintln!("bench: error: {e:#}");
                1
            }
        }
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    std::process::exit(code);
}

async fn run(args: Args) -> anyhow::Result<Report> {
    let started = std::time::Instant::now();
    let mut report = Report::new(&args);
    let pg = args.postgres_url();
    let pg_up = baseline::reachable(&pg).await;
    let store_kind = args.store(pg_up)?;
    report.store = store_kind.as_str().to_string();
    println!(
        "bench {} · store {} · PostgreSQL {} · {} build",
        args.command,
        store_kind.as_str(),
        if pg_up { "reachable" } else { "unreachable" },
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );

    // The baseline runs before anything else is started, so nothing competes with it.
    report.baseline = baseline_of(&args, &pg, pg_up).await?;

    // As deployed: the API and the worker as their own processes (the smoke run keeps them
    // in-process, so CI needs no extra binaries).
    let shape = if args.smoke || args.flag("in-process") {
        stack::Shape::InProcess
    } else {
        stack::Shape::Processes
    };
    let apis = args.apis()?.into_iter().max().unwrap_or(1);
    anyhow::ensure!(
        apis == 1 || shape == stack::Shape::Processes,
        "--apis past 1 needs the API as processes (not --in-process or --smoke)"
    );
    let stack = stack::Stack::start(store_kind, &pg, shape, apis)
        .await
        .context("starting the stack")?;
    let result = dispatch(&stack, &args, &mut report).await;
    stack.stop().await;
    result?;
    report.wall_seconds = started.elapsed().as_secs_f64();
    if let Some(path) = args.get("json") {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {path}"))?;
        println!("figures written to {path}");
    }
    Ok(report)
}

/// pgbench's baseline, for the commands that compare with it: `listings` with the same
/// transaction spread over as many quota rows as listings.
async fn baseline_of(
    args: &Args,
    pg: &str,
    pg_up: bool,
) -> anyhow::Result<Option<baseline::Baseline>> {
    if !["reserve", "listings", "smoke"].contains(&args.command.as_str()) {
        return Ok(None);
    }
    if args.flag("no-baseline") {
        println!("baseline: skipped (--no-baseline)");
        return Ok(None);
    }
    if !pg_up {
        anyhow::ensure!(
            args.smoke,
            "PostgreSQL is unreachable at {pg} (the baseline needs it; --no-baseline skips it)"
        );
        println!("baseline: skipped, PostgreSQL is unreachable at {pg}");
        return Ok(None);
    }
    let clients = args.list(
        "baseline-clients",
        if args.smoke { &[2, 8] } else { &[2, 8, 32, 64] },
    )?;
    let secs = args.float("baseline-seconds", if args.smoke { 1.0 } else { 4.0 })?;
    let rows = match args.command.as_str() {
        "listings" => listings::most(args)?,
        _ => 1,
    };
    let b = baseline::run(pg, &clients, secs, rows)
        .await
        .context("baseline")?;
    report::print_baseline(&b);
    Ok(Some(b))
}

async fn dispatch(stack: &stack::Stack, args: &Args, report: &mut Report) -> anyhow::Result<()> {
    match args.command.as_str() {
        "reserve" => reserve::run(stack, args, report).await,
        "finalize" => finalize::run(stack, args, report).await,
        "endings" => endings::run(stack, args, report).await,
        "listings" => listings::run(stack, args, report).await,
        "overload" => overload::run(stack, args, report).await,
        "growth" => growth::run(stack, args, report).await,
        "smoke" => {
            reserve::run(stack, args, report).await?;
            finalize::run(stack, args, report).await?;
            listings::run(stack, args, report).await?;
            overload::run(stack, args, report).await?;
            growth::run(stack, args, report).await?;
            endings::run(stack, args, report).await
        }
        other => anyhow::bail!("unknown command {other}"),
    }
}
