//! Checks one decision request against [`Limits`] before any work is done
//! on it: a token is measured before it is parsed, a context before it is
//! converted for Cedar. Walking the context is iterative, so a deeply
//! nested one cannot exhaust the stack here either.

use prost::Message;
use prost_types::value::Kind;

use super::ApiError;
use super::v1::AuthorizeRequest;
use crate::limits::Limits;

/// The key that makes a context record an entity reference in Cedar's
/// JSON format.
const ENTITY_ESCAPE: &str = "__entity";

/// `Ok` when `request` is within `limits`; else which limit it exceeds,
/// by how much, and the config key that sets it.
pub(crate) fn check(limits: &Limits, request: &AuthorizeRequest) -> Result<(), ApiError> {
    let token = request.token.len();
    if token > limits.max_token_bytes {
        return Err(exceeded(
            "`token`",
            token,
            "bytes",
            "max_token_bytes",
            limits.max_token_bytes,
        ));
    }
    let Some(context) = &request.context else {
        return Ok(());
    };
    let size = context.encoded_len();
    if size > limits.max_context_bytes {
        return Err(exceeded(
            "`context`",
            size,
            "bytes",
            "max_context_bytes",
            limits.max_context_bytes,
        ));
    }
    let shape = Shape::of(context, limits.max_context_depth);
    if shape.depth > limits.max_context_depth {
        return Err(exceeded(
            "`context`",
            shape.depth,
            "levels deep",
            "max_context_depth",
            limits.max_context_depth,
        ));
    }
    if shape.entities > limits.max_context_entities {
        return Err(exceeded(
            "`context`",
            shape.entities,
            "entity references",
            "max_context_entities",
            limits.max_context_entities,
        ));
    }
    Ok(())
}

fn exceeded(what: &str, found: usize, unit: &str, key: &str, limit: usize) -> ApiError {
    ApiError::InvalidArgument(format!(
        "limit-exceeded: {what} is {found} {unit}; the limit is {limit} (`limits.{key}` in mandate.toml)"
    ))
}

/// How deep a context nests and how many entity references it holds.
#[derive(Debug, Default, PartialEq, Eq)]
struct Shape {
    depth: usize,
    entities: usize,
}

impl Shape {
    /// Measures `context`; the walk stops once past `max_depth`, which is
    /// enough to know the limit is exceeded.
    fn of(context: &prost_types::Struct, max_depth: usize) -> Self {
        let mut shape = Shape::default();
        // The context record itself is level 1.
        let mut pending = vec![(context.fields.values().collect::<Vec<_>>(), 1)];
        if context.fields.contains_key(ENTITY_ESCAPE) {
            shape.entities += 1;
        }
        while let Some((values, depth)) = pending.pop() {
            shape.depth = shape.depth.max(depth);
            if shape.depth > max_depth {
                break;
            }
            for value in values {
                match &value.kind {
                    Some(Kind::StructValue(record)) => {
                        if record.fields.contains_key(ENTITY_ESCAPE) {
                            shape.entities += 1;
                        }
                        pending.push((record.fields.values().collect(), depth + 1));
                    }
                    Some(Kind::ListValue(list)) => {
                        pending.push((list.values.iter().collect(), depth + 1));
                    }
                    _ => {}
                }
            }
        }
        shape
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::{ListValue, Struct, Value};

    fn record(fields: Vec<(&str, Value)>) -> Struct {
        Struct {
            fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        }
    }

    fn nested(levels: usize) -> Struct {
        let mut inner = record(vec![("leaf", Value::from(1.0))]);
        for _ in 1..levels {
            inner = record(vec![("next", Value::from(Kind::StructValue(inner)))]);
        }
        inner
    }

    fn entity() -> Value {
        Value::from(Kind::StructValue(record(vec![(
            ENTITY_ESCAPE,
            Value::from(Kind::StructValue(record(vec![
                ("type", Value::from("Mandate::Resource".to_owned())),
                ("id", Value::from("x".to_owned())),
            ]))),
        )])))
    }

    #[test]
    fn depth_counts_records_and_lists() {
        assert_eq!(Shape::of(&nested(1), 64).depth, 1);
        assert_eq!(Shape::of(&nested(5), 64).depth, 5);
        let with_list = record(vec![(
            "l",
            Value::from(Kind::ListValue(ListValue {
                values: vec![Value::from(Kind::StructValue(nested(2)))],
            })),
        )]);
        // context > list > record > record
        assert_eq!(Shape::of(&with_list, 64).depth, 4);
    }

    #[test]
    fn entity_references_are_counted_wherever_they_are() {
        let context = record(vec![
            ("a", entity()),
            (
                "b",
                Value::from(Kind::ListValue(ListValue {
                    values: vec![entity(), entity()],
                })),
            ),
        ]);
        assert_eq!(Shape::of(&context, 64).entities, 3);
    }

    #[test]
    fn each_limit_names_its_key() {
        let limits = Limits {
            max_context_depth: 3,
            max_context_entities: 1,
            max_token_bytes: 10,
            ..Limits::default()
        };
        let message = |request: AuthorizeRequest| match check(&limits, &request) {
            Err(ApiError::InvalidArgument(m)) => m,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        };
        let token = AuthorizeRequest {
            token: "x".repeat(11),
            ..Default::default()
        };
        assert!(message(token).contains("limits.max_token_bytes"));
        let deep = AuthorizeRequest {
            context: Some(nested(4)),
            ..Default::default()
        };
        assert!(message(deep).contains("limits.max_context_depth"));
        let entities = AuthorizeRequest {
            context: Some(record(vec![("a", entity()), ("b", entity())])),
            ..Default::default()
        };
        assert!(message(entities).contains("limits.max_context_entities"));
        let big = AuthorizeRequest {
            context: Some(record(vec![("s", Value::from("y".repeat(64)))])),
            ..Default::default()
        };
        let small = Limits {
            max_context_bytes: 40,
            ..Limits::default()
        };
        assert!(matches!(
            check(&small, &big),
            Err(ApiError::InvalidArgument(m)) if m.contains("limits.max_context_bytes")
        ));

        let fine = AuthorizeRequest {
            token: "x".repeat(10),
            context: Some(record(vec![("a", entity())])),
            ..Default::default()
        };
        assert!(check(&limits, &fine).is_ok());
    }
}
