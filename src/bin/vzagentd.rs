fn main() {
    ferry::cli::vzagentd::main()
}
