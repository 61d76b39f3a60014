//! The `minirt` binary: parse the command line, call the library, print,
//! and map errors to Docker's exit codes (125 runtime, 126, 127).

mod cli;

fn main() {
    // A detached container's waiting monitor: nothing else runs, so it stays small.
    if let Some(code) = minirt::container::waiter::run_if_waiter() {
        std::process::exit(code);
    }
    let code = cli::main();
    std::process::exit(code);
}
