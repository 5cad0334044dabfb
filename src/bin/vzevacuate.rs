fn main() {
    ferry::cli::vzevacuate::main()
}
