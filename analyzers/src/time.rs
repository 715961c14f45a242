//! Packet time. Analyzers never read the wall clock: every timestamp comes
//! from the capture, so replays are deterministic and tests feed time in.

use std::fmt;

/// A point in time as microseconds since the Unix epoch (UTC), taken from the
/// capture's per-packet timestamp.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const MICROS_PER_SEC: i64 = 1_000_000;

    /// Builds a timestamp from seconds and microseconds as found in a pcap
    /// record header (`tv_sec`, `tv_usec`).
    pub fn from_secs_micros(secs: i64, micros: i64) -> Self {
        Timestamp(
            secs.saturating_mul(Self::MICROS_PER_SEC)
                .saturating_add(micros),
        )
    }

    pub fn from_secs(secs: i64) -> Self {
        Timestamp(secs.saturating_mul(Self::MICROS_PER_SEC))
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    /// Whole seconds, rounded towards negative infinity.
    pub fn secs_floor(self) -> i64 {
        self.0.div_euclid(Self::MICROS_PER_SEC)
    }

    /// Microseconds elapsed since `earlier`; negative if `earlier` is later.
    pub fn micros_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    pub fn add_secs(self, secs: u64) -> Timestamp {
        let secs = i64::try_from(secs).unwrap_or(i64::MAX);
        Timestamp(
            self.0
                .saturating_add(secs.saturating_mul(Self::MICROS_PER_SEC)),
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:06}",
            self.secs_floor(),
            self.0.rem_euclid(Self::MICROS_PER_SEC)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_of_negative_times() {
        assert_eq!(Timestamp(-1).secs_floor(), -1);
        assert_eq!(Timestamp(1_500_000).secs_floor(), 1);
        assert_eq!(Timestamp::from_secs_micros(2, 5).to_string(), "2.000005");
    }

    #[test]
    fn saturates_instead_of_overflowing() {
        assert_eq!(Timestamp(i64::MAX).add_secs(u64::MAX), Timestamp(i64::MAX));
    }
}
