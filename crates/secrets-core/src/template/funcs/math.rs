//! sprig's integer and float arithmetic and conversions.

use super::super::exec::MAX_ITEMS;
use super::super::value::Value;
use super::{Param::*, Table, fail, int, to_f64, to_i64};

pub(super) fn register(t: &mut Table) {
    t.add("atoi", &[Str], |_, a| {
        let s = super::text(&a[0]);
        Ok(Value::int(s.parse::<i64>().unwrap_or(0)))
    });
    t.add("int", &[Any], |_, a| Ok(Value::int(to_i64(&a[0]))));
    t.add("int64", &[Any], |_, a| Ok(Value::int64(to_i64(&a[0]))));
    t.add("float64", &[Any], |_, a| Ok(Value::Float(to_f64(&a[0]))));
    t.add("add1", &[Any], |_, a| Ok(Value::int64(to_i64(&a[0]).wrapping_add(1))));
    t.var("add", &[], Any, |_, a| {
        Ok(Value::int64(a.iter().fold(0i64, |s, v| s.wrapping_add(to_i64(v)))))
    });
    t.add("sub", &[Any, Any], |_, a| {
        Ok(Value::int64(to_i64(&a[0]).wrapping_sub(to_i64(&a[1]))))
    });
    t.add("div", &[Any, Any], |_, a| {
        let d = to_i64(&a[1]);
        if d == 0 {
            return fail("integer divide by zero");
        }
        Ok(Value::int64(to_i64(&a[0]).wrapping_div(d)))
    });
    t.add("mod", &[Any, Any], |_, a| {
        let d = to_i64(&a[1]);
        if d == 0 {
            return fail("integer divide by zero");
        }
        Ok(Value::int64(to_i64(&a[0]).wrapping_rem(d)))
    });
    t.var("mul", &[Any], Any, |_, a| {
        Ok(Value::int64(
            a[1..].iter().fold(to_i64(&a[0]), |s, v| s.wrapping_mul(to_i64(v))),
        ))
    });
    t.add("randInt", &[Int, Int], |_, a| {
        let (lo, hi) = (int(&a[0]), int(&a[1]));
        if hi <= lo {
            return fail("invalid argument to Intn");
        }
        Ok(Value::int(rand::random_range(lo..hi)))
    });
    t.var("max", &[Any], Any, |_, a| {
        Ok(Value::int64(a.iter().map(to_i64).max().unwrap_or(0)))
    });
    t.var("biggest", &[Any], Any, |_, a| {
        Ok(Value::int64(a.iter().map(to_i64).max().unwrap_or(0)))
    });
    t.var("min", &[Any], Any, |_, a| {
        Ok(Value::int64(a.iter().map(to_i64).min().unwrap_or(0)))
    });
    t.var("maxf", &[Any], Any, |_, a| {
        Ok(Value::Float(
            a[1..].iter().fold(to_f64(&a[0]), |m, v| go_max(m, to_f64(v))),
        ))
    });
    t.var("minf", &[Any], Any, |_, a| {
        Ok(Value::Float(
            a[1..].iter().fold(to_f64(&a[0]), |m, v| go_min(m, to_f64(v))),
        ))
    });
    t.add("ceil", &[Any], |_, a| Ok(Value::Float(to_f64(&a[0]).ceil())));
    t.add("floor", &[Any], |_, a| Ok(Value::Float(to_f64(&a[0]).floor())));
    t.var("round", &[Any, Int], Float, |_, a| {
        let f = to_f64(&a[0]);
        let places = int(&a[1]);
        let round_on = match a.get(2) {
            Some(Value::Float(r)) => *r,
            _ => 0.5,
        };
        let pow = 10f64.powf(places as f64);
        let digit = pow * f;
        let r = if digit.fract() >= round_on {
            digit.ceil()
        } else {
            digit.floor()
        };
        Ok(Value::Float(r / pow))
    });
    t.add("until", &[Int], |_, a| {
        let n = int(&a[0]);
        step_list(0, n, if n < 0 { -1 } else { 1 })
    });
    t.add("untilStep", &[Int, Int, Int], |_, a| {
        step_list(int(&a[0]), int(&a[1]), int(&a[2]))
    });
    t.var("seq", &[], Int, |_, a| {
        let p: Vec<i64> = a.iter().map(int).collect();
        let (start, step, end, inc) = match p.as_slice() {
            [end] => (1, if *end < 1 { -1 } else { 1 }, *end, if *end < 1 { -1 } else { 1 }),
            [start, end] => {
                let step = if end < start { -1 } else { 1 };
                (*start, step, *end, step)
            }
            [start, step, end] => {
                if end < start && *step > 0 {
                    return Ok(Value::str(""));
                }
                (*start, *step, *end, if end < start { -1 } else { 1 })
            }
            _ => return Ok(Value::str("")),
        };
        let stop = end.saturating_add(inc);
        let v = ints(start, stop, step)?;
        let text: Vec<String> = v.iter().map(i64::to_string).collect();
        Ok(Value::str(text.join(" ")))
    });
}

/// Go's `math.Max` / `math.Min` (NaN wins).
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.max(b) }
}
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.min(b) }
}

/// sprig's `untilStep`: `start`, `start+step`, ... before `stop`.
fn ints(start: i64, stop: i64, step: i64) -> Result<Vec<i64>, String> {
    let mut v = Vec::new();
    if step == 0 || (stop < start && step >= 0) || (stop > start && step <= 0) {
        return Ok(v);
    }
    let mut i = start;
    while (step > 0 && i < stop) || (step < 0 && i > stop) {
        if v.len() >= MAX_ITEMS {
            return fail(format!("a list would have over {MAX_ITEMS} elements"));
        }
        v.push(i);
        i = match i.checked_add(step) {
            Some(n) => n,
            None => break,
        };
    }
    Ok(v)
}

fn step_list(start: i64, stop: i64, step: i64) -> Result<Value, String> {
    Ok(Value::list(
        ints(start, stop, step)?.into_iter().map(Value::int).collect(),
    ))
}
