fn main() {
    ferry::cli::vzpkg::main()
}
