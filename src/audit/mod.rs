//! Decision records: what was decided, for whom, by which policies, and
//! the Cedar request itself so the decision can be replayed against another
//! policy set (`mandate policy replay`). Written off the decision path.

mod log;
mod record;

pub use log::{DecisionLog, DecisionLogWriter};
pub use record::{CedarRequest, DecisionRecord, RECORD_VERSION};
