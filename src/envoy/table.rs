//! The route map in use: swapped whole on reload, read without locks. A
//! reload that fails keeps the previous map and is remembered for
//! `/readyz`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use super::RouteMap;
use crate::policy::PolicyEngine;

/// The route map in use and where it is read from.
#[derive(Debug)]
pub struct RouteTable {
    current: ArcSwap<RouteMap>,
    path: Option<PathBuf>,
    state: Mutex<TableState>,
}

#[derive(Debug, Default)]
struct TableState {
    /// SHA-256 of the file text in use.
    hash: Option<[u8; 32]>,
    /// The problems of the last refused reload, if it came after the last
    /// good one.
    last_error: Option<Vec<String>>,
}

impl RouteTable {
    /// An empty table (every request is `no-route`), not reloadable.
    pub fn empty() -> Self {
        Self {
            current: ArcSwap::from_pointee(RouteMap::default()),
            path: None,
            state: Mutex::default(),
        }
    }

    /// Loads `path` and checks its names against `engine`'s schema.
    pub fn load(path: &Path, engine: &PolicyEngine) -> Result<Self, Vec<String>> {
        let table = Self {
            current: ArcSwap::from_pointee(RouteMap::default()),
            path: Some(path.to_owned()),
            state: Mutex::default(),
        };
        table.reload(engine)?;
        Ok(table)
    }

    /// The map in use.
    pub fn current(&self) -> Arc<RouteMap> {
        self.current.load_full()
    }

    /// The file, if the table has one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The problems of the last refused reload, while no good one followed.
    pub fn last_error(&self) -> Option<Vec<String>> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_error
            .clone()
    }

    /// Reads the file again; swaps the map in when it changed and is
    /// valid. `Ok(false)` when the file is unchanged or there is none.
    pub fn reload(&self, engine: &PolicyEngine) -> Result<bool, Vec<String>> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let outcome = std::fs::read_to_string(path)
            .map_err(|e| vec![format!("route map `{}`: {e}", path.display())])
            .and_then(|text| {
                let hash: [u8; 32] = Sha256::digest(text.as_bytes()).into();
                if state.hash == Some(hash) {
                    return Ok(None);
                }
                let map = RouteMap::parse(&text).map_err(|problems| {
                    problems
                        .into_iter()
                        .map(|p| format!("route map `{}`: {p}", path.display()))
                        .collect::<Vec<_>>()
                })?;
                let unknown = map.check_names(engine);
                if !unknown.is_empty() {
                    return Err(unknown
                        .into_iter()
                        .map(|p| format!("route map `{}`: {p}", path.display()))
                        .collect());
                }
                Ok(Some((map, hash)))
            });
        match outcome {
            Ok(None) => {
                state.last_error = None;
                Ok(false)
            }
            Ok(Some((map, hash))) => {
                tracing::info!(routes = map.routes().len(), file = %path.display(), "route map loaded");
                self.current.store(Arc::new(map));
                state.hash = Some(hash);
                state.last_error = None;
                Ok(true)
            }
            Err(problems) => {
                for problem in &problems {
                    tracing::warn!("route map reload refused: {problem}");
                }
                state.last_error = Some(problems.clone());
                Err(problems)
            }
        }
    }
}
