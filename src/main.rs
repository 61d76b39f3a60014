//! The `minirt` binary: parse the command line, call the library, print,
//! and map errors to Docker's exit codes (125 runtime, 126, 127).

mod cli;

fn main() {
    let code = cli::main();
    std::process::exit(code);
}
