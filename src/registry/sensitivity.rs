//! The sensitivity scale: named levels, lowest first, numbered from 0.

use serde::{Deserialize, Serialize};

/// The default scale (DESIGN §2).
pub const DEFAULT_LEVELS: &[&str] = &["public", "internal", "confidential", "restricted"];

/// Named sensitivity levels; a level's number is its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensitivityScale {
    names: Vec<String>,
}

impl Default for SensitivityScale {
    fn default() -> Self {
        Self {
            names: DEFAULT_LEVELS.iter().map(|n| (*n).to_owned()).collect(),
        }
    }
}

/// A level as written in a catalog or a request: a name or a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Level {
    /// A number on the scale.
    Number(i64),
    /// A level name, such as `confidential`.
    Name(String),
}

impl SensitivityScale {
    /// A scale with these names, lowest first; at least one, no repeats,
    /// none that reads as a number.
    pub fn new(names: Vec<String>) -> Result<Self, String> {
        if names.is_empty() {
            return Err("the sensitivity scale needs at least one level".to_owned());
        }
        for (i, name) in names.iter().enumerate() {
            if name.is_empty() || name.parse::<i64>().is_ok() {
                return Err(format!(
                    "sensitivity level `{name}` must be a name, not empty or a number"
                ));
            }
            if names.iter().take(i).any(|n| n == name) {
                return Err(format!("sensitivity level `{name}` is listed twice"));
            }
        }
        Ok(Self { names })
    }

    /// The highest level's number; what an unknown sensitivity counts as.
    pub fn max(&self) -> i64 {
        i64::try_from(self.names.len()).map_or(i64::MAX, |n| n - 1)
    }

    /// The level names, lowest first.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The number of a level given by name or number.
    pub fn resolve(&self, level: &Level) -> Result<i64, String> {
        match level {
            Level::Number(n) if (0..=self.max()).contains(n) => Ok(*n),
            Level::Number(n) => Err(format!(
                "sensitivity {n} is outside the scale 0..={} ({})",
                self.max(),
                self.names.join(", ")
            )),
            Level::Name(name) => self.parse(name),
        }
    }

    /// A level name or a decimal number.
    pub fn parse(&self, text: &str) -> Result<i64, String> {
        if let Ok(n) = text.parse::<i64>() {
            return self.resolve(&Level::Number(n));
        }
        self.names
            .iter()
            .position(|n| n == text)
            .and_then(|i| i64::try_from(i).ok())
            .ok_or_else(|| {
                format!(
                    "sensitivity `{text}` is not on the scale ({})",
                    self.names.join(", ")
                )
            })
    }

    /// The name of a level number, if it is on the scale.
    pub fn name_of(&self, level: i64) -> Option<&str> {
        usize::try_from(level)
            .ok()
            .and_then(|i| self.names.get(i))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_resolve_by_name_or_number_within_the_scale() {
        let scale = SensitivityScale::default();
        assert_eq!(scale.parse("confidential"), Ok(2));
        assert_eq!(scale.parse("3"), Ok(3));
        assert_eq!(scale.max(), 3);
        assert_eq!(scale.name_of(1), Some("internal"));
        assert!(scale.parse("4").unwrap_err().contains("outside the scale"));
        assert!(
            scale
                .parse("secret")
                .unwrap_err()
                .contains("not on the scale")
        );
        assert!(SensitivityScale::new(vec!["a".into(), "a".into()]).is_err());
        assert!(SensitivityScale::new(vec!["1".into()]).is_err());
        assert!(SensitivityScale::new(vec![]).is_err());
    }
}
