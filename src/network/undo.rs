//! The network layer's undo stack is the crate's one rollback type
//! (`crate::undo::Undo`): every effect that creates something pushes the step
//! that removes it; on failure (or drop without commit) they run newest first.

pub use crate::undo::Undo;
