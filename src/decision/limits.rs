//! Checks one request against [`Limits`] before any work is done on it: a
//! token is measured before it is parsed, a context before Cedar reads it.
//! Walking the context is iterative, so a deeply nested one cannot exhaust
//! the stack here either.

use serde_json::Value;

use super::Request;
use crate::limits::Limits;

/// The key that makes a context record an entity reference in Cedar's
/// JSON format.
const ENTITY_ESCAPE: &str = "__entity";

/// A request over one of the limits: which, by how much, and the key that
/// sets it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is {found} {unit}; the limit is {limit} (`limits.{key}` in mandate.toml)")]
pub struct LimitExceeded {
    what: &'static str,
    found: usize,
    unit: &'static str,
    key: &'static str,
    limit: usize,
}

/// `Ok` when `request` is within `limits`.
pub fn check(limits: &Limits, request: &Request) -> Result<(), LimitExceeded> {
    let exceeded = |what, found, unit, key, limit| {
        Err(LimitExceeded {
            what,
            found,
            unit,
            key,
            limit,
        })
    };
    let token = request.token.as_deref().map_or(0, str::len);
    if token > limits.max_token_bytes {
        return exceeded(
            "`token`",
            token,
            "bytes",
            "max_token_bytes",
            limits.max_token_bytes,
        );
    }
    let context = &request.context;
    if context.wire_bytes > limits.max_context_bytes {
        return exceeded(
            "`context`",
            context.wire_bytes,
            "bytes",
            "max_context_bytes",
            limits.max_context_bytes,
        );
    }
    if context.fields.is_empty() {
        return Ok(());
    }
    let shape = Shape::of(&context.fields, limits.max_context_depth);
    if shape.depth > limits.max_context_depth {
        return exceeded(
            "`context`",
            shape.depth,
            "levels deep",
            "max_context_depth",
            limits.max_context_depth,
        );
    }
    if shape.entities > limits.max_context_entities {
        return exceeded(
            "`context`",
            shape.entities,
            "entity references",
            "max_context_entities",
            limits.max_context_entities,
        );
    }
    Ok(())
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
    fn of(context: &serde_json::Map<String, Value>, max_depth: usize) -> Self {
        let mut shape = Shape::default();
        if context.contains_key(ENTITY_ESCAPE) {
            shape.entities += 1;
        }
        // The context record itself is level 1.
        let mut pending: Vec<(Vec<&Value>, usize)> = vec![(context.values().collect(), 1)];
        while let Some((values, depth)) = pending.pop() {
            shape.depth = shape.depth.max(depth);
            if shape.depth > max_depth {
                break;
            }
            for value in values {
                match value {
                    Value::Object(record) => {
                        if record.contains_key(ENTITY_ESCAPE) {
                            shape.entities += 1;
                        }
                        pending.push((record.values().collect(), depth + 1));
                    }
                    Value::Array(list) => pending.push((list.iter().collect(), depth + 1)),
                    _ => {}
                }
            }
        }
        shape
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::decision::{Caller, CallerContext, Resource};

    fn object(value: Value) -> serde_json::Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn nested(levels: usize) -> Value {
        let mut inner = json!({"leaf": 1});
        for _ in 1..levels {
            inner = json!({ "next": inner });
        }
        inner
    }

    fn entity() -> Value {
        json!({"__entity": {"type": "Mandate::Resource", "id": "x"}})
    }

    fn request(token: usize, context: Value, wire_bytes: usize) -> Request {
        let caller = Caller {
            spiffe_id: spiffe::SpiffeId::new("spiffe://example.org/agents/a").unwrap(),
            thumbprint: None,
        };
        Request {
            token: (token > 0).then(|| "x".repeat(token)),
            context: CallerContext {
                fields: object(context),
                wire_bytes,
            },
            ..Request::new(caller, "read", Resource::default())
        }
    }

    #[test]
    fn depth_counts_records_and_lists() {
        assert_eq!(Shape::of(&object(nested(1)), 64).depth, 1);
        assert_eq!(Shape::of(&object(nested(5)), 64).depth, 5);
        // context > list > record > record
        let with_list = json!({"l": [nested(2)]});
        assert_eq!(Shape::of(&object(with_list), 64).depth, 4);
    }

    #[test]
    fn entity_references_are_counted_wherever_they_are() {
        let context = json!({"a": entity(), "b": [entity(), entity()]});
        assert_eq!(Shape::of(&object(context), 64).entities, 3);
    }

    #[test]
    fn each_limit_names_its_key() {
        let limits = Limits {
            max_context_depth: 3,
            max_context_entities: 1,
            max_token_bytes: 10,
            max_context_bytes: 40,
            ..Limits::default()
        };
        let message = |r: Request| check(&limits, &r).unwrap_err().to_string();
        assert!(message(request(11, json!({}), 0)).contains("limits.max_token_bytes"));
        assert!(message(request(0, nested(4), 0)).contains("limits.max_context_depth"));
        let two = json!({"a": entity(), "b": entity()});
        assert!(message(request(0, two, 0)).contains("limits.max_context_entities"));
        assert!(message(request(0, json!({}), 41)).contains("limits.max_context_bytes"));
        assert!(message(request(11, json!({}), 0)).starts_with("`token` is 11 bytes"));
        assert!(check(&limits, &request(10, json!({"a": entity()}), 40)).is_ok());
    }
}
