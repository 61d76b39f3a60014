//! Rollback and teardown, one way for every layer.
//!
//! - [`Undo`]: a stack of undo steps. Every step that creates something
//!   pushes the step that removes it; on failure (an explicit `rollback`, or
//!   a drop without `commit`) they run newest first, past failures.
//! - [`ErrorList`]: the errors of a teardown that keeps going: each failing
//!   step is recorded with what it was doing, and the next step still runs
//!   (netavark's `NetavarkErrorList` is the model).

use std::fmt;

type Step = Box<dyn FnOnce() -> Result<(), String>>;

/// Undo steps of what a command made so far.
#[derive(Default)]
pub struct Undo {
    steps: Vec<(String, Step)>,
}

impl Undo {
    pub fn new() -> Undo {
        Undo::default()
    }

    /// Registers how to undo the step just done; `what` names it in errors.
    pub fn push(
        &mut self,
        what: impl Into<String>,
        f: impl FnOnce() -> Result<(), String> + 'static,
    ) {
        self.steps.push((what.into(), Box::new(f)));
    }

    /// Everything succeeded: forget the undo steps.
    pub(crate) fn commit(mut self) {
        self.steps.clear();
    }

    /// Runs every step, newest first, past failures; returns the failures
    /// ("undo WHAT: error").
    pub(crate) fn rollback(&mut self) -> ErrorList {
        let mut errors = ErrorList::new();
        while let Some((what, f)) = self.steps.pop() {
            tracing::debug!("undo: {what}");
            errors.check(format_args!("undo {what}"), f());
        }
        errors
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        self.rollback().warn_all();
    }
}

/// Errors collected by a teardown that keeps going past them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ErrorList(Vec<String>);

impl ErrorList {
    pub fn new() -> ErrorList {
        ErrorList::default()
    }

    /// Records the error of `result`, if any, as "CONTEXT: error".
    pub fn check<E: fmt::Display>(&mut self, context: impl fmt::Display, result: Result<(), E>) {
        if let Err(e) = result {
            self.0.push(format!("{context}: {e}"));
        }
    }

    /// Records `error` as it is.
    pub fn push(&mut self, error: impl fmt::Display) {
        self.0.push(error.to_string());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Logs each error as a warning (a teardown's errors do not fail the
    /// command that tore down).
    pub(crate) fn warn_all(&self) {
        for e in &self.0 {
            tracing::warn!("{e}");
        }
    }

    /// Ok when nothing failed, else the list as one error.
    pub fn into_result(self) -> Result<(), ErrorList> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ErrorList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("; "))
    }
}

impl std::error::Error for ErrorList {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    #[test]
    fn drop_runs_steps_newest_first_past_failures_and_commit_runs_none() {
        let log = Rc::new(RefCell::new(vec![]));
        {
            let mut u = Undo::new();
            for i in 0..3 {
                let l = log.clone();
                u.push(format!("step {i}"), move || {
                    l.borrow_mut().push(i);
                    if i == 1 {
                        Err("boom".into())
                    } else {
                        Ok(())
                    }
                });
            }
        }
        assert_eq!(*log.borrow(), vec![2, 1, 0]);
        let l = log.clone();
        let mut u = Undo::new();
        u.push("x", move || {
            l.borrow_mut().push(9);
            Ok(())
        });
        u.commit();
        assert_eq!(*log.borrow(), vec![2, 1, 0]);
        let mut u = Undo::new();
        u.push("y", || Err("bad".into()));
        u.push("z", || Ok(()));
        let errors = u.rollback();
        assert_eq!(errors.iter().collect::<Vec<_>>(), ["undo y: bad"]);
        assert!(u.rollback().is_empty(), "each step runs once");
    }

    #[test]
    fn error_list_keeps_every_failure_in_order() {
        let mut errors = ErrorList::new();
        errors.check("removing cgroup of c1", Err::<(), _>("busy"));
        errors.check("network teardown of c1", Ok::<(), String>(()));
        errors.push("unmount failed");
        assert_eq!(
            errors.iter().collect::<Vec<_>>(),
            ["removing cgroup of c1: busy", "unmount failed"]
        );
        assert_eq!(
            errors.clone().into_result().unwrap_err().to_string(),
            "removing cgroup of c1: busy; unmount failed"
        );
        assert_eq!(ErrorList::new().into_result(), Ok(()));
    }
}
