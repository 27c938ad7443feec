// swift-tools-version: 6.2
import PackageDescription

// Layers, dependencies pointing one way only:
//   parley-sdk/: ParleyCore (model, log, resume; pure)  <-  ParleyProtocol (wire frames)
//                <-  ParleyClient (the Swift SDK)  <-  ParleyTesting (a fake Parley for apps' tests)
//   ParleyCore, ParleyProtocol  <-  ParleyStore (durable log)  <-  ParleyServer (transport adapters)  <-  parley (CLI)
//   ParleyTelemetry (what processes measure, /metrics, their spans, and the request-head deadline of every listener)  <-  ParleyStore, ParleyServer, ParleySupervisor, ParleyNode
//   ParleyCore  <-  ParleyZone (zone rules: configuration (read with swift-configuration), supervision, placement, leases; pure)
//   ParleyZone  <-  ParleySupervisor (spawns and watches the zone's processes)
//   ParleyZone + ParleyServer  <-  ParleyNode (a logical server: its zone agent and its role)
//   ParleyServer + ParleyZone  <-  ParleyWeb (accounts, meeting center, meeting page, documents)
//   ParleyWeb  <-  ParleyNode (the web process) and parley (--single)
//   ParleyClient + ParleyNode  <-  ParleyChaos (chaos runs: clients, faults, history checks)  <-  parley
//   ParleyChaos  <-  ParleyBench (the load generator: fan-out, joins, idle memory, failover)  <-  parley
// The SDK's modules, from the package in parley-sdk/.
let core = Target.Dependency.product(name: "ParleyCore", package: "parley-sdk")
let wire = Target.Dependency.product(name: "ParleyProtocol", package: "parley-sdk")
let sdk = Target.Dependency.product(name: "ParleyClient", package: "parley-sdk")
let sdkTesting = Target.Dependency.product(name: "ParleyTesting", package: "parley-sdk")

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "parley",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "parley", targets: ["parley"]),
    ],
    dependencies: [
        // The SDK and the model and protocol it shares with the server.
        .package(path: "parley-sdk"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth.git", from: "2.5.0"),
        .package(url: "https://github.com/hummingbird-project/swift-websocket.git", from: "1.6.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        // The cluster's CA and machine certificates (`parley cluster init`); SwiftASN1 for IP SANs.
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // Spans for an op's path and for failovers, exported over OTLP/HTTP when configured
        // (gRPC left out: it would double the dependencies' build).
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]),
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", from: "1.0.2"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
        // One configuration system: flags over environment over file over defaults.
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
    ],
    targets: [
        // What every process measures (swift-metrics, exported by swift-prometheus), and the
        // listener that serves it as `/metrics`.
        .target(
            name: "ParleyTelemetry",
            dependencies: [
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "OTel", package: "swift-otel"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .target(
            name: "ParleyStore",
            dependencies: [
                core, "ParleyTelemetry",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .target(
            name: "ParleyServer",
            dependencies: [
                core, wire, "ParleyStore", "ParleyTelemetry",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "WSCore", package: "swift-websocket"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strict),
        .target(name: "ParleyZone", dependencies: [core, .product(name: "Configuration", package: "swift-configuration")],
                swiftSettings: strict),
        .target(
            name: "ParleyWeb",
            dependencies: [
                core, wire, "ParleyStore", "ParleyServer", "ParleyZone", "ParleyTelemetry",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Logging", package: "swift-log"),
            ],
            // The meeting page: plain JavaScript modules and CSS, served as they are.
            resources: [.copy("Public")],
            swiftSettings: strict),
        .target(
            name: "ParleySupervisor",
            dependencies: [
                "ParleyZone", "ParleyTelemetry",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .target(
            name: "ParleyNode",
            dependencies: [
                "ParleyZone", "ParleyServer", "ParleyStore", wire, "ParleyWeb", "ParleyTelemetry",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        // The failover core's pure machines in one seeded, simulated world (`parley sim`).
        // Optimised even in debug builds: `swift test` runs 1,000 seeds, and the world's event
        // queue and shells are test machinery, not the code under test. The machines it runs
        // (ParleyCore, ParleyZone, ParleyServer) stay debug builds, with their checks on.
        .target(name: "ParleySimulation", dependencies: ["ParleyServer", "ParleyZone", core, wire, sdk],
                swiftSettings: strict + [.unsafeFlags(["-O"], .when(configuration: .debug))]),
        .target(
            name: "ParleyChaos",
            dependencies: [
                core, wire, sdk, "ParleyZone", "ParleyNode", "ParleySupervisor",
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .target(
            name: "ParleyBench",
            dependencies: [
                core, wire, sdk, "ParleyChaos", "ParleyZone",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .executableTarget(
            name: "parley",
            dependencies: [
                "ParleyServer", sdk, "ParleySupervisor", "ParleyNode", "ParleyChaos", "ParleyWeb", "ParleyBench", "ParleySimulation",
                "ParleyTelemetry",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: strict),
        // The sample app (Examples/MeetingApp, a package of its own on the SDK alone), built
        // here too so that `swift test` builds it and runs it against a real server.
        .executableTarget(
            name: "meeting-app",
            dependencies: [sdk],
            path: "Examples/MeetingApp/Sources/MeetingApp",
            swiftSettings: strict),
        // What several test targets share: a throwaway PostgreSQL per test process, a recorded log,
        // the machine budget that keeps the suite from running more at once than the machine carries.
        .target(
            name: "ParleyTestSupport",
            dependencies: ["ParleySupervisor", .product(name: "Logging", package: "swift-log")],
            path: "Tests/ParleyTestSupport",
            swiftSettings: strict),
        .testTarget(
            name: "ParleyCoreTests",
            dependencies: [core, "ParleyTestSupport", .product(name: "PropertyBased", package: "swift-property-based")],
            swiftSettings: strict),
        .testTarget(
            name: "ParleyProtocolTests",
            dependencies: [wire],
            resources: [.copy("Crashers")],
            swiftSettings: strict),
        .testTarget(
            name: "ParleyStoreTests",
            dependencies: ["ParleyStore", "ParleySupervisor", "ParleyTestSupport", "ParleyTelemetry", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict),
        .testTarget(
            name: "ParleyClientTests",
            dependencies: [sdk, sdkTesting],
            swiftSettings: strict),
        .testTarget(
            name: "ParleyZoneTests",
            dependencies: ["ParleyZone", .product(name: "Configuration", package: "swift-configuration")],
            exclude: ["Traces"],  // golden traces, read from the source tree by GoldenTraceTests
            swiftSettings: strict),
        .testTarget(
            name: "ParleyZoneProcessTests",
            dependencies: [
                "ParleySupervisor", "ParleyNode", "ParleyServer", "ParleyStore", "ParleyTestSupport", "ParleyChaos", sdk, "parley",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict),
        .testTarget(
            name: "ParleySimulationTests",
            dependencies: [
                "ParleySimulation", "ParleyTestSupport", "parley",
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict),
        .testTarget(
            name: "ParleyChaosTests",
            dependencies: [
                "ParleyChaos", "ParleyTestSupport", sdk, core, "parley",
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict),
        .testTarget(
            name: "ParleyBenchTests",
            dependencies: [
                "ParleyBench", "ParleyTestSupport", core, wire, "parley",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict),
        .testTarget(
            name: "ParleyWebTests",
            dependencies: [
                "ParleyWeb", "ParleyServer", "ParleyStore", "ParleyZone", "ParleyTestSupport", wire, core, sdk, "parley",
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            resources: [.copy("Fixtures")],
            swiftSettings: strict),
        .testTarget(
            name: "ParleyServerTests",
            dependencies: [
                "ParleyServer", "ParleyStore", "ParleyTestSupport", "ParleySupervisor", "ParleyTelemetry", sdk, "parley", "meeting-app",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict),
    ]
)
