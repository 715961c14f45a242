fn main() -> std::process::ExitCode {
    moni_node::cli::main()
}
