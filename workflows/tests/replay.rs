//! Replays every recorded history under `tests/histories/` against the current workflow code:
//! a change that would break running workflows (non-determinism) fails here. Each history was
//! recorded to the end of its run: the workflow completed, or handed over to its next run
//! (continue-as-new), and every way a run hands over is among them. Re-record them with
//! `SELLWINDOW_RECORD_HISTORIES=1 cargo test -p sellwindow-starter --test e2e`.

use sellwindow_workflows::listing::start::HandOver;
use sellwindow_workflows::{ListingRun, SellWindow};
use serde_json::Value;
use temporalio_client::WorkflowHistory;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};

fn histories() -> Vec<(String, Value)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/histories");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("histories folder")
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.to_string_lossy();
            name.ends_with(".json") || name.ends_with(".json.gz")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no recorded histories in {dir:?}");
    files
        .into_iter()
        .map(|f| {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            (name, serde_json::from_slice(&read(&f)).unwrap())
        })
        .collect()
}

/// A recorded history; large ones (a listing that handed over) are kept gzip-compressed.
fn read(file: &std::path::Path) -> Vec<u8> {
    let bytes = std::fs::read(file).unwrap();
    if !file.to_string_lossy().ends_with(".gz") {
        return bytes;
    }
    let mut json = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(bytes.as_slice()),
        &mut json,
    )
    .unwrap();
    json
}

#[tokio::test]
async fn recorded_histories_replay_against_the_current_code() {
    for (name, history) in histories() {
        let replayer = WorkflowReplayer::new(
            WorkflowReplayerOptions::new()
                .register_workflow::<SellWindow>()
                .unwrap()
                .build(),
        )
        .unwrap();
        let history = WorkflowHistory::from_json(history.to_string().as_bytes()).unwrap();
        replayer
            .replay_workflow(history)
            .await
            .unwrap_or_else(|e| panic!("{name} no longer replays: {e:?}"));
    }
}

#[tokio::test]
async fn every_recorded_history_runs_to_its_end_and_every_hand_over_is_among_them() {
    let mut reasons = Vec::new();
    for (name, history) in histories() {
        let events = WorkflowHistory::from_json(history.to_string().as_bytes())
            .unwrap()
            .into_events()
            .await
            .unwrap();
        match events.last().and_then(|e| e.attributes.as_ref()) {
            Some(Attributes::WorkflowExecutionCompletedEventAttributes(_)) => {}
            Some(Attributes::WorkflowExecutionContinuedAsNewEventAttributes(a)) => {
                let input = a.input.as_ref().and_then(|p| p.payloads.first());
                let next: ListingRun = serde_json::from_slice(&input.expect("input").data)
                    .unwrap_or_else(|e| panic!("{name}: the next run's input: {e}"));
                reasons.push(next.carried.expect("carried over").reason);
            }
            _ => panic!("{name} ends mid-run"),
        }
    }
    for reason in HandOver::ALL {
        assert!(
            reasons.contains(reason),
            "no recorded history hands over by {reason:?}"
        );
    }
}
