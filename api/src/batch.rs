//! Batching of concurrent requests: callers queue their requests; a runner takes everything
//! queued (up to `max_batch`) and serves the batch with one call, with at most `in_flight`
//! batches running. Under load a request becomes a row of one transaction (the reserve group
//! commit) or one signal (pokes) instead of one of its own; alone, it runs at once.

use crate::error::ApiError;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{Semaphore, mpsc, oneshot};

type Reply<R> = oneshot::Sender<Result<R, ApiError>>;

pub struct Batcher<Q, R> {
    tx: mpsc::UnboundedSender<(Q, Reply<R>)>,
    /// Requests queued and not yet taken into a batch; past `max_waiting` a call is refused
    /// at once instead of queueing without bound.
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
}

impl<Q: Send + 'static, R: Send + 'static> Batcher<Q, R> {
    /// Starts the runner on the current Tokio runtime. `serve` answers a batch in order, one
    /// answer per request; an error is given to every request of the batch.
    pub fn spawn<F, Fut>(max_batch: usize, in_flight: usize, serve: F) -> Self
    where
        F: Fn(Vec<Q>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<R>, ApiError>> + Send + 'static,
    {
        Self::spawn_bounded(max_batch, in_flight, usize::MAX, serve)
    }

    /// As [`Self::spawn`], refusing calls while `max_waiting` requests wait already.
    pub fn spawn_bounded<F, Fut>(
        max_batch: usize,
        in_flight: usize,
        max_waiting: usize,
        serve: F,
    ) -> Self
    where
        F: Fn(Vec<Q>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<R>, ApiError>> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Q, Reply<R>)>();
        let serve = Arc::new(serve);
        let waiting = Arc::new(AtomicUsize::new(0));
        let taken = waiting.clone();
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(in_flight));
            loop {
                let permit = slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("semaphore never closes");
                let Some(first) = rx.recv().await else { break };
                let mut batch = vec![first];
                while batch.len() < max_batch {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                taken.fetch_sub(batch.len(), Ordering::SeqCst);
                let serve = serve.clone();
                tokio::spawn(async move {
                    let (requests, replies): (Vec<Q>, Vec<Reply<R>>) = batch.into_iter().unzip();
                    let expected = requests.len();
                    let answers = serve(requests).await;
                    drop(permit);
                    match answers {
                        Ok(answers) if answers.len() == expected => {
                            for (reply, a) in replies.into_iter().zip(answers) {
                                let _ = reply.send(Ok(a));
                            }
                        }
                        Ok(answers) => {
                            for reply in replies {
                                let _ = reply.send(Err(ApiError::Internal(format!(
                                    "a batch of {expected} got {} answers",
                                    answers.len()
                                ))));
                            }
                        }
                        Err(e) => {
                            for reply in replies {
                                let _ = reply.send(Err(e.clone()));
                            }
                        }
                    }
                });
            }
        });
        Self {
            tx,
            waiting,
            max_waiting,
        }
    }

    /// Whether a call now would be refused for the queue's length (a cheap early answer for
    /// callers about to do work before they call).
    pub fn is_full(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) >= self.max_waiting
    }

    /// Queues one request and waits for its own answer.
    pub async fn call(&self, request: Q) -> Result<R, ApiError> {
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::Overloaded(format!(
                "{} requests are waiting here already; retry shortly",
                self.max_waiting
            )));
        }
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((request, tx))
            .map_err(|_| ApiError::Unavailable("request batch runner stopped".into()))?;
        rx.await
            .map_err(|_| ApiError::Unavailable("request batch runner stopped".into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_requests_share_batches_and_each_gets_its_own_answer() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let g = Arc::new(Batcher::spawn(64, 1, move |qs: Vec<u32>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Ok(qs.into_iter().map(|q| q * 2).collect())
            }
        }));
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let g = g.clone();
            tasks.push(tokio::spawn(async move { (i, g.call(i).await.unwrap()) }));
        }
        for t in tasks {
            let (i, doubled) = t.await.unwrap();
            assert_eq!(doubled, i * 2);
        }
        let n = calls.load(Ordering::SeqCst);
        assert!((4..200).contains(&n), "200 requests in {n} batches");
    }

    #[tokio::test]
    async fn a_failed_batch_fails_each_of_its_requests() {
        let g = Batcher::spawn(8, 2, |_qs: Vec<u32>| async {
            Err::<Vec<u32>, _>(ApiError::Unavailable("database down".into()))
        });
        let e = g.call(1).await.unwrap_err();
        assert!(matches!(e, ApiError::Unavailable(m) if m == "database down"));
    }

    #[tokio::test]
    async fn past_its_bound_a_call_is_refused_at_once_and_the_waiting_still_answered() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let opened = gate.clone();
        let g = Arc::new(Batcher::spawn_bounded(1, 1, 2, move |qs: Vec<u32>| {
            let gate = opened.clone();
            async move {
                let _pass = gate.acquire().await.unwrap();
                Ok(qs)
            }
        }));
        // One request is being served (held at the gate); two wait behind it.
        let mut held = Vec::new();
        for i in 0..3u32 {
            let g = g.clone();
            held.push(tokio::spawn(async move { g.call(i).await }));
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(g.is_full());
        let refused = g.call(9).await.unwrap_err();
        assert!(matches!(refused, ApiError::Overloaded(_)), "{refused:?}");
        gate.add_permits(10);
        for (i, t) in held.into_iter().enumerate() {
            assert_eq!(t.await.unwrap().unwrap(), i as u32);
        }
        assert!(!g.is_full());
        assert_eq!(g.call(4).await.unwrap(), 4);
    }
}
