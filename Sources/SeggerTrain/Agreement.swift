// Decisions every rank must take alike. A rank that throws while the others go on into a collective
// hangs the job, so a check made on one rank (rank 0 looking at the disk) travels to all ranks with its
// outcome (`rootDecides`); a check each rank makes for itself (its own memory) is gathered before anyone
// acts on it (`Communicator.agree`, SeggerDistributed).
import Foundation
import SeggerDistributed

/// What rank 0 decided: its value, or the text of its error.
struct RootOutcome<T: Codable>: Codable {
    var value: T?
    var error: String?
}

/// A `Codable` stand-in for "nothing to share but success".
struct Nothing: Codable {}

extension Communicator {
    /// Rank 0 runs `decide`; every rank returns its value or throws its error (a `CollectiveError` with
    /// rank 0's message), so that all ranks take the same branch. `decide` runs on rank 0 only: what
    /// it leaves behind (files read, handles opened) stays there, the value reaches everyone.
    func rootDecides<T: Codable>(_ decide: () throws -> T) throws -> T {
        var bytes: [UInt8] = []
        if isRoot {
            var outcome: RootOutcome<T>
            do { outcome = RootOutcome(value: try decide(), error: nil) } catch { outcome = RootOutcome(value: nil, error: "\(error)") }
            // Encoding must not fail on rank 0 alone (the others are already waiting in the broadcast).
            bytes = (try? Agreement.encoder.encode(outcome)).map(Array.init)
                ?? Array(#"{"error":"rank 0 could not encode its decision"}"#.utf8)
        }
        let received = broadcast(bytes: bytes)
        let outcome: RootOutcome<T>
        do { outcome = try Agreement.decoder.decode(RootOutcome<T>.self, from: Data(received)) } catch {
            throw CollectiveError("ranks could not agree: rank 0's decision did not decode (\(error))")
        }
        if let e = outcome.error { throw CollectiveError(e) }
        guard let v = outcome.value else { throw CollectiveError("rank 0 sent no decision") }
        return v
    }

    /// `rootDecides` for a check with no value.
    func rootDecides(_ check: () throws -> Void) throws {
        _ = try rootDecides { () throws -> Nothing in try check(); return Nothing() }
    }
}

enum Agreement {
    static var encoder: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return e
    }

    static var decoder: JSONDecoder {
        let d = JSONDecoder()
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return d
    }
}
