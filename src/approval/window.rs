//! Change windows and freezes, pure: a small cron parser (5 fields, or 6 with
//! seconds first) evaluated in a time zone with `jiff`, and the question every
//! approved plan asks before it runs: is it open now, and if not, when next?

use jiff::{SignedDuration, Timestamp, tz::TimeZone};

use crate::api::{ChangeWindow, Freeze, PolicyWindows};

/// One cron field: the allowed values, as a bit set.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Field {
    bits: u64,
    any: bool,
}

impl Field {
    fn parse(text: &str, min: u32, max: u32) -> Result<Self, String> {
        let mut bits = 0u64;
        for part in text.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((r, s)) => (
                    r,
                    s.parse::<u32>()
                        .ok()
                        .filter(|s| *s > 0)
                        .ok_or_else(|| format!("bad step in {part:?}"))?,
                ),
                None => (part, 1),
            };
            let num = |s: &str| {
                s.parse::<u32>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| format!("{s:?} is not a number from {min} to {max}"))
            };
            let (lo, hi) = if range == "*" {
                (min, max)
            } else if let Some((a, b)) = range.split_once('-') {
                (num(a)?, num(b)?)
            } else {
                let n = num(range)?;
                (n, if part.contains('/') { max } else { n })
            };
            if lo > hi {
                return Err(format!("empty range {range:?}"));
            }
            let mut v = lo;
            while v <= hi {
                bits |= 1 << v;
                v += step;
            }
        }
        Ok(Self {
            bits,
            any: text == "*",
        })
    }

    fn has(&self, v: u32) -> bool {
        self.bits & (1 << v) != 0
    }
}

/// A parsed cron schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    seconds: Field,
    minutes: Field,
    hours: Field,
    days: Field,
    months: Field,
    weekdays: Field,
}

impl Schedule {
    /// Parses `min hour dom month dow` or `sec min hour dom month dow`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let f: Vec<&str> = text.split_whitespace().collect();
        let f: Vec<&str> = match f.len() {
            5 => std::iter::once("0").chain(f).collect(),
            6 => f,
            n => return Err(format!("a schedule has 5 or 6 fields, not {n}: {text:?}")),
        };
        let mut weekdays = Field::parse(f[5], 0, 7)?;
        if weekdays.has(7) {
            weekdays.bits |= 1;
        }
        Ok(Self {
            seconds: Field::parse(f[0], 0, 59)?,
            minutes: Field::parse(f[1], 0, 59)?,
            hours: Field::parse(f[2], 0, 23)?,
            days: Field::parse(f[3], 1, 31)?,
            months: Field::parse(f[4], 1, 12)?,
            weekdays,
        })
    }

    /// Whether the schedule names the (whole) minute of `t` in `tz`, ignoring seconds.
    fn minute_matches(&self, t: Timestamp, tz: &TimeZone) -> bool {
        let z = t.to_zoned(tz.clone());
        let dow = z.weekday().to_sunday_zero_offset() as u32;
        // Cron: when both day fields are restricted, either one matching is enough.
        let day = match (self.days.any, self.weekdays.any) {
            (false, false) => self.days.has(z.day() as u32) || self.weekdays.has(dow),
            _ => self.days.has(z.day() as u32) && self.weekdays.has(dow),
        };
        day && self.months.has(z.month() as u32)
            && self.hours.has(z.hour() as u32)
            && self.minutes.has(z.minute() as u32)
    }

    /// Openings in `(from, to]`, in order.
    fn openings(&self, from: Timestamp, to: Timestamp, tz: &TimeZone) -> Vec<Timestamp> {
        let mut out = vec![];
        let start = from.as_second().div_euclid(60) * 60;
        let mut m = start;
        while m <= to.as_second() {
            if let Ok(t) = Timestamp::from_second(m)
                && self.minute_matches(t, tz)
            {
                for s in 0..60 {
                    if self.seconds.has(s)
                        && let Ok(o) = Timestamp::from_second(m + i64::from(s))
                        && o > from
                        && o <= to
                    {
                        out.push(o);
                    }
                }
            }
            m += 60;
        }
        out
    }
}

