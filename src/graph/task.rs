//! A task: a unit of delegated work, and the state it is in.

use std::collections::BTreeSet;

use spiffe::SpiffeId;

/// A task id (a UUIDv7, so ids sort by creation time), shared by the task
/// and every index of the graph that names it.
pub type TaskId = std::sync::Arc<str>;

/// A SPIFFE ID as a task holds it: interned, so the million tasks of a
/// few agents share a few copies (a `SpiffeId` is two heap strings), and
/// freed when the last task naming it leaves memory.
pub type AgentId = internment::ArcIntern<SpiffeId>;

/// A task's action or resource ids: sorted, without duplicates, in one
/// slice. A live graph holds a million tasks; a `BTreeSet<String>` of two
/// names takes a 288-byte node for them, this takes 32 bytes and the
/// names. Serialized as a `BTreeSet` is (a sorted list), so scope digests
/// do not change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Names(Box<[Box<str>]>);

impl Names {
    /// Whether `name` is one of them.
    pub fn contains(&self, name: &str) -> bool {
        self.0.binary_search_by(|n| (**n).cmp(name)).is_ok()
    }

    /// The names, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|n| &**n)
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// As a set of owned strings, as specs and records hold them.
    pub fn to_set(&self) -> BTreeSet<String> {
        self.iter().map(str::to_owned).collect()
    }
}

impl From<BTreeSet<String>> for Names {
    fn from(set: BTreeSet<String>) -> Self {
        Self(set.into_iter().map(String::into_boxed_str).collect())
    }
}

impl<'a> IntoIterator for &'a Names {
    type Item = &'a str;
    type IntoIter = std::iter::Map<std::slice::Iter<'a, Box<str>>, fn(&'a Box<str>) -> &'a str>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|n| &**n)
    }
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// Work may proceed.
    Active,
    /// The delegatee finished it.
    Completed,
    /// Revoked, directly or through an ancestor.
    Revoked,
    /// Past its deadline.
    Expired,
}

impl TaskState {
    /// The name used in Cedar, the API and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Completed => "completed",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

/// What a delegator asks for: the scope of a new task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpec {
    /// The purpose, in the delegator's words.
    pub intent: String,
    /// The agent that will do the work.
    pub delegatee: SpiffeId,
    /// Action ids the delegatee may perform.
    pub actions: BTreeSet<String>,
    /// Resource ids; a resource is in scope when it or an ancestor is listed.
    pub scope: BTreeSet<String>,
    /// Highest resource sensitivity the delegatee may touch.
    pub max_sensitivity: i64,
    /// Deadline, Unix seconds.
    pub expires_at: i64,
}

/// New bounds for an existing task; its intent and delegatee never change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amendment {
    /// Action ids the delegatee may perform.
    pub actions: BTreeSet<String>,
    /// Resource ids in scope.
    pub scope: BTreeSet<String>,
    /// Highest resource sensitivity.
    pub max_sensitivity: i64,
    /// Deadline, Unix seconds.
    pub expires_at: i64,
}

/// A task in the live graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Its id.
    pub id: TaskId,
    /// The delegator's stated purpose.
    pub intent: String,
    /// Who delegated it: a workload acting for the originator (root tasks)
    /// or the delegatee of the parent task.
    pub delegator: AgentId,
    /// Who does the work.
    pub delegatee: AgentId,
    /// The human at the root of the chain.
    pub originator: String,
    /// The parent task; `None` for a root task.
    pub parent: Option<TaskId>,
    /// The root of the chain (itself for a root task).
    pub root: TaskId,
    /// 0 for a root task, parent's depth + 1 otherwise.
    pub depth: u32,
    /// Allowed action ids.
    pub actions: Names,
    /// Resource scope (ids; descendants included).
    pub scope: Names,
    /// Highest sensitivity allowed.
    pub max_sensitivity: i64,
    /// Created, Unix seconds.
    pub created_at: i64,
    /// Deadline, Unix seconds.
    pub expires_at: i64,
    /// Recorded state; expiry is computed, never written.
    pub state: TaskState,
    /// 0 when created, one more at each amendment of its scope.
    pub version: u32,
    /// [`Task::compute_scope_digest`], kept so decisions do not hash on
    /// every call; set by [`Task::new`] and by amendments.
    pub scope_digest: String,
}

impl Task {
    /// A new active task from `spec`: a root task when `parent` is `None`,
    /// else a child that inherits the parent's root and originator.
    pub fn new(
        id: TaskId,
        spec: TaskSpec,
        delegator: SpiffeId,
        originator: String,
        parent: Option<&Task>,
        now: i64,
    ) -> Self {
        let mut task = Self {
            root: parent.map_or_else(|| id.clone(), |p| p.root.clone()),
            id,
            intent: spec.intent,
            delegator: AgentId::new(delegator),
            delegatee: AgentId::new(spec.delegatee),
            originator: parent.map_or(originator, |p| p.originator.clone()),
            parent: parent.map(|p| p.id.clone()),
            depth: parent.map_or(0, |p| p.depth + 1),
            actions: spec.actions.into(),
            scope: spec.scope.into(),
            max_sensitivity: spec.max_sensitivity,
            created_at: now,
            expires_at: spec.expires_at,
            state: TaskState::Active,
            version: 0,
            scope_digest: String::new(),
        };
        task.scope_digest = task.compute_scope_digest();
        task
    }

    /// The task's scope as a spec, for checking it against a parent.
    pub fn spec(&self) -> TaskSpec {
        TaskSpec {
            intent: self.intent.clone(),
            delegatee: (*self.delegatee).clone(),
            actions: self.actions.to_set(),
            scope: self.scope.to_set(),
            max_sensitivity: self.max_sensitivity,
            expires_at: self.expires_at,
        }
    }

    /// A hash of what an approval was given for: the task (id and
    /// version) and its actions, scope, max sensitivity and deadline. An
    /// approval counts only while it is unchanged (DESIGN §3.5); with the
    /// version in it, changing the bounds and changing them back still
    /// makes earlier approvals stale. `sha256:` and hex over the canonical
    /// JSON (RFC 8785) of those fields.
    pub fn compute_scope_digest(&self) -> String {
        let document = serde_json::json!({
            "task": self.id,
            "version": self.version,
            "actions": self.actions,
            "scope": self.scope,
            "max_sensitivity": self.max_sensitivity,
            "expires_at": self.expires_at,
        });
        // Canonicalising strings, sets and integers does not fail; if it
        // ever did, a digest no other task shares keeps approvals from
        // matching anything else.
        let canonical = serde_json_canonicalizer::to_vec(&document)
            .unwrap_or_else(|_| uuid::Uuid::now_v7().to_string().into_bytes());
        let digest = <sha2::Sha256 as sha2::Digest>::digest(&canonical);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    /// The state at `now`: an active task past its deadline is expired.
    pub fn state_at(&self, now: i64) -> TaskState {
        if self.state == TaskState::Active && now >= self.expires_at {
            TaskState::Expired
        } else {
            self.state
        }
    }
}
