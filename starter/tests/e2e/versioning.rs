//! How the next incompatible change to a running workflow ships (README, "Changing a running
//! workflow"): behind `patched`. A workflow runs to its end on the old code; its history
//! replays against the new code when the change is behind `ctx.patched`, and fails to replay
//! (non-determinism: the running listings would break) when it is not. The recorded histories
//! of `SellWindow` are held to the same rule by `workflows/tests/replay.rs`.

use crate::helpers::spawn_app;
use std::time::Duration;
use temporalio_client::{WorkflowGetResultOptions, WorkflowHistory, WorkflowStartOptions};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};
use temporalio_sdk::{Runtime, Worker, WorkerOptions, WorkflowContext, WorkflowResult};

/// The code running when the listing started: one pause, then done.
mod before {
    use super::*;

    #[workflow]
    #[derive(Default)]
    pub struct Pause;

    #[workflow_methods]
    impl Pause {
        #[run(name = "Pause")]
        pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<u32> {
            ctx.timer(Duration::from_millis(10)).await;
            Ok(1)
        }
    }
}

/// The change done right: a second pause, for runs that start after it.
mod patched {
    use super::*;

    #[workflow]
    #[derive(Default)]
    pub struct Pause;

    #[workflow_methods]
    impl Pause {
        #[run(name = "Pause")]
        pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<u32> {
            ctx.timer(Duration::from_millis(10)).await;
            if ctx.patched("a-second-pause") {
                ctx.timer(Duration::from_millis(10)).await;
                return Ok(2);
            }
            Ok(1)
        }
    }
}

/// The same change made carelessly: every run, old or new, pauses twice.
mod careless {
    use super::*;

    #[workflow]
    #[derive(Default)]
    pub struct Pause;

    #[workflow_methods]
    impl Pause {
        #[run(name = "Pause")]
        pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<u32> {
            ctx.timer(Duration::from_millis(10)).await;
            ctx.timer(Duration::from_millis(10)).await;
            Ok(2)
        }
    }
}

/// Runs one `Pause` on the old code to its end and returns its history (as JSON).
async fn history_of_the_old_code() -> Vec<u8> {
    let app = spawn_app().await;
    let runtime = Runtime::from_current_tokio(Default::default()).unwrap();
    let options = WorkerOptions::new("versioning")
        .register_workflow::<before::Pause>()
        .unwrap()
        .build();
    let mut worker = Worker::new(&runtime, app.temporal.clone(), options).unwrap();
    let stop = worker.shutdown_handle();
    let client = app.temporal.clone();
    let run_one = async move {
        let opts = WorkflowStartOptions::new("versioning", "pause-1").build();
        let handle = client
            .start_workflow(before::Pause::run, (), opts)
            .await
            .unwrap();
        let done = handle
            .get_result(WorkflowGetResultOptions::default())
            .await
            .unwrap();
        assert_eq!(done, 1);
        let history = handle
            .fetch_history(Default::default())
            .to_json()
            .await
            .unwrap();
        stop();
        history
    };
    let (history, worked) = tokio::join!(run_one, worker.run());
    worked.unwrap();
    app.stop().await;
    history
}

async fn replay(options: WorkflowReplayerOptions, json: &[u8]) -> Result<(), String> {
    let replayer = WorkflowReplayer::new(options).unwrap();
    let history = WorkflowHistory::from_json(json).unwrap();
    replayer
        .replay_workflow(history)
        .await
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_behind_patched_replays_the_old_runs_and_one_without_it_breaks_them() {
    let json = history_of_the_old_code().await;
    let ok = WorkflowReplayerOptions::new()
        .register_workflow::<patched::Pause>()
        .unwrap()
        .build();
    replay(ok, &json)
        .await
        .expect("the old run replays against the patched code");
    let broken = WorkflowReplayerOptions::new()
        .register_workflow::<careless::Pause>()
        .unwrap()
        .build();
    assert!(
        replay(broken, &json).await.is_err(),
        "a change outside patched must fail the replay"
    );
}
