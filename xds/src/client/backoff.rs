//! Reconnect delays: start, double, cap.

use std::time::Duration;

pub(super) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(super) fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    pub(super) fn next(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    pub(super) fn reset_and_next(&mut self) -> Duration {
        self.next = self.initial;
        self.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(50));
        let got: Vec<u128> = (0..5).map(|_| b.next().as_millis()).collect();
        assert_eq!(got, vec![10, 20, 40, 50, 50]);
        assert_eq!(b.reset_and_next().as_millis(), 10);
        assert_eq!(b.next().as_millis(), 20);
    }
}
