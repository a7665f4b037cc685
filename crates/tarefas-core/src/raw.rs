//! Reading an untyped task-file tree (JSON values, whatever the file's syntax) with paths,
//! so that every problem is reported where it is.

use serde_json::{Map, Value};

use crate::problem::{join, Problems};

/// A JSON map, as read from YAML or JSON.
pub type Object = Map<String, Value>;

/// The word for a value's type in error messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// Reports `expected X, found Y` at `path`.
pub fn wrong_type(problems: &mut Problems, path: &str, expected: &str, found: &Value) {
    problems.push(
        path,
        format!("expected {expected}, found {}", type_name(found)),
    );
}

/// The value as a map, or a problem.
pub fn as_object<'a>(v: &'a Value, path: &str, problems: &mut Problems) -> Option<&'a Object> {
    match v {
        Value::Object(m) => Some(m),
        other => {
            wrong_type(problems, path, "a map", other);
            None
        }
    }
}

/// The value as a string, or a problem.
pub fn as_str<'a>(v: &'a Value, path: &str, problems: &mut Problems) -> Option<&'a str> {
    match v {
        Value::String(s) => Some(s),
        other => {
            wrong_type(problems, path, "a string", other);
            None
        }
    }
}

/// The value as an integer within `min..=max`, or a problem.
pub fn as_int_in(
    v: &Value,
    path: &str,
    min: i64,
    max: i64,
    problems: &mut Problems,
) -> Option<i64> {
    match v.as_i64() {
        Some(n) if (min..=max).contains(&n) => Some(n),
        Some(n) => {
            problems.push(path, format!("must be between {min} and {max}, found {n}"));
            None
        }
        None => {
            if v.is_u64() {
                problems.push(path, format!("must be between {min} and {max}"));
            } else {
                wrong_type(problems, path, "an integer", v);
            }
            None
        }
    }
}

/// Reports every key of `map` that is not in `allowed` as unknown.
pub fn reject_unknown_keys(map: &Object, path: &str, allowed: &[&str], problems: &mut Problems) {
    for key in map.keys() {
        if !allowed.contains(&key.as_str()) {
            problems.push(
                join(path, key),
                format!("unknown key (expected one of: {})", allowed.join(", ")),
            );
        }
    }
}

/// The value under `key`, treating `null` as absent.
pub fn get<'a>(map: &'a Object, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

/// The value under `key`, or a `required` problem.
pub fn required<'a>(
    map: &'a Object,
    path: &str,
    key: &str,
    problems: &mut Problems,
) -> Option<&'a Value> {
    let v = get(map, key);
    if v.is_none() {
        problems.push(join(path, key), "required");
    }
    v
}
