import CoreMetrics
import Logging
import ParleyTelemetry

/// postgres-nio's connection pools say when they connect, fail to and close only in their
/// background log: this log handler turns those lines into counts
/// (`parley_store_connects_total{outcome}`, `parley_store_connections_closed_total`) and
/// drops everything else, as the quiet logger did. The pool also closes connections idle for
/// a minute and opens new ones when busy again, so attempts and closes climb in healthy
/// operation too; failed attempts are the ones that say the database cannot be reached.
/// (The pool reports a success to its delegate without a log line: attempts are counted.)
struct PoolEvents: LogHandler {
    let attempted: CoreMetrics.Counter
    let failed: CoreMetrics.Counter
    let closed: CoreMetrics.Counter
    var metadata: Logger.Metadata = [:]
    // Debug: the pool says "creating" and "closed" at that level.
    var logLevel: Logger.Level = .debug

    init(metrics: ProcessMetrics) {
        attempted = metrics.counter(.storeConnects, [("outcome", "attempted")])
        failed = metrics.counter(.storeConnects, [("outcome", "failed")])
        closed = metrics.counter(.storeConnectionsClosed)
    }

    static func logger(_ metrics: ProcessMetrics) -> Logger {
        guard metrics.isOn else { return PostgresStore.quiet }
        return Logger(label: "parley.store.postgres.pool") { _ in PoolEvents(metrics: metrics) }
    }

    func log(event: LogEvent) {
        switch "\(event.message)" {
        case "Creating new connection": attempted.increment()
        case "Connection creation failed": failed.increment()
        case "Connection closed": closed.increment()
        default: break
        }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
}
