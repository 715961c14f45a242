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

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar; Howard Hinnant's `civil_from_days`.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// An instant broken down in UTC (proleptic Gregorian calendar).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: i64,
    pub minute: i64,
    pub second: i64,
    pub micros: i64,
}

impl Timestamp {
    /// This instant's UTC calendar fields: the one place every human or
    /// partition time format starts from.
    pub fn utc(self) -> Utc {
        let secs = self.secs_floor();
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let r = secs.rem_euclid(86_400);
        Utc {
            year,
            month,
            day,
            hour: r / 3600,
            minute: (r / 60) % 60,
            second: r % 60,
            micros: self.0.rem_euclid(Self::MICROS_PER_SEC),
        }
    }

    /// The UTC date (`YYYY-MM-DD`) and hour (`HH`) of this instant, as a
    /// Hive layout partitions by.
    pub fn utc_date_hour(self) -> (String, String) {
        let u = self.utc();
        (
            format!("{:04}-{:02}-{:02}", u.year, u.month, u.day),
            format!("{:02}", u.hour),
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
