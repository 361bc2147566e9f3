//! Replays every recorded history under `tests/histories/` against the current workflow code:
//! a change that would break running workflows (non-determinism) fails here.

use sellwindow_workflows::SellWindowWorkflow;
use temporalio_client::WorkflowHistory;
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};

#[tokio::test]
async fn recorded_histories_replay_against_the_current_code() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/histories");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("histories folder")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no recorded histories in {dir:?}");
    for file in files {
        let replayer = WorkflowReplayer::new(
            WorkflowReplayerOptions::new()
                .register_workflow::<SellWindowWorkflow>()
                .unwrap()
                .build(),
        )
        .unwrap();
        let history = WorkflowHistory::from_json(&std::fs::read(&file).unwrap()).unwrap();
        replayer
            .replay_workflow(history)
            .await
            .unwrap_or_else(|e| panic!("{} no longer replays: {e:?}", file.display()));
    }
}
