//! sprig's date functions, with Go's reference-time layouts (`2006-01-02 15:04:05`).
//!
//! The clock is the render's (`Template::render_at` fixes it; the engine uses the system
//! clock). Zones: `UTC`, and `Local` read as UTC (secretsync runs in containers whose local
//! zone is UTC); other zone names are an error rather than a silent guess.

use super::super::gotime::{Time, format, format_duration, parse, parse_duration};
use super::super::value::Value;
use super::{Call, Param::*, Table, fail, text};

pub(super) fn register(t: &mut Table) {
    t.add("now", &[], |c, _| Ok(Value::Time(c.now)));
    t.add("date", &[Str, Any], |c, a| format_in(c, &a[0], &a[1], "Local"));
    t.add("dateInZone", &[Str, Any, Str], |c, a| {
        format_in(c, &a[0], &a[1], &text(&a[2]))
    });
    t.add("date_in_zone", &[Str, Any, Str], |c, a| {
        format_in(c, &a[0], &a[1], &text(&a[2]))
    });
    t.add("htmlDate", &[Any], |c, a| {
        format_in(c, &Value::str("2006-01-02"), &a[0], "Local")
    });
    t.add("htmlDateInZone", &[Any, Str], |c, a| {
        format_in(c, &Value::str("2006-01-02"), &a[0], &text(&a[1]))
    });
    for name in ["dateModify", "date_modify"] {
        t.add(name, &[Str, Time], |_, a| {
            let Value::Time(tm) = a[1] else {
                unreachable!("checked by the evaluator")
            };
            Ok(Value::Time(match parse_duration(&text(&a[0])) {
                Some(d) => add(tm, d),
                None => tm,
            }))
        });
    }
    for name in ["mustDateModify", "must_date_modify"] {
        t.add(name, &[Str, Time], |_, a| {
            let Value::Time(tm) = a[1] else {
                unreachable!("checked by the evaluator")
            };
            let d = parse_duration(&text(&a[0])).ok_or("invalid duration")?;
            Ok(Value::Time(add(tm, d)))
        });
    }
    t.add("ago", &[Any], |c, a| {
        let tm = time_of(c, &a[0]);
        let d = nanos(c.now) - nanos(tm);
        Ok(Value::str(format_duration(round_to(d, 1_000_000_000))))
    });
    t.add("duration", &[Any], |_, a| {
        let n: i64 = match &a[0] {
            Value::Str(s) => String::from_utf8_lossy(s).parse().unwrap_or(0),
            Value::Int(i, super::super::value::IntTy::Int64) => *i,
            _ => 0,
        };
        Ok(Value::str(format_duration(n as i128 * 1_000_000_000)))
    });
    t.add("durationRound", &[Any], |c, a| {
        let d: i128 = match &a[0] {
            Value::Str(s) => parse_duration(&String::from_utf8_lossy(s)).unwrap_or(0),
            Value::Int(i, super::super::value::IntTy::Int64) => *i as i128,
            Value::Time(t) => nanos(c.now) - nanos(*t),
            _ => 0,
        };
        let u = d.unsigned_abs();
        let h: u128 = 3_600_000_000_000;
        let units: [(u128, &str); 6] = [
            (h * 24 * 365, "y"),
            (h * 24 * 30, "mo"),
            (h * 24, "d"),
            (h, "h"),
            (60_000_000_000, "m"),
            (1_000_000_000, "s"),
        ];
        for (size, unit) in units {
            if u > size {
                return Ok(Value::str(format!("{}{unit}", u / size)));
            }
        }
        Ok(Value::str("0s"))
    });
    t.add("toDate", &[Str, Str], |_, a| {
        Ok(Value::Time(parse(&text(&a[0]), &text(&a[1])).unwrap_or(ZERO)))
    });
    t.add("mustToDate", &[Str, Str], |_, a| {
        Ok(Value::Time(
            parse(&text(&a[0]), &text(&a[1])).ok_or("the text does not match the layout")?,
        ))
    });
    t.add("unixEpoch", &[Time], |_, a| {
        let Value::Time(tm) = a[0] else {
            unreachable!("checked by the evaluator")
        };
        Ok(Value::str(tm.secs.to_string()))
    });
}

/// Go's zero time, `0001-01-01 00:00:00 +0000 UTC`.
const ZERO: Time = Time {
    secs: -62_135_596_800,
    nanos: 0,
    offset: 0,
};

fn nanos(t: Time) -> i128 {
    t.secs as i128 * 1_000_000_000 + t.nanos as i128
}

fn from_nanos(n: i128, offset: i32) -> Time {
    Time {
        secs: n.div_euclid(1_000_000_000) as i64,
        nanos: n.rem_euclid(1_000_000_000) as u32,
        offset,
    }
}

fn add(t: Time, d: i128) -> Time {
    from_nanos(nanos(t) + d, t.offset)
}

/// Go's `Duration.Round`.
fn round_to(d: i128, m: i128) -> i128 {
    let r = d % m;
    if d < 0 {
        let r = -r;
        if r + r < m { d + r } else { d - m + r }
    } else if r + r < m {
        d - r
    } else {
        d + m - r
    }
}

/// The time a date argument gives: a time, or Unix seconds as `int` / `int64`; anything
/// else is now, as in sprig.
fn time_of(c: &Call<'_>, v: &Value) -> Time {
    match v {
        Value::Time(t) => *t,
        Value::Int(i, _) => Time {
            secs: *i,
            nanos: 0,
            offset: 0,
        },
        _ => c.now,
    }
}

fn format_in(c: &Call<'_>, layout: &Value, date: &Value, zone: &str) -> Result<Value, String> {
    let t = time_of(c, date);
    let t = match zone {
        "" | "UTC" | "Local" => Time { offset: 0, ..t },
        _ => {
            // The zone may come from data: not quoted.
            return fail("the time zone is not supported (only UTC and Local, read as UTC)");
        }
    };
    Ok(Value::str(format(&text(layout), &t)))
}
