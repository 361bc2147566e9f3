//! Opening the store.

use sellwindow_store::Store;

/// The worker and the API open the same new database file at once when the system starts.
#[tokio::test]
async fn processes_opening_a_new_sqlite_file_at_once_all_get_the_schema() {
    for round in 0..10 {
        let dir = std::env::temp_dir().join(format!(
            "sellwindow-store-test-{}-{round}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let url = format!("sqlite://{}?mode=rwc", dir.join("sellwindow.db").display());
        let opened = futures::future::join_all((0..4).map(|_| Store::connect(&url))).await;
        for store in opened {
            let store = store.unwrap_or_else(|e| panic!("round {round}: {e}"));
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM products")
                .fetch_one(store.pool())
                .await
                .unwrap();
            assert_eq!(n, 0);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
