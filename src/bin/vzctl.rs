fn main() {
    ferry::cli::vzctl::main()
}
