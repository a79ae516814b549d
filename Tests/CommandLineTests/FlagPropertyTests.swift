// Every flag of every subcommand, driven through extreme values (0, -1, huge, 1e30, inf, NaN, empty,
// wrong type) by the real binary under an address-space limit: each run either succeeds (for the values
// the table lists as valid) or ends with exit code 1–127 and a message naming the flag — never a signal,
// never an allocation beyond the limit (an allocation failure would end in a signal).
//
// The table is data: a new subcommand (e.g. `predict`) is one more `CommandSpec`.
import Foundation
import TestSupport
import XCTest

/// A subcommand under test: a quick valid invocation and the flags to drive.
struct CommandSpec {
    var name: String
    /// Arguments of a valid, quick run. Placeholders, filled per case: {tiles} (a tile directory),
    /// {ckpt} (a checkpoint), {weights} (a weights file), {run} (a trained run's root), {pt} (a directory
    /// of segger .pt tiles), {new} (a path that does not exist yet, in the case's own directory).
    var base: [String]
    var flags: [FlagSpec]
}

/// One flag and which of the extreme values it accepts (a run with any other must be refused).
struct FlagSpec {
    var flag: String
    var accepts: Set<String> = []
    /// A boolean flag: run once with it present.
    var boolean = false

    static func value(_ flag: String, accepts: Set<String> = []) -> FlagSpec { FlagSpec(flag: flag, accepts: accepts) }
    static func boolean(_ flag: String) -> FlagSpec { FlagSpec(flag: flag, boolean: true) }
}

enum FlagTable {
    static let extremes = ["0", "-1", "9223372036854775807", "1e30", "inf", "nan", "", "abc"]
    /// Values a new output path may take (a directory or file of that name is created in the case's directory).
    static let anyName: Set<String> = ["0", "9223372036854775807", "1e30", "inf", "nan", "abc"]
    static let addressSpaceKB = 1_500_000

    static let modelFlags: [FlagSpec] = [
        .value("--num_tx_tokens"), .value("--init_emb"), .value("--hidden_channels"), .value("--out_channels"),
        .value("--heads"), .value("--mid_layers", accepts: ["0"]), .value("--aggr"),
        .boolean("--no-residual"), .boolean("--no-l2-normalize"),
    ]
    static let optimizerFlags: [FlagSpec] = [
        .value("--optimizer"), .value("--lr", accepts: ["9223372036854775807", "1e30"]),
        .value("--weight_decay", accepts: ["0", "9223372036854775807", "1e30"]),
        .value("--grad_clip", accepts: ["0", "9223372036854775807", "1e30"]),
    ]
    static let small = ["--num_tx_tokens", "500", "--init_emb", "4", "--hidden_channels", "4", "--out_channels", "4",
                        "--heads", "2", "--mid_layers", "1"]

