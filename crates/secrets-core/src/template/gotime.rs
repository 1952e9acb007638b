//! Go's `time` package as templates see it: the `Time` value, layouts (`2006-01-02`),
//! parsing and formatting, durations. Shared by the value model (a time prints as Go's
//! `Time.String`) and the date functions.

use chrono::{DateTime, Datelike, NaiveDate, Timelike};

/// A point in time: Unix seconds and nanoseconds, and the zone it is shown in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Time {
    pub secs: i64,
    pub nanos: u32,
    /// Offset east of UTC in seconds; only UTC and fixed zones are supported.
    pub offset: i32,
}

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
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Layout elements, longest first where one is a prefix of another.
const ELEMENTS: &[&str] = &[
    "January",
    "Jan",
    "Monday",
    "Mon",
    "MST",
    "2006",
    "2",
    "_2",
    "__2",
    "002",
    "01",
    "02",
    "03",
    "04",
    "05",
    "06",
    "1",
    "15",
    "3",
    "4",
    "5",
    "PM",
    "pm",
    "Z070000",
    "Z0700",
    "Z07:00:00",
    "Z07:00",
    "Z07",
    "-070000",
    "-0700",
    "-07:00:00",
    "-07:00",
    "-07",
];

/// The next layout element at the start of `s`, as Go's `nextStdChunk` finds them.
fn element(s: &str) -> Option<&'static str> {
    let b = s.as_bytes();
    match b.first()? {
        b'J' if s.starts_with("January") => Some("January"),
        b'J' if s.starts_with("Jan") => Some("Jan"),
        b'M' if s.starts_with("Monday") => Some("Monday"),
        b'M' if s.starts_with("Mon") => Some("Mon"),
        b'M' if s.starts_with("MST") => Some("MST"),
        b'0' if b.len() > 1 && (b'1'..=b'6').contains(&b[1]) => ELEMENTS.iter().find(|e| s.starts_with(**e)).copied(),
        b'0' if s.starts_with("002") => Some("002"),
        b'1' if s.starts_with("15") => Some("15"),
        b'1' => Some("1"),
        b'2' if s.starts_with("2006") => Some("2006"),
        b'2' => Some("2"),
        b'_' if s.starts_with("_2006") => None,
        b'_' if s.starts_with("__2") => Some("__2"),
        b'_' if s.starts_with("_2") => Some("_2"),
        b'3' => Some("3"),
        b'4' => Some("4"),
        b'5' => Some("5"),
        b'P' if s.starts_with("PM") => Some("PM"),
        b'p' if s.starts_with("pm") => Some("pm"),
        b'-' | b'Z' => [
            "Z070000",
            "Z07:00:00",
            "Z0700",
            "Z07:00",
            "Z07",
            "-070000",
            "-07:00:00",
            "-0700",
            "-07:00",
            "-07",
        ]
        .into_iter()
        .find(|e| s.starts_with(*e)),
        _ => None,
    }
}

