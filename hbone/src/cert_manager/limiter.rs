//! At most N CSRs in flight, handed out highest priority first (FIFO within a priority).

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::Priority;

struct Waiter {
    priority: Priority,
    seq: u64,
    tx: oneshot::Sender<Permit>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

#[derive(Default)]
struct State {
    in_flight: usize,
    seq: u64,
    waiters: BinaryHeap<Waiter>,
}

/// The limiter; clone shares it.
#[derive(Clone)]
pub(crate) struct Limiter {
    max: usize,
    state: Arc<Mutex<State>>,
}

/// One in-flight slot; dropping it hands the slot to the best waiter.
pub(crate) struct Permit {
    limiter: Limiter,
}

impl Limiter {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            state: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) async fn acquire(&self, priority: Priority) -> Permit {
        let rx = {
            let mut state = self.lock();
            if state.in_flight < self.max && state.waiters.is_empty() {
                state.in_flight += 1;
                return Permit {
                    limiter: self.clone(),
                };
            }
            let (tx, rx) = oneshot::channel();
            state.seq += 1;
            let seq = state.seq;
            state.waiters.push(Waiter { priority, seq, tx });
            rx
        };
        match rx.await {
            Ok(permit) => permit,
            // The limiter lives as long as any permit; a dropped sender means it was torn down.
            Err(_) => Permit {
                limiter: self.clone(),
            },
        }
    }

    fn release(&self) {
        loop {
            let waiter = {
                let mut state = self.lock();
                match state.waiters.pop() {
                    Some(w) => w,
                    None => {
                        state.in_flight = state.in_flight.saturating_sub(1);
                        return;
                    }
                }
            };
            match waiter.tx.send(Permit {
                limiter: self.clone(),
            }) {
                Ok(()) => return,
                // The waiter gave up: don't run Drop (that would release twice); try the next.
                Err(permit) => std::mem::forget(permit),
            }
        }
    }

    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.lock().in_flight
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn higher_priority_waiters_go_first() {
        let limiter = Limiter::new(1);
        let held = limiter.acquire(Priority::Background).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, p) in [
            Priority::Background,
            Priority::Warmup,
            Priority::Blocking,
            Priority::Warmup,
        ]
        .into_iter()
        .enumerate()
        {
            let (limiter, order) = (limiter.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = limiter.acquire(p).await;
                order.lock().unwrap_or_else(|e| e.into_inner()).push(i);
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }));
            tokio::task::yield_now().await;
        }
        drop(held);
        for t in tasks {
            let _ = t.await;
        }
        assert_eq!(
            *order.lock().unwrap_or_else(|e| e.into_inner()),
            vec![2, 1, 3, 0]
        );
        assert_eq!(limiter.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn abandoned_waiter_does_not_leak_a_slot() {
        let limiter = Limiter::new(1);
        let held = limiter.acquire(Priority::Blocking).await;
        let waiting = tokio::spawn({
            let limiter = limiter.clone();
            async move { drop(limiter.acquire(Priority::Blocking).await) }
        });
        tokio::task::yield_now().await;
        waiting.abort();
        let _ = waiting.await;
        drop(held);
        assert_eq!(limiter.in_flight(), 0);
        drop(limiter.acquire(Priority::Warmup).await);
        assert_eq!(limiter.in_flight(), 0);
    }
}
