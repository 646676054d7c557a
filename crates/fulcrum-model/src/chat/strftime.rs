//! `strftime_now(format)` for templates that print today's date (Llama 3's
//! "Today Date: 26 Jul 2024"). UTC, C locale, the common conversions only:
//! a date crate with time zones would be a large dependency for one line of
//! a system prompt.

use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// A UTC calendar time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DateTime {
    year: i64,
    /// 1..=12
    month: u32,
    /// 1..=31
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// 0 = Monday
    weekday: u32,
    /// 1..=366
    day_of_year: u32,
}

pub(crate) fn format_now_utc(format: &str) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    format_datetime(format, from_unix(secs))
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Seconds since 1970-01-01 UTC → calendar fields, by walking years and
/// months from the epoch (run once per render; clarity over speed).
fn from_unix(secs: i64) -> DateTime {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    // 1970-01-01 was a Thursday (weekday 3 with Monday = 0).
    let weekday = (days + 3).rem_euclid(7) as u32;
    let mut year = 1970;
    let mut d = days;
    loop {
        let len = if is_leap(year) { 366 } else { 365 };
        if d < 0 {
            year -= 1;
            d += if is_leap(year) { 366 } else { 365 };
        } else if d >= len {
            d -= len;
            year += 1;
        } else {
            break;
        }
    }
    let day_of_year = d as u32 + 1;
    let month_lens = [
        31,
        if is_leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let mut month = 1;
    let mut d = d as u32;
    for len in month_lens {
        if d < len {
            break;
        }
        d -= len;
        month += 1;
    }
    DateTime {
        year,
        month,
        day: d + 1,
        hour: rem / 3600,
        minute: rem / 60 % 60,
        second: rem % 60,
        weekday,
        day_of_year,
    }
}

/// Supports `%Y %y %m %d %e %H %I %M %S %p %b %B %h %a %A %j %%`; anything
/// else is copied through unchanged.
fn format_datetime(format: &str, t: DateTime) -> String {
    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let month = MONTHS[(t.month as usize - 1) % 12];
        let weekday = WEEKDAYS[t.weekday as usize % 7];
        match chars.next() {
            Some('Y') => out += &t.year.to_string(),
            Some('y') => out += &format!("{:02}", t.year.rem_euclid(100)),
            Some('m') => out += &format!("{:02}", t.month),
            Some('d') => out += &format!("{:02}", t.day),
            Some('e') => out += &format!("{:2}", t.day),
            Some('H') => out += &format!("{:02}", t.hour),
            Some('I') => out += &format!("{:02}", (t.hour + 11) % 12 + 1),
            Some('M') => out += &format!("{:02}", t.minute),
            Some('S') => out += &format!("{:02}", t.second),
            Some('p') => out += if t.hour < 12 { "AM" } else { "PM" },
            Some('b' | 'h') => out += &month[..3],
            Some('B') => out += month,
            Some('a') => out += &weekday[..3],
            Some('A') => out += weekday,
            Some('j') => out += &format!("{:03}", t.day_of_year),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        // 2024-07-26 13:05:09 UTC, a Friday.
        let t = from_unix(1_721_999_109);
        assert_eq!(
            format_datetime("%d %b %Y %H:%M:%S %a %j", t),
            "26 Jul 2024 13:05:09 Fri 208"
        );
        assert_eq!(
            format_datetime("%B %e, %y %I%p %%", t),
            "July 26, 24 01PM %"
        );
        assert_eq!(
            format_datetime("%Y-%m-%d %A", from_unix(0)),
            "1970-01-01 Thursday"
        );
        assert_eq!(
            format_datetime("%Y-%m-%d", from_unix(951_782_400)),
            "2000-02-29"
        );
        assert_eq!(
            format_datetime("%Y-%m-%d", from_unix(-86_400)),
            "1969-12-31"
        );
        assert_eq!(format_datetime("%q%", t), "%q%");
    }
}
