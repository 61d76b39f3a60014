//! A stack of undo steps: every effect that creates something pushes the step
//! that removes it; on failure (or drop without commit) they run newest first.

type Step = Box<dyn FnOnce() -> Result<(), String>>;

#[derive(Default)]
pub struct Undo {
    steps: Vec<(String, Step)>,
}

impl Undo {
    pub fn new() -> Undo {
        Undo::default()
    }

    /// Registers how to undo the step just done; `what` names it in warnings.
    pub fn push(
        &mut self,
        what: impl Into<String>,
        f: impl FnOnce() -> Result<(), String> + 'static,
    ) {
        self.steps.push((what.into(), Box::new(f)));
    }

    /// Everything succeeded: forget the undo steps.
    pub fn commit(mut self) {
        self.steps.clear();
    }

    /// Runs every step, newest first, past failures; returns the failures.
    pub fn rollback(&mut self) -> Vec<String> {
        let mut errors = vec![];
        while let Some((what, f)) = self.steps.pop() {
            if let Err(e) = f() {
                errors.push(format!("undo {what}: {e}"));
            }
        }
        errors
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        for e in self.rollback() {
            tracing::warn!("{e}");
        }
    }
}

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
        assert_eq!(u.rollback(), vec!["undo y: bad".to_string()]);
    }
}
