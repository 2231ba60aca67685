//! Fields as callers send them: JSON read into typed values, naming the offending field
//! by its JSON path (`decisions[2].confidence`) when it does not fit, and the checks of
//! ids, texts and digests every layer shares (request bodies, the register's commands,
//! the inputs evaluators read).

use serde::de::DeserializeOwned;

use crate::error::{AppError, ErrorCode};

/// Parse a request body, one JSON object and nothing after it, into `T`, naming the
/// offending field by its path. (serde would read a struct from an array too, and
/// stop reading at the end of the first value: neither is a body a caller meant.)
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(AppError::new(
            ErrorCode::InvalidBody,
            "the body must be one JSON object",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = field_error(serde_path_to_error::deserialize(&mut *de))?;
    de.end().map_err(|e| {
        AppError::new(
            ErrorCode::InvalidBody,
            format!("the body must be one JSON object, with nothing after it: {e}"),
        )
    })?;
    Ok(value)
}

/// Read an already parsed JSON value into `T`, naming the offending field by its path.
pub fn parse_value<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, AppError> {
    field_error(serde_path_to_error::deserialize(v))
}

fn field_error<T>(
    r: Result<T, serde_path_to_error::Error<serde_json::Error>>,
) -> Result<T, AppError> {
    match r {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let detail = strip_position(&inner.to_string());
            if inner.is_syntax() || inner.is_eof() {
                return Err(AppError::new(
                    ErrorCode::InvalidBody,
                    format!("malformed JSON: {}", inner),
                ));
            }
            if path == "." || path.is_empty() {
                Err(AppError::new(ErrorCode::InvalidBody, detail))
            } else {
                Err(AppError::field(ErrorCode::InvalidField, path, detail))
            }
        }
    }
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Slugs: system ids.
pub fn validate_slug(field: &str, v: &str) -> Result<(), AppError> {
    let ok = (1..=64).contains(&v.len())
        && v.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(AppError::invalid(
            field,
            "must be a slug: 1-64 characters of a-z, 0-9 and '-', starting with a letter or digit",
        ))
    }
}

/// Identifiers chosen by callers (versions, decision ids, evaluator names).
pub fn validate_ident(field: &str, v: &str, max: usize) -> Result<(), AppError> {
    let ok = !v.is_empty()
        && v.len() <= max
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-:@/".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(AppError::invalid(
            field,
            format!("must be 1-{max} characters of A-Z, a-z, 0-9 and . _ + - : @ /"),
        ))
    }
}

pub fn validate_text(field: &str, v: &str, max: usize, required: bool) -> Result<(), AppError> {
    if required && v.trim().is_empty() {
        return Err(AppError::invalid(field, "must not be empty"));
    }
    if v.len() > max {
        return Err(AppError::invalid(
            field,
            format!("must be at most {max} bytes"),
        ));
    }
    if v.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(AppError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    if v.chars().any(is_bidi_control) {
        return Err(AppError::invalid(
            field,
            "must not contain bidirectional formatting characters (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C)",
        ));
    }
    Ok(())
}

/// Characters that reorder how text displays (a name with U+202E reads backwards in a
/// console or a report: "Trojan Source").
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// A lowercase hex SHA-256 digest.
pub fn parse_sha256(field: &str, v: &str) -> Result<[u8; 32], AppError> {
    if v.len() != 64
        || !v
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(AppError::invalid(
            field,
            "must be a SHA-256 digest: 64 lowercase hex digits",
        ));
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(v, &mut out).map_err(|_| AppError::invalid(field, "not hex"))?;
    Ok(out)
}

/// Unix µs to RFC 3339 (UTC, microseconds).
pub fn rfc3339(micros: u64) -> String {
    chrono::DateTime::from_timestamp_micros(micros as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}

/// Parse an RFC 3339 time into unix µs.
pub fn parse_time(field: &str, s: &str) -> Result<u64, AppError> {
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .map_err(|e| AppError::invalid(field, format!("not an RFC 3339 time: {e}")))?;
    u64::try_from(t.timestamp_micros()).map_err(|_| AppError::invalid(field, "must be after 1970"))
}
