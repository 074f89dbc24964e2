//! The execution history as Cedar sees it (see [`crate::ledger`]):
//! `context.history` for the task's own calls and `context.history_root`
//! for its whole tree's, each a `Mandate::History` entity whose tags are
//! the allowed calls per action. Only decisions of an action some policy
//! reads it for get it (see [`crate::policy::reads_history`]).

use std::str::FromStr;
use std::sync::LazyLock;

use cedar_policy::{Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};

use crate::ledger::{History, Seen};

static HISTORY_TYPE: LazyLock<Result<EntityTypeName, String>> =
    LazyLock::new(|| EntityTypeName::from_str("Mandate::History").map_err(|e| e.to_string()));

/// A call's histories and the tasks they belong to.
#[derive(Debug, Clone, Copy)]
pub struct HistoryQuery<'a> {
    /// The task of the token.
    pub task_id: &'a str,
    /// The root of its tree.
    pub root_id: &'a str,
    /// Both histories, before this call.
    pub seen: &'a Seen,
}

/// What a history adds to a Cedar request: context pairs and entities.
pub(super) type HistoryContext = (Vec<(String, RestrictedExpression)>, Vec<Entity>);

/// The context pairs and the two entities of `query`.
pub(super) fn context(query: &HistoryQuery<'_>) -> Result<HistoryContext, String> {
    let type_name = LazyLock::force(&HISTORY_TYPE).clone()?;
    let uid = |id: String| EntityUid::from_type_name_and_id(type_name.clone(), EntityId::new(id));
    // Tasks and trees are told apart in the id: a root task has both.
    let task = uid(format!("task:{}", query.task_id));
    let tree = uid(format!("tree:{}", query.root_id));
    let pairs = vec![
        (
            "history".to_owned(),
            RestrictedExpression::new_entity_uid(task.clone()),
        ),
        (
            "history_root".to_owned(),
            RestrictedExpression::new_entity_uid(tree.clone()),
        ),
    ];
    let entities = vec![
        entity(task, &query.seen.task)?,
        entity(tree, &query.seen.tree)?,
    ];
    Ok((pairs, entities))
}

fn long(n: u64) -> RestrictedExpression {
    RestrictedExpression::new_long(i64::try_from(n).unwrap_or(i64::MAX))
}

fn entity(uid: EntityUid, history: &History) -> Result<Entity, String> {
    let string = |s: &String| RestrictedExpression::new_string(s.clone());
    let mut recent = Vec::with_capacity(history.last_actions.len());
    // `ago` 1 is the last call: Cedar has sets, not lists.
    for (ago, action) in history.last_actions.iter().rev().enumerate() {
        recent.push(
            RestrictedExpression::new_record([
                ("ago".to_owned(), long(ago as u64 + 1)),
                ("action".to_owned(), string(action)),
            ])
            .map_err(|e| e.to_string())?,
        );
    }
    let attrs = [
        ("denials".to_owned(), long(history.denials)),
        (
            "sensitivity_read".to_owned(),
            RestrictedExpression::new_long(history.sensitivity_read),
        ),
        (
            "labels_read".to_owned(),
            RestrictedExpression::new_set(history.labels_read.iter().map(string)),
        ),
        (
            "last_actions".to_owned(),
            RestrictedExpression::new_set(recent),
        ),
    ];
    let tags = history
        .calls
        .iter()
        .map(|(action, n)| (action.clone(), long(*n)));
    Entity::new_with_tags(uid, attrs, [], tags).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_call_is_one_ago() {
        let mut history = History::default();
        history
            .last_actions
            .extend(["read".to_owned(), "write".to_owned()]);
        history.calls.insert("read".to_owned(), 1);
        let seen = Seen {
            task: history.clone().into(),
            tree: history.into(),
        };
        let (_, entities) = context(&HistoryQuery {
            task_id: "t",
            root_id: "t",
            seen: &seen,
        })
        .unwrap();
        let task = &entities[0];
        assert_eq!(task.uid().to_string(), r#"Mandate::History::"task:t""#);
        let json = task.to_json_value().unwrap();
        assert_eq!(json["tags"]["read"], 1);
        let recent = json["attrs"]["last_actions"].as_array().unwrap();
        assert!(recent.contains(&serde_json::json!({ "ago": 1, "action": "write" })));
        assert!(recent.contains(&serde_json::json!({ "ago": 2, "action": "read" })));
    }
}
