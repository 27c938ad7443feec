import Logging
import OTel
import ServiceLifecycle
import Tracing

/// Where a process's spans go: nowhere (the default, at no cost beyond a no-op call), or to
/// an OpenTelemetry collector over OTLP/HTTP (swift-otel). Passed in, never bootstrapped
/// globally, so that tests can give an in-memory tracer.
///
/// The spans (docs/operations.md, "Tracing"): `parley.op`, an op from its receipt through
/// commit to fan-out, and `parley.commit`, each group commit; `parley.failover`, the
/// manager's view of a failover from the server's loss to the new host's confirmation, and
/// its child `parley.promotion`, the new host's, from the order to its first ack.
public struct ProcessTracing: Sendable {
    public let tracer: any Tracer
    /// Exports the spans; run it with the process's other services (nil when off).
    public let exporter: (any Service)?
    /// Whether spans are recorded at all: when not, the hot paths start none.
    public let isOn: Bool

    public init(tracer: any Tracer, exporter: (any Service)? = nil) {
        self.tracer = tracer
        self.exporter = exporter
        isOn = !(tracer is NoOpTracer)
    }

    public static let off = ProcessTracing(tracer: NoOpTracer())

    /// Spans exported to `endpoint` (an OTLP/HTTP collector, such as
    /// `http://127.0.0.1:4318`), a `sampleRatio` of traces kept, in batches sent every
    /// `exportDelayMs`. `process` names this process in every span's resource.
    public static func otlp(endpoint: String, json: Bool, sampleRatio: Double, exportDelayMs: Int,
                            process: String, logger: Logger) throws -> ProcessTracing {
        var configuration = OTel.Configuration.default
        configuration.serviceName = "parley"
        configuration.resourceAttributes = ["service.instance.id": process]
        configuration.diagnosticLogger = .custom(logger)
        configuration.metrics.enabled = false
        configuration.logs.enabled = false
        configuration.traces.enabled = true
        configuration.traces.exporter = .otlp
        // The collector's base address, as OTEL_EXPORTER_OTLP_ENDPOINT is: traces go to its
        // /v1/traces (an endpoint set in swift-otel's configuration is used as it is).
        configuration.traces.otlpExporter.endpoint = endpoint + (endpoint.hasSuffix("/") ? "" : "/") + "v1/traces"
        configuration.traces.otlpExporter.protocol = json ? .httpJSON : .httpProtobuf
        // A host's trace decides for the spans it causes elsewhere (the promotion it orders).
        configuration.traces.sampler = .parentBasedTraceIDRatio(ratio: sampleRatio) ?? .parentBasedAlwaysOn
        configuration.traces.batchSpanProcessor.scheduleDelay = .milliseconds(exportDelayMs)
        // A process stopping sends its last spans, but an unreachable collector must not hold
        // it past the supervisor's grace period (5 s) and get it killed.
        configuration.traces.otlpExporter.timeout = .seconds(2)
        configuration.traces.batchSpanProcessor.exportTimeout = .seconds(2)
        let backend = try OTel.makeTracingBackend(configuration: configuration)
        return ProcessTracing(tracer: backend.factory, exporter: backend.service)
    }
}

/// A span's context carried in a zone message, as W3C `traceparent` (and `tracestate`)
/// fields: how the failover the manager traces continues on the server it promotes.
public struct TraceFields: Injector, Extractor {
    public typealias Carrier = [String: String]
    public init() {}
    public func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
    public func extract(key: String, from carrier: [String: String]) -> String? { carrier[key] }
}

extension Tracer {
    /// The fields that carry `span`'s context to another process; nil when there are none
    /// (tracing off, or the span not sampled).
    public func fields(of span: any Tracing.Span) -> [String: String]? {
        var carrier: [String: String] = [:]
        inject(span.context, into: &carrier, using: TraceFields())
        return carrier.isEmpty ? nil : carrier
    }

    /// The context `fields` carry, to start a span under it.
    public func context(from fields: [String: String]?) -> ServiceContext {
        var context = ServiceContext.topLevel
        if let fields { extract(fields, into: &context, using: TraceFields()) }
        return context
    }
}