/// Parses a window's duration: `8h`, `30m`, `1h30m`, `90s`.
pub fn parse_duration(text: &str) -> Result<SignedDuration, String> {
    let mut total = 0i64;
    let mut num = String::new();
    for c in text.chars() {
        match c {
            '0'..='9' => num.push(c),
            'h' | 'm' | 's' if !num.is_empty() => {
                let n: i64 = num.parse().map_err(|_| format!("bad duration {text:?}"))?;
                total += n * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                num.clear();
            }
            _ => return Err(format!("bad duration {text:?} (e.g. 8h, 30m, 1h30m, 90s)")),
        }
    }
    if !num.is_empty() || total <= 0 || total > 168 * 3600 {
        return Err(format!(
            "bad duration {text:?} (more than 0s, at most 168h)"
        ));
    }
    Ok(SignedDuration::from_secs(total))
}

/// A window ready to evaluate.
#[derive(Clone, Debug)]
pub struct Window {
    schedule: Schedule,
    duration: SignedDuration,
    tz: TimeZone,
}

impl Window {
    pub fn parse(w: &ChangeWindow) -> Result<Self, String> {
        let tz_name = w.time_zone.as_deref().unwrap_or("UTC");
        let tz =
            TimeZone::get(tz_name).map_err(|e| format!("unknown time zone {tz_name:?}: {e}"))?;
        Ok(Self {
            schedule: Schedule::parse(&w.schedule)?,
            duration: parse_duration(&w.duration)?,
            tz,
        })
    }

    /// Whether the window is open at `t`: an opening in `(t - duration, t]`.
    pub fn is_open(&self, t: Timestamp) -> bool {
        let from = t - self.duration;
        !self.schedule.openings(from, t, &self.tz).is_empty()
    }

    /// The next openings after `t`, within `horizon`.
    fn next_openings(&self, t: Timestamp, horizon: SignedDuration) -> Vec<Timestamp> {
        self.schedule.openings(t, t + horizon, &self.tz)
    }
}

/// Whether plans may run now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WindowState {
    Open,
    /// Closed; `opens_at` when it next opens (within a week), and why it is closed.
    Closed {
        opens_at: Option<Timestamp>,
        why: String,
    },
}

/// How far ahead the next opening is looked for.
const HORIZON: SignedDuration = SignedDuration::from_hours(24 * 8);

