//! Reading evaluator inputs, with errors that name the field (`input.current[17]`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::AppError;

/// Most samples in one array.
pub const MAX_SAMPLES: usize = 2_000_000;

pub fn object(input: &Value) -> Result<&Map<String, Value>, AppError> {
    input
        .as_object()
        .ok_or_else(|| AppError::invalid("input", "must be an object"))
}

pub fn has(input: &Map<String, Value>, name: &str) -> bool {
    input.get(name).is_some_and(|v| !v.is_null())
}

fn array<'a>(input: &'a Map<String, Value>, name: &str) -> Result<&'a Vec<Value>, AppError> {
    let field = format!("input.{name}");
    let a = input
        .get(name)
        .ok_or_else(|| AppError::invalid(&field, "is required"))?
        .as_array()
        .ok_or_else(|| AppError::invalid(&field, "must be an array"))?;
    if a.is_empty() {
        return Err(AppError::invalid(&field, "must not be empty"));
    }
    if a.len() > MAX_SAMPLES {
        return Err(AppError::invalid(
            &field,
            format!("at most {MAX_SAMPLES} values"),
        ));
    }
    Ok(a)
}

/// An array of finite numbers.
pub fn samples(input: &Map<String, Value>, name: &str) -> Result<Vec<f64>, AppError> {
    array(input, name)?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_f64().filter(|f| f.is_finite()).ok_or_else(|| {
                AppError::invalid(format!("input.{name}[{i}]"), "must be a finite number")
            })
        })
        .collect()
}

/// An array of non-negative finite counts, not all zero.
pub fn counts(input: &Map<String, Value>, name: &str) -> Result<Vec<f64>, AppError> {
    let c = samples(input, name)?;
    if let Some(i) = c.iter().position(|x| *x < 0.0) {
        return Err(AppError::invalid(
            format!("input.{name}[{i}]"),
            "counts must not be negative",
        ));
    }
    if c.iter().sum::<f64>() <= 0.0 {
        return Err(AppError::invalid(
            format!("input.{name}"),
            "counts must not all be zero",
        ));
    }
    Ok(c)
}

/// Binary labels: 0/1 or false/true.
pub fn labels(input: &Map<String, Value>, name: &str) -> Result<Vec<bool>, AppError> {
    array(input, name)?
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Bool(b) => Ok(*b),
            Value::Number(n) if n.as_f64() == Some(0.0) => Ok(false),
            Value::Number(n) if n.as_f64() == Some(1.0) => Ok(true),
            _ => Err(AppError::invalid(
                format!("input.{name}[{i}]"),
                "must be 0, 1, false or true",
            )),
        })
        .collect()
}

/// Group labels (strings, or numbers taken as their text).
pub fn groups(input: &Map<String, Value>, name: &str) -> Result<Vec<String>, AppError> {
    array(input, name)?
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) if !s.is_empty() && s.len() <= 200 => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            _ => Err(AppError::invalid(
                format!("input.{name}[{i}]"),
                "must be a group label: a non-empty string or a number",
            )),
        })
        .collect()
}

/// Two arrays that must have the same length.
pub fn same_len(a: usize, an: &str, b: usize, bn: &str) -> Result<(), AppError> {
    if a != b {
        return Err(AppError::invalid(
            format!("input.{bn}"),
            format!("has {b} values but input.{an} has {a}"),
        ));
    }
    Ok(())
}

/// `{group: {selected, total}}` tables.
pub fn group_table(
    input: &Map<String, Value>,
    name: &str,
) -> Result<BTreeMap<String, (f64, f64)>, AppError> {
    let field = format!("input.{name}");
    let m = input.get(name).and_then(Value::as_object).ok_or_else(|| {
        AppError::invalid(&field, "must be an object of {group: {selected, total}}")
    })?;
    if m.len() < 2 {
        return Err(AppError::invalid(&field, "needs at least two groups"));
    }
    let mut out = BTreeMap::new();
    for (g, v) in m {
        let f = |k: &str| -> Result<f64, AppError> {
            v.get(k)
                .and_then(Value::as_f64)
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| {
                    AppError::invalid(format!("{field}.{g}.{k}"), "must be a non-negative number")
                })
        };
        let (sel, tot) = (f("selected")?, f("total")?);
        if tot <= 0.0 {
            return Err(AppError::invalid(
                format!("{field}.{g}.total"),
                "must be positive (an empty group has no selection rate)",
            ));
        }
        if sel > tot {
            return Err(AppError::invalid(
                format!("{field}.{g}.selected"),
                "must not exceed total",
            ));
        }
        out.insert(g.clone(), (sel, tot));
    }
    Ok(out)
}

/// Per-group selection counts from predictions: `{group: (selected, total)}`.
pub fn tally(
    y_pred: &[bool],
    sensitive: &[String],
) -> Result<BTreeMap<String, (f64, f64)>, AppError> {
    let mut out: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for (p, g) in y_pred.iter().zip(sensitive) {
        let e = out.entry(g.clone()).or_insert((0.0, 0.0));
        e.0 += f64::from(u8::from(*p));
        e.1 += 1.0;
    }
    if out.len() < 2 {
        return Err(AppError::invalid(
            "input.sensitive",
            "needs at least two groups",
        ));
    }
    Ok(out)
}
