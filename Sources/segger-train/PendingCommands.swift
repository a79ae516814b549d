import ArgumentParser

struct Synth: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate a synthetic tile directory.")
    func run() throws { throw ValidationError("synth: pending merge") }
}

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Convert segger .pt tiles to safetensors tiles.")
    func run() throws { throw ValidationError("convert: pending merge") }
}

