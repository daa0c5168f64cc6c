//! What an accept loop does when `accept` fails. Running out of descriptors or memory (EMFILE,
//! ENFILE, ENOBUFS, ENOMEM) persists until connections close: retrying at once spins a core and
//! floods the log (millions of lines in seconds, reachable by anyone who holds connections open),
//! so the loop sleeps, doubling from 10 ms up to 1 s, and logs at most once a second with how many
//! failures it did not log. A failure of one connection (ECONNABORTED, a reset before accept) is
//! retried at once. Any success resets the back-off. [`AcceptBackoff::failed`] decides (pure, given
//! the time); the loop sleeps.

use std::io;
use std::time::{Duration, Instant};

const FIRST: Duration = Duration::from_millis(10);
const MAX: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(1);

/// What to do about one failed accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptFailure {
    /// Sleep this long before accepting again.
    pub pause: Option<Duration>,
    /// Log it (with `suppressed` earlier failures that were not logged); `false`: count it only.
    pub log: bool,
    pub suppressed: u64,
}

/// Back-off state of one accept loop.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    next_pause: Option<Duration>,
    last_log: Option<Instant>,
    suppressed: u64,
}

/// Failures that last until resources are released.
fn exhausted(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    ) || e.kind() == io::ErrorKind::OutOfMemory
}

impl AcceptBackoff {
    /// A connection was accepted.
    pub fn succeeded(&mut self) {
        self.next_pause = None;
    }

    /// `accept` failed with `e` at `now`.
    pub fn failed(&mut self, e: &io::Error, now: Instant) -> AcceptFailure {
        let pause = exhausted(e).then(|| {
            let pause = self.next_pause.unwrap_or(FIRST);
            self.next_pause = Some((pause * 2).min(MAX));
            pause
        });
        let log = self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= LOG_EVERY);
        let suppressed = if log {
            self.last_log = Some(now);
            std::mem::take(&mut self.suppressed)
        } else {
            self.suppressed += 1;
            0
        };
        AcceptFailure {
            pause,
            log,
            suppressed,
        }
    }

    /// Logs (if due) and sleeps (if needed) after `accept` failed with `e`; `what` names the listener.
    pub async fn after_failure(&mut self, what: &str, e: &io::Error) {
        let f = self.failed(e, Instant::now());
        if f.log {
            tracing::warn!(listener = what, error = %e, suppressed = f.suppressed, pause = ?f.pause, "accept failed");
        }
        if let Some(p) = f.pause {
            tokio::time::sleep(p).await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn emfile() -> io::Error {
        io::Error::from_raw_os_error(libc::EMFILE)
    }

    #[test]
    fn exhaustion_backs_off_doubling_to_a_second_and_logs_once_a_second() {
        let mut b = AcceptBackoff::default();
        let t0 = Instant::now();
        let pauses: Vec<_> = (0..9)
            .map(|i| b.failed(&emfile(), t0 + Duration::from_millis(i)))
            .collect();
        let ms: Vec<u128> = pauses
            .iter()
            .map(|f| f.pause.unwrap().as_millis())
            .collect();
        assert_eq!(ms, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        assert_eq!(pauses.iter().filter(|f| f.log).count(), 1);
        let later = b.failed(&emfile(), t0 + Duration::from_secs(2));
        assert_eq!((later.log, later.suppressed), (true, 8));
        b.succeeded();
        assert_eq!(
            b.failed(&emfile(), t0 + Duration::from_secs(4)).pause,
            Some(FIRST)
        );
    }

    #[test]
    fn a_failure_of_one_connection_is_retried_at_once() {
        let mut b = AcceptBackoff::default();
        let aborted = io::Error::from_raw_os_error(libc::ECONNABORTED);
        assert_eq!(b.failed(&aborted, Instant::now()).pause, None);
        assert!(
            b.failed(&io::Error::from_raw_os_error(libc::ENFILE), Instant::now())
                .pause
                .is_some()
        );
    }
}
