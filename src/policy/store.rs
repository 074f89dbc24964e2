//! The live policy set: swapped whole on reload, read without locks.
//!
//! A reload builds and validates a new [`PolicyEngine`] from the files;
//! only a valid set is swapped in. A failed reload keeps the previous set
//! and is remembered for status reports.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::{PolicyEngine, PolicyError, Sources};

/// Where the policy set is read from.
#[derive(Debug, Clone)]
pub struct PolicyPaths {
    /// The policies directory.
    pub policies: PathBuf,
    /// The schema file.
    pub schema: PathBuf,
    /// What the sensitivity guard counts a resource without a level as.
    pub unknown_sensitivity: i64,
    /// Cedar level-based validation at this level, when set.
    pub validation_level: Option<u32>,
}

/// A reload that was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadFailure {
    /// When, Unix seconds.
    pub at: i64,
    /// The problems, one a line (`file:line:column: message`).
    pub problems: Vec<String>,
}

/// What [`PolicyStore::status`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyStatus {
    /// Hash of the set in use.
    pub hash: Arc<str>,
    /// Number of policies in use, built-in guards included.
    pub policy_count: usize,
    /// When the set in use was loaded, Unix seconds.
    pub loaded_at: i64,
    /// The last failed reload, if it came after the last good one.
    pub last_error: Option<ReloadFailure>,
    /// Reloads that swapped in a new set.
    pub reloads: u64,
    /// Reloads that were refused.
    pub failed_reloads: u64,
}

#[derive(Debug)]
struct Counters {
    loaded_at: i64,
    last_error: Option<ReloadFailure>,
    reloads: u64,
    failed_reloads: u64,
}

/// The policy set in use and how it got there.
#[derive(Debug)]
pub struct PolicyStore {
    current: ArcSwap<PolicyEngine>,
    paths: Option<PolicyPaths>,
    counters: Mutex<Counters>,
    /// One reload at a time.
    reloading: Mutex<()>,
}

impl PolicyStore {
    /// A store serving `engine`, reloadable from `paths` when given.
    pub fn new(engine: PolicyEngine, paths: Option<PolicyPaths>, now: i64) -> Self {
        Self {
            current: ArcSwap::from_pointee(engine),
            paths,
            counters: Mutex::new(Counters {
                loaded_at: now,
                last_error: None,
                reloads: 0,
                failed_reloads: 0,
            }),
            reloading: Mutex::new(()),
        }
    }

    /// The set in use. Cheap; never waits for a reload.
    pub fn current(&self) -> Arc<PolicyEngine> {
        self.current.load_full()
    }

    /// Where the set is read from, if it is reloadable.
    pub fn paths(&self) -> Option<&PolicyPaths> {
        self.paths.as_ref()
    }

    /// Reads the files again. `None` when they are the set in use (same
    /// hash), otherwise the new engine, not yet in use: pass it to
    /// [`PolicyStore::install`] once whatever depends on it agrees.
    pub fn read(&self) -> Result<Option<PolicyEngine>, Vec<String>> {
        let Some(paths) = &self.paths else {
            return Err(vec!["this policy set was not loaded from files".to_owned()]);
        };
        let sources = Sources::read(&paths.policies, &paths.schema).map_err(problems)?;
        if *sources.hash(paths.unknown_sensitivity) == **self.current().hash() {
            return Ok(None);
        }
        PolicyEngine::from_sources_at_level(
            &sources,
            paths.unknown_sensitivity,
            paths.validation_level,
        )
        .map(Some)
        .map_err(problems)
    }

    /// Serialises reloads; hold the guard across read, checks and install.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.reloading.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts `engine` in use; readers see it from their next load on.
    pub fn install(&self, engine: PolicyEngine, now: i64) {
        self.current.store(Arc::new(engine));
        let mut counters = self.counters();
        counters.loaded_at = now;
        counters.last_error = None;
        counters.reloads += 1;
    }

    /// The files are the set in use again: an earlier refusal is over.
    pub fn clear_failure(&self) {
        self.counters().last_error = None;
    }

    /// Records a refused reload; the set in use stays.
    pub fn record_failure(&self, problems: Vec<String>, now: i64) {
        let mut counters = self.counters();
        counters.last_error = Some(ReloadFailure { at: now, problems });
        counters.failed_reloads += 1;
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The set in use and the last reload's outcome.
    pub fn status(&self) -> PolicyStatus {
        let engine = self.current();
        let counters = self.counters();
        PolicyStatus {
            hash: engine.hash().clone(),
            policy_count: engine.len(),
            loaded_at: counters.loaded_at,
            last_error: counters.last_error.clone(),
            reloads: counters.reloads,
            failed_reloads: counters.failed_reloads,
        }
    }
}

/// A load error as lines for humans.
pub fn problems(error: PolicyError) -> Vec<String> {
    match error {
        PolicyError::Invalid { problems } => problems.iter().map(ToString::to_string).collect(),
        other => vec![other.to_string()],
    }
}

/// A fingerprint of the files a reload would read, to notice changes:
/// each file's path and the SHA-256 of its content (sizes and times miss a
/// same-size save within one timestamp tick).
pub fn fingerprint(paths: &PolicyPaths) -> Vec<(PathBuf, [u8; 32])> {
    use sha2::{Digest, Sha256};
    let mut files = super::load::cedar_files(&paths.policies).unwrap_or_default();
    files.push(paths.schema.clone());
    files
        .into_iter()
        .map(|path| {
            let digest: [u8; 32] = std::fs::read(&path)
                .map(|bytes| Sha256::digest(&bytes).into())
                .unwrap_or_default();
            (path, digest)
        })
        .collect()
}
