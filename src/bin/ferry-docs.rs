fn main() {
    ferry::cli::docs::main()
}
