//! Replays every recorded history under `tests/histories/` against the current workflow code:
//! a change that would break running workflows (non-determinism) fails here. `v1_*` to `v4_*`
//! were recorded by the first shape of the workflow (`SellWindowWorkflow`, kept so listings
//! started on it finish); the rest by the current `SellWindow` workflow (re-record them with
//! `SELLWINDOW_RECORD_HISTORIES=1 cargo test -p sellwindow-starter --test e2e`).

use sellwindow_workflows::{ListingWorkflow, SellWindowWorkflow};
use temporalio_client::WorkflowHistory;
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};

#[tokio::test]
async fn recorded_histories_replay_against_the_current_code() {
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
    for file in files {
        let replayer = WorkflowReplayer::new(
            WorkflowReplayerOptions::new()
                .register_workflow::<SellWindowWorkflow>()
                .unwrap()
                .register_workflow::<ListingWorkflow>()
                .unwrap()
                .build(),
        )
        .unwrap();
        let history = WorkflowHistory::from_json(&read(&file)).unwrap();
        replayer
            .replay_workflow(history)
            .await
            .unwrap_or_else(|e| panic!("{} no longer replays: {e:?}", file.display()));
    }
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

#[test]
fn recorded_histories_cover_both_sides_of_every_patch() {
    use sellwindow_workflows::legacy::patches::PATCHES;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/histories");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .expect("histories folder")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for patch in PATCHES {
        for prefix in patch.old_path.iter().chain([&patch.new_path]) {
            assert!(
                names.iter().any(|n| n.starts_with(prefix)),
                "patch {} names histories {prefix}* that are not recorded",
                patch.id
            );
        }
    }
    let mut ids: Vec<&str> = PATCHES.iter().map(|p| p.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), PATCHES.len(), "a patch id is declared twice");
}
