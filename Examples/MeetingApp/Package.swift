// swift-tools-version: 6.0
import PackageDescription

// A sample app built the way a third-party app is: it depends on the SDK package alone.
// `swift run meeting-app --server http://127.0.0.1:8080` against a running `parley serve`.
let package = Package(
    name: "meeting-app",
    platforms: [.macOS(.v15), .iOS(.v18)],
    dependencies: [
        .package(path: "../../parley-sdk"),
    ],
    targets: [
        .executableTarget(
            name: "MeetingApp",
            dependencies: [.product(name: "ParleyClient", package: "parley-sdk")]),
    ]
)
