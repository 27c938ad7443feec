// swift-tools-version: 6.0
import PackageDescription

// The Swift SDK on its own: what an app needs to join Parley meetings and nothing of the
// server (no database, HTTP server, token signing or process supervision). The server
// package at the repository's root depends on this one for the shared model and protocol.
//
//   ParleyCore (the meeting model and its rules; pure)  <-  ParleyProtocol (wire frames)
//   <-  ParleyClient (the SDK: MeetingClient, ParleyHTTP, MeetingModel)
//   ParleyClient  <-  ParleyTesting (an in-memory Parley for an app's own tests)
let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "parley-sdk",
    platforms: [.macOS(.v15), .iOS(.v18)],
    products: [
        .library(name: "ParleyClient", targets: ["ParleyClient"]),
        .library(name: "ParleyTesting", targets: ["ParleyTesting"]),
        // For the server package; apps need only ParleyClient, which re-exports both.
        .library(name: "ParleyCore", targets: ["ParleyCore"]),
        .library(name: "ParleyProtocol", targets: ["ParleyProtocol"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/swift-websocket.git", from: "1.6.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    ],
    targets: [
        .target(name: "ParleyCore", swiftSettings: strict),
        .target(name: "ParleyProtocol", dependencies: ["ParleyCore"], swiftSettings: strict),
        .target(
            name: "ParleyClient",
            dependencies: [
                "ParleyCore", "ParleyProtocol",
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .target(name: "ParleyTesting", dependencies: ["ParleyClient"], swiftSettings: strict),
    ]
)
