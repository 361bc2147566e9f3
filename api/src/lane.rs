//! The reserve transactions' own thread. A reserve transaction holds the quota rows' locks
//! for a handful of round trips to the database, and every reservation of the process waits
//! for it; on the API's shared runtime, each of its wake-ups queued behind the gRPC work of
//! hundreds of customers (the answers of the batch before and the requests of the next), and
//! the locks were held that much longer. Here the transactions run on a runtime of their own,
//! on a pool of their own (`Store::reopen`), so their I/O waits on nothing but the database.
//! Measured with `bench reserve`: the time under the locks fell by about a fifth at 512
//! customers, and 64 customers (more, smaller transactions) reserved about 30% more a second.

use sellwindow_domain::UnixMillis;
use sellwindow_store::reserve::{ReserveContext, ReserveRequest, Reserved};
use sellwindow_store::{Store, StoreError, StoreResult};
use tokio::sync::{mpsc, oneshot};

type Job = (
    Vec<ReserveRequest>,
    UnixMillis,
    oneshot::Sender<StoreResult<Reserved>>,
);

/// A handle on the thread; the thread ends, after its transactions in flight, when the last
/// handle is dropped.
#[derive(Clone)]
pub struct Lane {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Lane {
    pub fn start(store: &Store, cx: ReserveContext) -> std::io::Result<Self> {
        let (jobs, rx) = mpsc::unbounded_channel::<Job>();
        let store = store.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("reserve".into())
            .spawn(move || runtime.block_on(serve(store, cx, rx)))?;
        Ok(Self { jobs })
    }

    /// Runs one reserve transaction on the lane.
    pub async fn reserve(
        &self,
        batch: Vec<ReserveRequest>,
        at: UnixMillis,
    ) -> StoreResult<Reserved> {
        let gone = || StoreError::Inconsistent("the reserve thread has stopped".into());
        let (done, answer) = oneshot::channel();
        self.jobs.send((batch, at, done)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn serve(store: Store, cx: ReserveContext, mut rx: mpsc::UnboundedReceiver<Job>) {
    // The pool is opened here, so its connections belong to this runtime.
    let store = match store.reopen() {
        Ok(own) => own,
        Err(e) => {
            tracing::warn!(error = %e, "the reserve thread shares the API's pool");
            store
        }
    };
    let mut running = tokio::task::JoinSet::new();
    while let Some((batch, at, done)) = rx.recv().await {
        let (store, cx) = (store.clone(), cx.clone());
        running.spawn(async move {
            let _ = done.send(store.reserve(&cx, &batch, at).await);
        });
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}
