//! Time as the decision path sees it. Injected, so tests move a clock
//! instead of sleeping.

use std::fmt::Debug;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time.
pub trait Clock: Debug + Send + Sync {
    /// Now, as seconds since the Unix epoch.
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        unix_seconds(SystemTime::now())
    }
}

/// A clock that moves only when told to (tests, replays).
#[derive(Debug)]
pub struct ManualClock(Mutex<i64>);

impl ManualClock {
    /// A clock standing at `now` (Unix seconds).
    pub fn new(now: i64) -> Self {
        Self(Mutex::new(now))
    }

    /// Moves the clock forward (or back, with a negative amount).
    pub fn advance(&self, seconds: i64) {
        if let Ok(mut now) = self.0.lock() {
            *now += seconds;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.lock().map_or(i64::MAX, |now| *now)
    }
}

/// Seconds since the Unix epoch; times before it count as 0.
pub fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
        .try_into()
        .unwrap_or(i64::MAX)
}
