//! How long a request keeps the broker busy, for `request_percentage` quotas (Kafka's request
//! thread time): the time its handler spends being polled, plus the time of the blocking work
//! it hands to the blocking pool ([`super::handlers::blocking`]). Time spent waiting (a
//! fetch's `max_wait_ms`, acks=all replication, a rebalance) does not count, as Kafka's
//! purgatory time does not.
//!
//! It also keeps how long the request's blocking work waited for a thread of the blocking pool:
//! Gregor's request queue (Kafka's RequestQueueTimeMs), exported as
//! `gregor_request_queue_seconds`.

use std::cell::Cell;
use std::future::Future;
use std::time::{Duration, Instant};

tokio::task_local! {
    /// The blocking work of the request being timed.
    static BLOCKING: Cell<Duration>;
    /// How long that work waited for a blocking-pool thread, if it had any.
    static QUEUED: Cell<Option<Duration>>;
}

/// What a request cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTime {
    /// The time it kept the broker busy: polled, plus its blocking work.
    pub busy: Duration,
    /// The time its blocking work waited for a thread; `None` when it had none.
    pub queued: Option<Duration>,
}

/// Runs `fut` to completion; its output and what it cost.
pub async fn timed<F: Future>(fut: F) -> (F::Output, RequestTime) {
    let mut polled = Duration::ZERO;
    let mut fut = std::pin::pin!(fut);
    let scoped = async {
        let out = std::future::poll_fn(|cx| {
            let start = Instant::now();
            let poll = fut.as_mut().poll(cx);
            polled += start.elapsed();
            poll
        })
        .await;
        (out, BLOCKING.with(Cell::get), QUEUED.with(Cell::get))
    };
    let (out, blocking, queued) = BLOCKING
        .scope(
            Cell::new(Duration::ZERO),
            QUEUED.scope(Cell::new(None), scoped),
        )
        .await;
    let busy = polled + blocking;
    (out, RequestTime { busy, queued })
}

/// Adds `spent` on the blocking pool, after waiting `queued` for a thread, to the request
/// being timed, if any.
pub fn add_blocking(spent: Duration, queued: Duration) {
    let _ = BLOCKING.try_with(|b| b.set(b.get() + spent));
    let _ = QUEUED.try_with(|q| q.set(Some(q.get().unwrap_or_default() + queued)));
}

/// Takes `spent` back from the blocking work of the request being timed: work done for other
/// clients' sake (a long-polling fetch re-reading its partitions at each append by anyone)
/// is not the waiting client's, as Kafka does not charge a delayed fetch's wake-ups to it.
pub fn refund_blocking(spent: Duration) {
    let _ = BLOCKING.try_with(|b| b.set(b.get().saturating_sub(spent)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn busy_time_counts_polling_and_blocking_work_but_not_waiting() {
        let ((), busy) = timed(async {
            // Waiting: not counted.
            tokio::time::sleep(Duration::from_secs(1)).await;
            // Blocking work, as `handlers::blocking` reports it.
            let spent = tokio::task::spawn_blocking(|| {
                let start = Instant::now();
                std::thread::sleep(Duration::from_millis(40));
                start.elapsed()
            })
            .await
            .expect("joins");
            add_blocking(spent, Duration::from_millis(3));
            // Busy on the reactor: counted.
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(30) {
                std::hint::spin_loop();
            }
        })
        .await;
        assert_eq!(busy.queued, Some(Duration::from_millis(3)));
        let busy = busy.busy;
        assert!(busy >= Duration::from_millis(70), "{busy:?}");
        let ((), refunded) = timed(async {
            add_blocking(Duration::from_millis(500), Duration::ZERO);
            refund_blocking(Duration::from_millis(400));
            refund_blocking(Duration::from_millis(400));
        })
        .await;
        assert_eq!(refunded.queued, Some(Duration::ZERO));
        let refunded = refunded.busy;
        assert!(refunded < Duration::from_millis(50), "{refunded:?}");
        assert!(busy < Duration::from_millis(800), "{busy:?}");
        // Outside a timed request, blocking time goes nowhere.
        add_blocking(Duration::from_secs(1), Duration::ZERO);
    }
}
