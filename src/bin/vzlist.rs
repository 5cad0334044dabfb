fn main() {
    ferry::cli::vzlist::main()
}
