//! The `minirt` binary: parse the command line, call the library, print,
//! and map errors to Docker's exit codes (125 runtime, 126, 127).

mod cli;

fn main() {
    // A detached container's waiting monitor: nothing else runs, so it stays small.
    if let Some(code) = minirt::container::waiter::run_if_waiter() {
        std::process::exit(code);
    }
    // runc's command line (Podman, containerd): see cli::oci::oci_argv.
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let oci = cli::oci::oci_argv(&argv, |root, id| {
        minirt::runtime::container::Runtime::new(root).exists(id)
    });
    if let Some(argv) = oci {
        std::process::exit(cli::oci::main(argv));
    }
    let code = cli::main();
    std::process::exit(code);
}
