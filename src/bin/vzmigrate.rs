fn main() {
    ferry::cli::vzmigrate::main()
}