    static let commands: [CommandSpec] = [
        CommandSpec(name: "train",
                    base: ["train", "--train_dir", "{tiles}", "--default_root_dir", "{new}", "--epochs", "1", "--max_steps", "1"] + small,
                    flags: [
                        .value("--train_dir"), .value("--val_dir"), .value("--batch_size_train"), .value("--batch_size_val"),
                        .value("--epochs"), .value("--default_root_dir", accepts: anyName), .value("--precision"),
                        .value("--grad_compression"), .value("--loss_reduction"), .value("--bucket_cap_mb"),
                        .value("--accelerator"), .value("--strategy"), .value("--devices"),
                        .value("--seed", accepts: ["0", "9223372036854775807"]), .value("--init_weights"), .value("--resume"),
                        .boolean("--drop_last"), .boolean("--skip_bad_tiles"), .value("--save_top_k", accepts: ["0", "-1"]),
                        .value("--log_every_n_steps"), .value("--max_steps", accepts: ["-1"]), .value("--num_threads"),
                        .value("--progress_seconds", accepts: ["0"]),
                    ] + modelFlags + optimizerFlags),
        CommandSpec(name: "eval", base: ["eval", "--tiles", "{tiles}", "--checkpoint", "{ckpt}"],
                    flags: [.value("--tiles"), .value("--checkpoint"), .value("--num_threads")]),
        CommandSpec(name: "convert", base: ["convert", "--from", "{pt}", "--to", "{new}"],
                    flags: [.value("--from"), .value("--to", accepts: anyName)]),
        CommandSpec(name: "synth", base: ["synth", "--out", "{new}", "--tiles", "1", "--tx_per_tile", "100"],
                    flags: [.value("--out", accepts: anyName), .value("--tiles"), .value("--tx_per_tile"),
                            .value("--seed", accepts: ["0", "9223372036854775807"]), .value("--num_tx_tokens"), .value("--k"),
                            .value("--embedding_dim"), .value("--overlap_margin", accepts: ["0"]), .value("--tx_per_cell"),
                            .value("--size_spread")]),
        CommandSpec(name: "dump-step",
                    base: ["dump-step", "--tiles", "{tiles}", "--batch", "1", "--weights", "{weights}", "--out", "{new}"] + small,
                    flags: [.value("--tiles"), .value("--batch"), .value("--weights"), .value("--out", accepts: anyName)]
                        + modelFlags + optimizerFlags),
        CommandSpec(name: "digest", base: ["digest", "--checkpoint", "{ckpt}"], flags: [.value("--checkpoint")]),
        CommandSpec(name: "plot", base: ["plot", "{run}", "--out", "{new}"], flags: [.value("--out", accepts: anyName)]),
        CommandSpec(name: "predict",
                    base: ["predict", "--tiles", "{tiles}", "--checkpoint", "{ckpt}", "--out", "{new}", "--format", "csv", "--min_bd", "1"],
                    flags: [.value("--tiles"), .value("--checkpoint"), .value("--out", accepts: anyName),
                            .value("--score_cut", accepts: ["0"]), .value("--k_bd"),
                            .value("--dist_bd", accepts: ["9223372036854775807", "1e30"]), .value("--k_tx"),
                            .value("--dist_tx", accepts: ["9223372036854775807", "1e30"]), .boolean("--use_cc"),
                            .value("--min_bd", accepts: ["0", "9223372036854775807"]), .boolean("--overwrite"), .value("--format"),
                            .value("--num_threads"), .value("--progress_seconds")]),
        CommandSpec(name: "bench", base: ["bench", "--tiles", "{tiles}", "--batch", "1", "--steps", "1", "--warmup", "0"] + small,
                    flags: [.value("--tiles"), .value("--batch"), .value("--steps"), .value("--warmup", accepts: ["0"]),
                            .value("--grad_compression"), .value("--num_threads"), .value("--bucket_cap_mb"),
                            .value("--loss_reduction"), .value("--exchange_progress"), .value("--poll_interval_us"),
                            .boolean("--epoch")] + modelFlags + optimizerFlags),
        CommandSpec(name: "bench-kernels", base: ["bench-kernels", "--rows", "50", "--reps", "5", "--heads", "2", "--channels", "4"],
                    flags: [.value("--rows"), .value("--degree"), .value("--far", accepts: ["0"]), .value("--heads"),
                            .value("--channels"), .value("--reps"), .value("--seed", accepts: ["0", "9223372036854775807"])]),
    ]
}

final class FlagPropertyTests: XCTestCase {
    struct Case {
        var command: String
        var flag: String
        var value: String?
        var args: [String]
        var cwd: String
        var accepted: Bool
    }

    /// `base` with `flag` set to `value` (replacing the base's own value of that flag, if any).
    static func arguments(_ base: [String], flag: String, value: String?) -> [String] {
        var args = base
        if let i = args.firstIndex(of: flag), !(value == nil) {
            args.remove(at: i)
            if i < args.count && !args[i].hasPrefix("--") { args.remove(at: i) }
        }
        args.append(flag)
        if let value { args.append(value) }
        return args
    }

    /// The table lists every subcommand and every flag the binary's --help shows: a new flag or a new
    /// subcommand (predict) fails here until it has its row.
    func testTheTableCoversEverySubcommandAndFlag() throws {
        func section(_ text: String, _ title: String) -> [String] {
            var inside = false, lines: [String] = []
            for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
                if line.hasPrefix(title) { inside = true; continue }
                if inside && !line.isEmpty && !line.hasPrefix(" ") { inside = false }
                if inside { lines.append(String(line)) }
            }
            return lines
        }
        let top = try Support.run(Support.binary, ["--help"])
        let listed = section(top.stdout, "SUBCOMMANDS:").compactMap { line -> String? in
            guard line.hasPrefix("  "), let c = line.dropFirst(2).first, c.isLowercase else { return nil }
            return String(line.dropFirst(2).prefix { !$0.isWhitespace })
        }
        XCTAssertFalse(listed.isEmpty, top.output)
        XCTAssertEqual(Set(listed), Set(FlagTable.commands.map(\.name)), "subcommands without a row in FlagTable.commands")
        for command in FlagTable.commands {
            let help = try Support.run(Support.binary, [command.name, "--help"])
            var flags = Set<String>()
            for line in section(help.stdout, "OPTIONS:") {
                let trimmed = line.drop { $0 == " " }
                guard line.hasPrefix("  "), !line.hasPrefix("   "), let r = trimmed.range(of: #"^(-\w, )?--[A-Za-z0-9_-]+"#, options: .regularExpression) else { continue }
                flags.insert(String(trimmed[r].split(separator: " ").last!))
            }
            flags.remove("--help")
            XCTAssertFalse(flags.isEmpty, help.output)
            XCTAssertEqual(flags, Set(command.flags.map(\.flag)), "\(command.name): flags of --help vs the table")
        }
    }

