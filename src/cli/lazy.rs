//! Subcommands defined only when the command line names them.
//!
//! clap's derive builds every subcommand with all its arguments before it
//! parses, then drops the lot. For minirt's ~50 subcommands, side by side
//! (`perf stat`): `minirt version` took 1.90 ms of CPU with the whole tree
//! and 0.91 ms without, an `exec` about 2 ms more (the pages the tree
//! touched are mapped, copied at fork and unmapped at exit). `Lazy<T>` hands `T`'s
//! definition to `Command::defer`, which clap runs when it builds that
//! subcommand: when parsing reaches it (`--help` included). Completions and
//! man pages walk the whole tree: they ask for it with [`eager`] first.

use clap::{ArgMatches, Args, Command, FromArgMatches, Subcommand};
use std::cell::Cell;

thread_local! {
    static EAGER: Cell<bool> = const { Cell::new(false) };
}

/// From now on, `Cli::command()` on this thread defines every subcommand at
/// once, as clap's derive does (for completions and man pages).
pub fn eager() {
    EAGER.with(|e| e.set(true));
}

/// `define(cmd)` now, or when clap builds `cmd`.
fn later(cmd: Command, define: fn(Command) -> Command) -> Command {
    if EAGER.with(Cell::get) {
        define(cmd)
    } else {
        cmd.defer(define)
    }
}

/// `T`'s arguments (`T: Args`) or subcommands (`T: Subcommand`), added to
/// its command only when clap builds that command.
#[derive(Debug)]
pub struct Lazy<T>(pub T);

impl<T: FromArgMatches> FromArgMatches for Lazy<T> {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches(m).map(Lazy)
    }

    fn from_arg_matches_mut(m: &mut ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches_mut(m).map(Lazy)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(m)
    }

    fn update_from_arg_matches_mut(&mut self, m: &mut ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches_mut(m)
    }
}

impl<T: Args> Args for Lazy<T> {
    fn group_id() -> Option<clap::Id> {
        T::group_id()
    }

    fn augment_args(cmd: Command) -> Command {
        later(cmd, T::augment_args)
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        later(cmd, T::augment_args_for_update)
    }
}

impl<T: Subcommand> Subcommand for Lazy<T> {
    fn augment_subcommands(cmd: Command) -> Command {
        later(cmd, T::augment_subcommands)
    }

    fn augment_subcommands_for_update(cmd: Command) -> Command {
        later(cmd, T::augment_subcommands_for_update)
    }

    fn has_subcommand(name: &str) -> bool {
        T::has_subcommand(name)
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::Cli;
    use clap::CommandFactory;

    fn has_arg(cmd: &clap::Command, id: &str) -> bool {
        cmd.get_arguments().any(|a| a.get_id() == id)
    }

    #[test]
    fn a_subcommand_is_defined_when_built_and_at_once_when_eager() {
        let lazy = Cli::command();
        let run = lazy.find_subcommand("run").unwrap();
        assert!(!has_arg(run, "publish"), "run's options before it is built");
        let mut built = run.clone();
        built.build();
        assert!(has_arg(&built, "publish"));
        // The nested groups too: `network`'s subcommands come with it.
        let mut network = lazy.find_subcommand("network").unwrap().clone();
        assert!(network.find_subcommand("create").is_none());
        network.build();
        assert!(network.find_subcommand("create").is_some());

        std::thread::spawn(|| {
            super::eager();
            let full = Cli::command();
            assert!(has_arg(full.find_subcommand("run").unwrap(), "publish"));
            let network = full.find_subcommand("network").unwrap();
            assert!(network.find_subcommand("create").is_some());
        })
        .join()
        .unwrap();
        // Only that thread asked for the whole tree.
        assert!(!has_arg(
            Cli::command().find_subcommand("run").unwrap(),
            "publish"
        ));
    }
}
