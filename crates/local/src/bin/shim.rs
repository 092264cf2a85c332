//! `jobforge-shim RUN_DIR`: the run supervisor, as its own small program (the `jobforge`
//! binary offers the same as `jobforge shim`).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(jobforge_local::shim::main(&args));
}
