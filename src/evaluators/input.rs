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

/// Most groups a bias test may compare: each group's figures enter the test's entry,
/// and an entry is at most 64 KiB.
pub const MAX_GROUPS: usize = 200;
/// Longest group label, bytes.
pub const MAX_GROUP_LABEL: usize = 64;

/// A group label: a short text without control or bidirectional characters.
fn group_label(field: &str, s: &str) -> Result<(), AppError> {
    crate::fields::validate_text(field, s, MAX_GROUP_LABEL, true)
}

/// Refuse more groups than [`MAX_GROUPS`].
pub fn at_most_groups(field: &str, n: usize) -> Result<(), AppError> {
    if n > MAX_GROUPS {
        return Err(AppError::invalid(
            field,
            format!("has {n} groups; at most {MAX_GROUPS} (each group's figures enter the entry)"),
        ));
    }
    Ok(())
}

/// Group labels (strings, or numbers taken as their text).
pub fn groups(input: &Map<String, Value>, name: &str) -> Result<Vec<String>, AppError> {
    let labels = array(input, name)?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let field = format!("input.{name}[{i}]");
            match v {
                Value::String(s) => group_label(&field, s).map(|()| s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                Value::Bool(b) => Ok(b.to_string()),
                _ => Err(AppError::invalid(
                    field,
                    "must be a group label: a non-empty string or a number",
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let distinct: std::collections::BTreeSet<&str> = labels.iter().map(String::as_str).collect();
    at_most_groups(&format!("input.{name}"), distinct.len())?;
    Ok(labels)
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
    at_most_groups(&field, m.len())?;
    let mut out = BTreeMap::new();
    for (g, v) in m {
        group_label(&format!("{field}.{g}"), g)?;
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
