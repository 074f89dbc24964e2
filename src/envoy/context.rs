//! `context.http`: the request attributes policies see, as a record of the
//! schema's `Mandate::HttpRequest` whose named fields (headers, query
//! parameters, route captures) are `Mandate::HttpFields` entities with
//! tags, Cedar's way of holding a map.

use std::str::FromStr;

use cedar_policy::{Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};

use super::request::HttpAttributes;

/// The Cedar type of the named-field entities.
const FIELDS_TYPE: &str = "Mandate::HttpFields";

/// The `http` context pair and the entities it refers to.
pub fn http_context(
    http: &HttpAttributes,
    route: &str,
    params: &[(String, String)],
) -> Result<((String, RestrictedExpression), Vec<Entity>), String> {
    let type_name = EntityTypeName::from_str(FIELDS_TYPE).map_err(|e| e.to_string())?;
    let fields = |id: &str, pairs: &[(String, String)]| {
        let uid = EntityUid::from_type_name_and_id(type_name.clone(), EntityId::new(id));
        let tags = pairs
            .iter()
            .map(|(k, v)| (k.clone(), RestrictedExpression::new_string(v.clone())));
        Entity::new_with_tags(uid.clone(), [], [], tags)
            .map(|entity| (uid, entity))
            .map_err(|e| e.to_string())
    };
    let (headers_uid, headers) = fields("headers", &http.headers)?;
    let (query_uid, query) = fields("query", &http.query)?;
    let (params_uid, params) = fields("params", params)?;
    let string = |s: &str| RestrictedExpression::new_string(s.to_owned());
    let record = RestrictedExpression::new_record([
        ("method".to_owned(), string(&http.method)),
        ("path".to_owned(), string(&http.path)),
        ("host".to_owned(), string(&http.host)),
        ("route".to_owned(), string(route)),
        (
            "headers".to_owned(),
            RestrictedExpression::new_entity_uid(headers_uid),
        ),
        (
            "query".to_owned(),
            RestrictedExpression::new_entity_uid(query_uid),
        ),
        (
            "params".to_owned(),
            RestrictedExpression::new_entity_uid(params_uid),
        ),
    ])
    .map_err(|e| e.to_string())?;
    Ok((("http".to_owned(), record), vec![headers, query, params]))
}
