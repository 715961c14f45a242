//! What `/healthz` answers: the node is healthy while every capture source
//! is up and its Parquet writes succeed; otherwise `503` with one line per
//! problem (`source eth1: interface disappeared`, `output: OUT/flows/...:
//! No space left on device`), so a probe names what is wrong, and the
//! answer turns `200` again once it is mended (a source reopened, a disk
//! with room again).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

/// The node's current problems, by what has them.
#[derive(Debug, Default)]
pub struct Health {
    problems: Mutex<BTreeMap<String, String>>,
}

impl Health {
    /// Sets (`Some`) or clears (`None`) the problem of `what` (`source
    /// NAME`, `output`).
    pub fn set(&self, what: &str, problem: Option<String>) {
        let mut p = self.problems.lock().unwrap_or_else(PoisonError::into_inner);
        match problem {
            Some(text) => {
                p.insert(what.to_string(), text);
            }
            None => {
                p.remove(what);
            }
        }
    }

    /// `None` when healthy, else one line per problem.
    pub fn report(&self) -> Option<String> {
        let p = self.problems.lock().unwrap_or_else(PoisonError::into_inner);
        (!p.is_empty()).then(|| p.iter().map(|(w, t)| format!("{w}: {t}\n")).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_listed_until_mended() {
        let h = Health::default();
        assert_eq!(h.report(), None);
        h.set("source eth1", Some("interface disappeared".into()));
        h.set("output", Some("No space left on device".into()));
        assert_eq!(
            h.report().as_deref(),
            Some("output: No space left on device\nsource eth1: interface disappeared\n")
        );
        h.set("output", None);
        h.set("source eth1", None);
        assert_eq!(h.report(), None);
    }
}