/// A fractional-second element (`.000`, `,999`) at the start of `s`, if it is one: the
/// digits must not be followed by another digit.
fn fraction(s: &str) -> Option<(usize, bool)> {
    let b = s.as_bytes();
    if b.len() < 2 || !(b[0] == b'.' || b[0] == b',') || !(b[1] == b'0' || b[1] == b'9') {
        return None;
    }
    let d = b[1];
    let n = b[1..].iter().take_while(|c| **c == d).count();
    if b.get(1 + n).is_some_and(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((n, d == b'9'))
}

fn civil(t: &Time) -> chrono::NaiveDateTime {
    DateTime::from_timestamp(t.secs + t.offset as i64, t.nanos)
        .map(|d| d.naive_utc())
        .unwrap_or_default()
}

/// Go's `Time.Format`.
pub(crate) fn format(layout: &str, t: &Time) -> String {
    let dt = civil(t);
    let mut out = String::new();
    let mut rest = layout;
    while !rest.is_empty() {
        if let Some((n, trim)) = fraction(rest)
            && !out.is_empty()
            && out.ends_with(|c: char| c.is_ascii_digit())
        {
            let digits = format!("{:09}", t.nanos);
            let mut frac = digits[..n.min(9)].to_string();
            if trim {
                frac = frac.trim_end_matches('0').to_string();
                if !frac.is_empty() {
                    out.push(rest.as_bytes()[0] as char);
                    out.push_str(&frac);
                }
            } else {
                out.push(rest.as_bytes()[0] as char);
                out.push_str(&frac);
            }
            rest = &rest[1 + n..];
            continue;
        }
        let Some(el) = element(rest) else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        };
        rest = &rest[el.len()..];
        let hour12 = |h: u32| if h.is_multiple_of(12) { 12 } else { h % 12 };
        match el {
            "January" => out.push_str(MONTHS[dt.month0() as usize]),
            "Jan" => out.push_str(&MONTHS[dt.month0() as usize][..3]),
            "Monday" => out.push_str(DAYS[dt.weekday().num_days_from_sunday() as usize]),
            "Mon" => out.push_str(&DAYS[dt.weekday().num_days_from_sunday() as usize][..3]),
            "MST" => out.push_str(&zone_abbrev(t.offset)),
            "2006" => out.push_str(&format!("{:04}", dt.year())),
            "06" => out.push_str(&format!("{:02}", dt.year().rem_euclid(100))),
            "01" => out.push_str(&format!("{:02}", dt.month())),
            "1" => out.push_str(&dt.month().to_string()),
            "02" => out.push_str(&format!("{:02}", dt.day())),
            "_2" => out.push_str(&format!("{:>2}", dt.day())),
            "2" => out.push_str(&dt.day().to_string()),
            "__2" => out.push_str(&format!("{:>3}", dt.ordinal())),
            "002" => out.push_str(&format!("{:03}", dt.ordinal())),
            "15" => out.push_str(&format!("{:02}", dt.hour())),
            "03" => out.push_str(&format!("{:02}", hour12(dt.hour()))),
            "3" => out.push_str(&hour12(dt.hour()).to_string()),
            "04" => out.push_str(&format!("{:02}", dt.minute())),
            "4" => out.push_str(&dt.minute().to_string()),
            "05" => out.push_str(&format!("{:02}", dt.second())),
            "5" => out.push_str(&dt.second().to_string()),
            "PM" => out.push_str(if dt.hour() >= 12 { "PM" } else { "AM" }),
            "pm" => out.push_str(if dt.hour() >= 12 { "pm" } else { "am" }),
            z => {
                if z.starts_with('Z') && t.offset == 0 {
                    out.push('Z');
                    continue;
                }
                let off = t.offset;
                let sign = if off < 0 { '-' } else { '+' };
                let a = off.unsigned_abs();
                let (h, m, s) = (a / 3600, a / 60 % 60, a % 60);
                out.push(sign);
                out.push_str(&format!("{h:02}"));
                let colon = z.contains(':');
                let body = z.trim_start_matches(['Z', '-']);
                if body.len() > 2 {
                    if colon {
                        out.push(':');
                    }
                    out.push_str(&format!("{m:02}"));
                }
                if body.len() > 5 || (!colon && body.len() > 4) {
                    if colon {
                        out.push(':');
                    }
                    out.push_str(&format!("{s:02}"));
                }
            }
        }
    }
    out
}

fn zone_abbrev(offset: i32) -> String {
    if offset == 0 {
        return "UTC".into();
    }
    let sign = if offset < 0 { '-' } else { '+' };
    let a = offset.unsigned_abs();
    if a.is_multiple_of(3600) {
        format!("{sign}{:02}", a / 3600)
    } else {
        format!("{sign}{:02}{:02}", a / 3600, a / 60 % 60)
    }
}

/// `time.Time.String()`.
pub(crate) fn time_string(t: &Time) -> String {
    let off = t.offset;
    let sign = if off < 0 { '-' } else { '+' };
    let a = off.unsigned_abs();
    let name = if off == 0 { "UTC".to_string() } else { zone_abbrev(off) };
    format!(
        "{} {sign}{:02}{:02} {name}",
        format("2006-01-02 15:04:05.999999999", t),
        a / 3600,
        a / 60 % 60
    )
}

