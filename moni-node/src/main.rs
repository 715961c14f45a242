fn main() -> std::process::ExitCode {
    // Before anything else runs: the process may start over.
    moni_node::sys::reexec_with_huge_pages();
    moni_node::sys::keep_freed_memory();
    moni_node::cli::main()
}
