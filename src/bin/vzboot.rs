fn main() {
    ferry::cli::vzboot::main()
}
