import ArgumentParser

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Convert segger .pt tiles to safetensors tiles.")
    func run() throws { throw ValidationError("convert: pending merge") }
}

