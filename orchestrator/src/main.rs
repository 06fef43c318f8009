fn main() {
    std::process::exit(kdelta::cli::main());
}
