//! `google.protobuf.Struct` to JSON, for Cedar's context parser.

use prost_types::value::Kind;
use serde_json::{Map, Number, Value};

/// Converts a request context; `None` is the empty context.
pub(crate) fn struct_to_map(context: Option<&prost_types::Struct>) -> Map<String, Value> {
    context.map_or_else(Map::new, fields_to_json)
}

fn fields_to_json(s: &prost_types::Struct) -> Map<String, Value> {
    s.fields
        .iter()
        .map(|(k, v)| (k.clone(), value_to_json(v)))
        .collect()
}

fn value_to_json(value: &prost_types::Value) -> Value {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        // Protobuf numbers are doubles; Cedar has only 64-bit integers, so an
        // integral value becomes a Long and anything else stays a float that
        // Cedar rejects with a clear error.
        Some(Kind::NumberValue(n)) => integral(*n)
            .map(Value::from)
            .or_else(|| Number::from_f64(*n).map(Value::Number))
            .unwrap_or(Value::Null),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::ListValue(list)) => {
            Value::Array(list.values.iter().map(value_to_json).collect())
        }
        Some(Kind::StructValue(s)) => Value::Object(fields_to_json(s)),
    }
}

fn integral(n: f64) -> Option<i64> {
    // 2^63 is exactly representable; anything at or beyond it does not fit.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (n.fract() == 0.0 && (-LIMIT..LIMIT).contains(&n)).then_some(n as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::{Struct, Value as PValue};

    #[test]
    fn integral_numbers_become_longs_and_fractions_stay_floats() {
        let mut s = Struct::default();
        s.fields.insert(
            "n".into(),
            PValue {
                kind: Some(Kind::NumberValue(42.0)),
            },
        );
        s.fields.insert(
            "f".into(),
            PValue {
                kind: Some(Kind::NumberValue(1.5)),
            },
        );
        let json = struct_to_map(Some(&s));
        assert_eq!(json["n"], serde_json::json!(42));
        assert!(json["n"].is_i64());
        assert!(json["f"].is_f64());
        assert!(struct_to_map(None).is_empty());
    }
}