/// RFC 3339 with nanoseconds, as JSON writes times.
pub(crate) fn rfc3339_nano(t: &Time) -> String {
    format("2006-01-02T15:04:05.999999999Z07:00", t)
}

/// Go's `time.Parse` for the usual layouts: numbers, month and day names, AM/PM, numeric
/// zones and fractional seconds. Zone names other than UTC are refused.
pub(crate) fn parse(layout: &str, value: &str) -> Option<Time> {
    let (mut year, mut month, mut day, mut hour, mut min, mut sec, mut nsec) =
        (1i32, 1u32, 1u32, 0u32, 0u32, 0u32, 0u32);
    let mut pm: Option<bool> = None;
    let mut offset = 0i32;
    let mut yday: Option<u32> = None;
    let mut l = layout;
    let mut v = value;
    fn num(v: &mut &str, min: usize, max: usize) -> Option<u32> {
        let n = v.bytes().take(max).take_while(u8::is_ascii_digit).count();
        if n < min {
            return None;
        }
        let r = v[..n].parse().ok();
        *v = &v[n..];
        r
    }
    while !l.is_empty() {
        if let Some((n, _)) = fraction(l) {
            l = &l[1 + n..];
            let b = v.as_bytes();
            if b.first() == Some(&b'.') || b.first() == Some(&b',') {
                let digits = b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
                let frac = &v[1..1 + digits];
                nsec = format!("{frac:0<9}")[..9].parse().ok()?;
                v = &v[1 + digits..];
            }
            continue;
        }
        let Some(el) = element(l) else {
            let c = l.chars().next()?;
            l = &l[c.len_utf8()..];
            v = v.strip_prefix(c)?;
            continue;
        };
        l = &l[el.len()..];
        match el {
            "2006" => {
                if v.len() < 4 {
                    return None;
                }
                year = v[..4].parse().ok()?;
                v = &v[4..];
            }
            "06" => {
                let y = num(&mut v, 2, 2)? as i32;
                year = if y >= 69 { 1900 + y } else { 2000 + y };
            }
            "01" => month = num(&mut v, 2, 2)?,
            "1" => month = num(&mut v, 1, 2)?,
            "January" | "Jan" => {
                let i = MONTHS.iter().position(|m| {
                    let name = if el == "Jan" { &m[..3] } else { m };
                    v.len() >= name.len() && v[..name.len()].eq_ignore_ascii_case(name)
                })?;
                let len = if el == "Jan" { 3 } else { MONTHS[i].len() };
                month = i as u32 + 1;
                v = &v[len..];
            }
            "Monday" | "Mon" => {
                let i = DAYS.iter().position(|d| {
                    let name = if el == "Mon" { &d[..3] } else { d };
                    v.len() >= name.len() && v[..name.len()].eq_ignore_ascii_case(name)
                })?;
                v = &v[if el == "Mon" { 3 } else { DAYS[i].len() }..];
            }
            "02" => day = num(&mut v, 2, 2)?,
            "_2" => {
                v = v.strip_prefix(' ').unwrap_or(v);
                day = num(&mut v, 1, 2)?;
            }
            "2" => day = num(&mut v, 1, 2)?,
            "002" | "__2" => {
                v = v.trim_start_matches(' ');
                yday = Some(num(&mut v, 1, 3)?);
            }
            "15" => hour = num(&mut v, 1, 2)?,
            "03" | "3" => hour = num(&mut v, if el == "03" { 2 } else { 1 }, 2)?,
            "04" | "4" => min = num(&mut v, if el == "04" { 2 } else { 1 }, 2)?,
            "05" | "5" => {
                sec = num(&mut v, if el == "05" { 2 } else { 1 }, 2)?;
                // A fraction after seconds is accepted even if the layout has none.
                if (v.starts_with('.') || v.starts_with(','))
                    && v[1..].starts_with(|c: char| c.is_ascii_digit())
                    && fraction(l).is_none()
                {
                    let digits = v[1..].bytes().take_while(u8::is_ascii_digit).count();
                    nsec = format!("{:0<9}", &v[1..1 + digits])[..9].parse().ok()?;
                    v = &v[1 + digits..];
                }
            }
            "PM" | "pm" => {
                let p = v.get(..2)?.to_ascii_uppercase();
                pm = Some(match p.as_str() {
                    "PM" => true,
                    "AM" => false,
                    _ => return None,
                });
                v = &v[2..];
            }
            "MST" => {
                if v.starts_with("UTC") {
                    v = &v[3..];
                } else {
                    return None;
                }
            }
            z => {
                if z.starts_with('Z') && v.starts_with('Z') {
                    v = &v[1..];
                    continue;
                }
                let sign = match v.as_bytes().first()? {
                    b'+' => 1,
                    b'-' => -1,
                    _ => return None,
                };
                v = &v[1..];
                let h = num(&mut v, 2, 2)? as i32;
                let colon = z.contains(':');
                let body = z.trim_start_matches(['Z', '-']).replace(':', "");
                let mut m = 0;
                let mut s = 0;
                if body.len() >= 4 {
                    if colon {
                        v = v.strip_prefix(':')?;
                    }
                    m = num(&mut v, 2, 2)? as i32;
                }
                if body.len() >= 6 {
                    if colon {
                        v = v.strip_prefix(':')?;
                    }
                    s = num(&mut v, 2, 2)? as i32;
                }
                offset = sign * (h * 3600 + m * 60 + s);
            }
        }
    }
    if !v.is_empty() {
        return None;
    }
    if let Some(p) = pm {
        if hour > 12 {
            return None;
        }
        if p && hour < 12 {
            hour += 12;
        } else if !p && hour == 12 {
            hour = 0;
        }
    }
    let date = match yday {
        Some(d) => NaiveDate::from_yo_opt(year, d)?,
        None => NaiveDate::from_ymd_opt(year, month, day)?,
    };
    let dt = date.and_hms_nano_opt(hour, min, sec, nsec)?;
    let secs = dt.and_utc().timestamp() - offset as i64;
    Some(Time {
        secs,
        nanos: nsec,
        offset,
    })
}