    func testEveryFlagOfEverySubcommandSurvivesExtremeValues() throws {
        let tiles = try Support.synth(tiles: 4, tx: 200, seed: 131, extra: ["--num_tx_tokens", "500"])
        // A checkpoint (and weights file) of the small model the bases use.
        let run = Support.tempDir("flags-ckpt")
        let t = try Support.runBinary(["train", "--train_dir", tiles, "--default_root_dir", run, "--epochs", "1"] + FlagTable.small)
        XCTAssertEqual(t.status, 0, t.output)
        let ckpt = run + "/checkpoints/last.safetensors"
        let pt = Support.tempDir("flags-pt")
        try FileManager.default.copyItem(atPath: Support.packageRoot.appendingPathComponent("Tests/Fixtures/pt/tile_basic.pt").path,
                                         toPath: pt + "/tile_basic.pt")
        let scratch = Support.tempDir("flags")

        var cases: [Case] = []
        for command in FlagTable.commands {
            for spec in command.flags {
                for value in spec.boolean ? [nil] : FlagTable.extremes.map(Optional.some) {
                    let cwd = scratch + "/\(cases.count)"
                    try FileManager.default.createDirectory(atPath: cwd, withIntermediateDirectories: true)
                    let filled = command.base.map { a -> String in
                        a.replacingOccurrences(of: "{tiles}", with: tiles).replacingOccurrences(of: "{ckpt}", with: ckpt)
                            .replacingOccurrences(of: "{weights}", with: ckpt).replacingOccurrences(of: "{pt}", with: pt)
                            .replacingOccurrences(of: "{run}", with: run)
                            .replacingOccurrences(of: "{new}", with: cwd + "/new")
                    }
                    cases.append(Case(command: command.name, flag: spec.flag, value: value,
                                      args: Self.arguments(filled, flag: spec.flag, value: value), cwd: cwd,
                                      accepted: value.map { spec.accepts.contains($0) } ?? true))
                }
            }
        }

        // Four at a time: most of a run's time is MPI's and the runtime's start-up, not CPU.
        let collected = ResultBox(count: cases.count)
        let queue = OperationQueue()
        queue.maxConcurrentOperationCount = 4
        for (i, c) in cases.enumerated() {
            let args = c.args, cwd = c.cwd
            queue.addOperation {
                let script = "ulimit -v \(FlagTable.addressSpaceKB) && exec \"$0\" \"$@\""
                collected.set(i, try? Support.run("/bin/sh", ["-c", script, Support.binary] + args, timeout: 240, cwd: cwd))
            }
        }
        queue.waitUntilAllOperationsAreFinished()
        let results = collected.all

        var refused = 0, accepted = 0
        for (c, result) in zip(cases, results) {
            let what = "\(c.command) \(c.flag) \(c.value.map { "'\($0)'" } ?? "")"
            guard let r = result else { XCTFail("\(what): did not run"); continue }
            XCTAssertFalse(r.signaled, "\(what): ended by signal \(r.status)\n\(r.output.suffix(2000))")
            if r.signaled { continue }
            if r.status == 0 {
                accepted += 1
                XCTAssertTrue(c.accepted, "\(what) was accepted; the table says it must be refused\n\(r.output.suffix(1500))")
            } else {
                refused += 1
                XCTAssertTrue((1...127).contains(r.status), "\(what): exit \(r.status)")
                XCTAssertTrue(r.output.contains(c.flag), "\(what): the message does not name \(c.flag):\n\(r.output.suffix(1500))")
            }
        }
        print("flag property test: \(cases.count) runs over \(FlagTable.commands.count) subcommands, \(refused) refused naming the flag, \(accepted) accepted, address space ≤ \(FlagTable.addressSpaceKB) KB")
    }
}

/// Results written from the queue's threads.
final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [Support.Result?]
    init(count: Int) { results = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ r: Support.Result?) { lock.lock(); results[i] = r; lock.unlock() }
    var all: [Support.Result?] { lock.lock(); defer { lock.unlock() }; return results }
}
