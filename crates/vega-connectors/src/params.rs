//! Parsing of connector parameters from JSON, with errors that name the
//! offending field (including unknown fields).

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ConnectorError;

/// The fields an object accepts, and the accepted fields of nested objects.
pub(crate) struct Fields {
    pub known: &'static [&'static str],
    pub nested: &'static [(&'static str, &'static [&'static str])],
}

/// Deserializes `value` into `T`. `null` counts as an empty object. Unknown
/// fields (at the top level and in `fields.nested` objects) are refused by
/// name; other errors name the field by its dotted path.
pub(crate) fn parse<T: DeserializeOwned>(
    what: &'static str,
    value: &Value,
    fields: &Fields,
) -> Result<T, ConnectorError> {
    let value = match value {
        Value::Null => Value::Object(Default::default()),
        Value::Object(_) => value.clone(),
        other => {
            return Err(ConnectorError::invalid(
                what,
                format!("must be a JSON object, not {}", kind_of(other)),
            ))
        }
    };
    if let Value::Object(map) = &value {
        check_known(map, fields.known, "")?;
        for (name, known) in fields.nested {
            if let Some(Value::Object(inner)) = map.get(*name) {
                check_known(inner, known, name)?;
            }
        }
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let message = e.inner().to_string();
        let mut field = e.path().to_string();
        if field == "." {
            field = missing_field(&message).unwrap_or(what).to_string();
        }
        ConnectorError::invalid(field, message)
    })
}

fn check_known(
    map: &serde_json::Map<String, Value>,
    known: &[&str],
    prefix: &str,
) -> Result<(), ConnectorError> {
    for key in map.keys() {
        if !known.contains(&key.as_str()) {
            let field = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            return Err(ConnectorError::invalid(
                field,
                format!("unknown field; expected one of: {}", known.join(", ")),
            ));
        }
    }
    Ok(())
}

/// Extracts `x` from serde's "missing field `x`".
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
