//! Validity periods as ISO 8601 durations (`P6M`, `P14D`, `PT24H`) with calendar
//! arithmetic: months are calendar months, clamped to the month's end. Pure: no I/O.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Days, Duration, Months, Utc};

/// A period of calendar months, days and seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// Calendar months (years count twelve).
    months: u32,
    /// Days (weeks count seven).
    days: u32,
    /// Seconds (hours and minutes included).
    seconds: u32,
}

/// Why a text is not a usable period.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    #[error("not an ISO 8601 duration such as P6M, P14D or PT24H")]
    Syntax,
    #[error("the period is zero")]
    Zero,
    #[error("fractions of a second are not supported")]
    Fraction,
}

impl Period {
    /// Parses an ISO 8601 duration.
    pub fn parse(text: &str) -> Result<Period, PeriodError> {
        let parsed = iso8601::duration(text).map_err(|_| PeriodError::Syntax)?;
        let period = match parsed {
            iso8601::Duration::Weeks(w) => Period {
                months: 0,
                days: w * 7,
                seconds: 0,
            },
            iso8601::Duration::YMDHMS {
                year,
                month,
                day,
                hour,
                minute,
                second,
                millisecond,
            } => {
                if millisecond != 0 {
                    return Err(PeriodError::Fraction);
                }
                Period {
                    months: year * 12 + month,
                    days: day,
                    seconds: hour * 3600 + minute * 60 + second,
                }
            }
        };
        if period
            == (Period {
                months: 0,
                days: 0,
                seconds: 0,
            })
        {
            return Err(PeriodError::Zero);
        }
        Ok(period)
    }

    /// `t` plus this period: months first (clamped to the end of the month), then
    /// days, then seconds.
    pub fn add_to(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let t = t
            .checked_add_months(Months::new(self.months))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let t = t
            .checked_add_days(Days::new(self.days.into()))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        t + Duration::seconds(self.seconds.into())
    }

    /// `t` minus this period, the same way round.
    pub fn sub_from(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let t = t
            .checked_sub_months(Months::new(self.months))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let t = t
            .checked_sub_days(Days::new(self.days.into()))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        t - Duration::seconds(self.seconds.into())
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("P")?;
        if self.months > 0 {
            write!(f, "{}M", self.months)?;
        }
        if self.days > 0 {
            write!(f, "{}D", self.days)?;
        }
        if self.seconds > 0 {
            write!(f, "T{}S", self.seconds)?;
        }
        Ok(())
    }
}

impl FromStr for Period {
    type Err = PeriodError;
    fn from_str(text: &str) -> Result<Period, PeriodError> {
        Period::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn six_months_from_the_end_of_august_is_the_end_of_february() {
        let p = Period::parse("P6M").unwrap();
        assert_eq!(
            p.add_to(at("2026-08-31T10:00:00Z")),
            at("2027-02-28T10:00:00Z")
        );
        assert_eq!(
            Period::parse("P1M")
                .unwrap()
                .add_to(at("2027-01-31T00:00:00Z")),
            at("2027-02-28T00:00:00Z")
        );
    }

    #[test]
    fn days_hours_and_weeks_add_exactly() {
        let t = at("2026-11-22T10:00:00Z");
        assert_eq!(
            Period::parse("P14D").unwrap().add_to(t),
            at("2026-12-06T10:00:00Z")
        );
        assert_eq!(
            Period::parse("PT24H").unwrap().add_to(t),
            at("2026-11-23T10:00:00Z")
        );
        assert_eq!(
            Period::parse("P1W").unwrap().add_to(t),
            at("2026-11-29T10:00:00Z")
        );
        assert_eq!(
            Period::parse("P60D").unwrap().add_to(t),
            at("2027-01-21T10:00:00Z")
        );
        assert_eq!(
            Period::parse("P3M").unwrap().add_to(t),
            at("2027-02-22T10:00:00Z")
        );
    }

    #[test]
    fn a_reminder_is_the_period_before_the_deadline() {
        assert_eq!(
            Period::parse("P14D")
                .unwrap()
                .sub_from(at("2027-05-22T10:00:00Z")),
            at("2027-05-08T10:00:00Z")
        );
    }

    #[test]
    fn invalid_or_zero_periods_are_refused() {
        for bad in ["6M", "P", "", "PT", "P0D", "six months"] {
            assert!(Period::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_period_prints_back_as_iso_8601() {
        for text in ["P6M", "P14D", "PT86400S"] {
            assert_eq!(Period::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(Period::parse("P1Y").unwrap().to_string(), "P12M");
    }
}