/// Whether the windows (one of each policy's) are open and no freeze holds at `now`;
/// when closed, the first later moment at which that is true. A window that does
/// not parse never opens (fail closed).
pub fn window_state(windows: &[PolicyWindows], freezes: &[Freeze], now: Timestamp) -> WindowState {
    let mut parsed: Vec<(&str, Vec<Window>)> = vec![];
    for p in windows {
        let mut ws = vec![];
        for w in &p.windows {
            match Window::parse(w) {
                Ok(w) => ws.push(w),
                Err(e) => {
                    return WindowState::Closed {
                        opens_at: None,
                        why: format!("policy {}: invalid change window: {e}", p.policy),
                    };
                }
            }
        }
        parsed.push((p.policy.as_str(), ws));
    }
    let frozen = |t: Timestamp| freezes.iter().find(|f| f.start.0 <= t && t < f.end.0);
    let closed_window = |t: Timestamp| {
        parsed
            .iter()
            .find(|(_, ws)| !ws.iter().any(|w| w.is_open(t)))
            .map(|(p, _)| *p)
    };
    let why = if let Some(f) = frozen(now) {
        format!(
            "frozen until {}{}",
            f.end.0,
            f.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        )
    } else if let Some(p) = closed_window(now) {
        format!("outside the change windows of policy {p}")
    } else {
        return WindowState::Open;
    };
    // Candidates for the next opening: every freeze end and window opening ahead.
    let mut candidates: Vec<Timestamp> = freezes
        .iter()
        .map(|f| f.end.0)
        .filter(|t| *t > now && *t <= now + HORIZON)
        .collect();
    for (_, ws) in &parsed {
        for w in ws {
            candidates.extend(w.next_openings(now, HORIZON));
        }
    }
    candidates.sort();
    candidates.dedup();
    let opens_at = candidates
        .into_iter()
        .find(|t| frozen(*t).is_none() && closed_window(*t).is_none());
    WindowState::Closed { opens_at, why }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn windows(schedule: &str, duration: &str, tz: Option<&str>) -> Vec<PolicyWindows> {
        vec![PolicyWindows {
            policy: "p".into(),
            windows: vec![ChangeWindow {
                schedule: schedule.into(),
                duration: duration.into(),
                time_zone: tz.map(String::from),
            }],
        }]
    }

    #[test]
    fn cron_fields_parse_and_refuse_nonsense() {
        assert!(Schedule::parse("0 9 * * 1-5").is_ok());
        assert!(Schedule::parse("*/15 0 9 * * 1,3,5").is_ok());
        for bad in [
            "0 9 * *",
            "60 9 * * *",
            "0 24 * * *",
            "0 9 0 * *",
            "0 9 * 13 *",
            "0 9 * * 8",
            "5-1 * * * *",
            "*/0 * * * *",
            "a * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
        assert!(parse_duration("1h30m").is_ok());
        for bad in ["", "0s", "169h", "1d", "h", "10"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn weekday_window_in_a_time_zone() {
        // Mon-Fri 09:00-17:00 Berlin (UTC+1 in January).
        let w = windows("0 9 * * 1-5", "8h", Some("Europe/Berlin"));
        // Thursday 2026-01-01 10:00 Berlin = 09:00Z: open.
        assert_eq!(
            window_state(&w, &[], ts("2026-01-01T09:00:00Z")),
            WindowState::Open
        );
        // 07:59Z = 08:59 Berlin: closed, opens at 08:00Z.
        let WindowState::Closed { opens_at, why } =
            window_state(&w, &[], ts("2026-01-01T07:59:00Z"))
        else {
            panic!("open")
        };
        assert_eq!(opens_at, Some(ts("2026-01-01T08:00:00Z")));
        assert!(why.contains("policy p"), "{why}");
        // Friday 17:00 Berlin closes until Monday 09:00 Berlin.
        let WindowState::Closed { opens_at, .. } =
            window_state(&w, &[], ts("2026-01-02T16:00:00Z"))
        else {
            panic!("open")
        };
        assert_eq!(opens_at, Some(ts("2026-01-05T08:00:00Z")));
    }

    #[test]
    fn seconds_field_and_unknown_zone_fail_closed() {
        let w = windows("20 0 12 * * *", "30s", None);
        assert!(
            matches!(window_state(&w, &[], ts("2026-01-01T12:00:19Z")), WindowState::Closed { opens_at: Some(t), .. } if t == ts("2026-01-01T12:00:20Z"))
        );
        assert_eq!(
            window_state(&w, &[], ts("2026-01-01T12:00:49Z")),
            WindowState::Open
        );
        assert!(matches!(
            window_state(&w, &[], ts("2026-01-01T12:00:50Z")),
            WindowState::Closed { .. }
        ));
        let bad = windows("0 9 * * *", "1h", Some("Mars/Olympus"));
        assert!(matches!(
            window_state(&bad, &[], ts("2026-01-01T09:30:00Z")),
            WindowState::Closed { opens_at: None, .. }
        ));
    }

    #[test]
    fn freezes_block_and_end() {
        let f = vec![Freeze {
            start: Time(ts("2026-01-01T00:00:00Z")),
            end: Time(ts("2026-01-03T00:00:00Z")),
            reason: Some("year-end".into()),
        }];
        let WindowState::Closed { opens_at, why } =
            window_state(&[], &f, ts("2026-01-02T00:00:00Z"))
        else {
            panic!("open")
        };
        assert_eq!(opens_at, Some(ts("2026-01-03T00:00:00Z")));
        assert!(why.contains("frozen") && why.contains("year-end"), "{why}");
        assert_eq!(
            window_state(&[], &f, ts("2026-01-03T00:00:00Z")),
            WindowState::Open
        );
        // A freeze inside a window: the next opening is the window's, after the freeze.
        let w = windows("0 * * * *", "10m", None);
        let WindowState::Closed { opens_at, .. } = window_state(&w, &f, ts("2026-01-02T23:30:00Z"))
        else {
            panic!("open")
        };
        assert_eq!(opens_at, Some(ts("2026-01-03T00:00:00Z")));
    }
}