/// Go's `time.ParseDuration`, in nanoseconds.
pub(crate) fn parse_duration(s: &str) -> Option<i128> {
    let (neg, mut rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let n = rest.bytes().take_while(|c| c.is_ascii_digit() || *c == b'.').count();
        if n == 0 {
            return None;
        }
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest.bytes().take_while(|c| !c.is_ascii_digit() && *c != b'.').count();
        let unit = &rest[..u];
        rest = &rest[u..];
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * scale;
    }
    if total > 9.2e18 {
        return None;
    }
    let n = total.round() as i128;
    Some(if neg { -n } else { n })
}

/// Go's `Duration.String()`: `1h2m3s`, `1.5s`, `300ms`, `0s`.
pub(crate) fn format_duration(d: i128) -> String {
    if d == 0 {
        return "0s".into();
    }
    let neg = d < 0;
    let u = d.unsigned_abs();
    let mut out = String::new();
    if u < 1_000_000_000 {
        let (unit, scale) = if u < 1_000 {
            ("ns", 1)
        } else if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        out.push_str(&frac_string(u, scale));
        out.push_str(unit);
    } else {
        let h = u / 3_600_000_000_000;
        let m = u / 60_000_000_000 % 60;
        let s_ns = u % 60_000_000_000;
        if h > 0 {
            out.push_str(&format!("{h}h"));
        }
        if h > 0 || m > 0 {
            out.push_str(&format!("{m}m"));
        }
        out.push_str(&frac_string(s_ns, 1_000_000_000));
        out.push('s');
    }
    if neg {
        out.insert(0, '-');
    }
    out
}

fn frac_string(v: u128, scale: u128) -> String {
    let whole = v / scale;
    let frac = v % scale;
    if frac == 0 {
        return whole.to_string();
    }
    let width = scale.to_string().len() - 1;
    let f = format!("{frac:0width$}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}
