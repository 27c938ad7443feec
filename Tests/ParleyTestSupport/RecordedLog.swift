import Foundation
import Logging
import Synchronization

/// Everything a logger was told, for tests that check what an operator reads: each line is
/// `[level] message metadata`. With `PARLEY_TEST_LOG` set, lines are printed too.
public final class RecordedLog: Sendable {
    private let lines = Mutex<[String]>([])

    public init() {}

    public var all: [String] { lines.withLock { $0 } }
    public func contains(_ text: String) -> Bool { all.contains { $0.contains(text) } }

    /// A logger that records here what is at `level` or above.
    public func logger(level: Logger.Level = .info) -> Logger {
        var logger = Logger(label: "parley-test") { _ in Handler(log: self) }
        logger.logLevel = level
        return logger
    }

    fileprivate func append(_ line: String) { lines.withLock { $0.append(line) } }

    private struct Handler: LogHandler {
        let log: RecordedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let line = "[\(event.level)] \(event.message) \(event.metadata ?? [:])"
            log.append(line)
            if ProcessInfo.processInfo.environment["PARLEY_TEST_LOG"] != nil { print(line) }
        }
    }
}
