//! Admission: at most `limit` gRPC calls are served at once by this process; a call past that
//! is answered UNAVAILABLE at once (with a retry hint) instead of queueing, so a flood of
//! customers costs the API bounded memory and the callers a quick, honest answer.

use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::Semaphore;
use tonic::codegen::http;
use tower::{Layer, Service};

#[derive(Clone)]
pub struct Admission {
    permits: Arc<Semaphore>,
}

impl Admission {
    pub fn new(limit: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit)),
        }
    }
}

impl<S> Layer<S> for Admission {
    type Service = Admitted<S>;
    fn layer(&self, inner: S) -> Admitted<S> {
        Admitted {
            inner,
            permits: self.permits.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Admitted<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

type BoxFuture<T, E> = std::pin::Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, R> Service<http::Request<B>> for Admitted<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    R: Default + Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            let busy = crate::error::with_pushback(tonic::Status::unavailable(
                "the API is at capacity; retry shortly (with the same idempotency key)",
            ));
            return Box::pin(async move { Ok(busy.into_http()) });
        };
        // The clone serves this call; the ready one stays for the next (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let answer = inner.call(request).await;
            drop(permit);
            answer
        })
    }
}
