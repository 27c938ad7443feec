import Foundation
import ParleyClient

/// A sample app on the Swift SDK alone: two participants, Ada (the host, on WebSocket with
/// fallback) and Bob (on long-polling), meet; they chat, send a private message, run a
/// poll and page through a document, while the server is restarted twice under them and
/// Ada's token expires and is renewed. At the end it prints what each of them saw.
///
///     meeting-app --server http://127.0.0.1:8080 [--api-key KEY] [--restarts 2] [--token-lifetime 3]
///
/// Before each restart it prints `restart N now` and waits (up to a minute) for the server
/// to go away and come back; whoever runs it restarts the server (`kill -9` and start it
/// again on the same port and data directory). `--restarts 0` runs it without restarts.
@main
struct MeetingApp {
    static func main() async {
        do {
            let arguments = try Arguments(CommandLine.arguments.dropFirst())
            try await Scenario(arguments).run()
        } catch {
            print("meeting-app: \(error)")
            exit(1)
        }
    }
}

struct Arguments {
    var server = URL(string: "http://127.0.0.1:8080")!
    var apiKey: String?
    var restarts = 2
    /// The server's token lifetime: before the last restart the app waits it out, so the
    /// server refuses Ada's token and her token provider renews it.
    var tokenLifetime: Duration?
    /// Log the SDK's debug messages (connecting, dropping, renewing) to standard error.
    var verbose = false

    init(_ arguments: ArraySlice<String>) throws {
        var rest = arguments
        while let flag = rest.popFirst() {
            if flag == "--verbose" {
                verbose = true
                continue
            }
            guard let value = rest.popFirst() else { throw UsageError("\(flag) needs a value") }
            switch flag {
            case "--server":
                guard let url = URL(string: value) else { throw UsageError("--server takes a URL") }
                server = url
            case "--api-key": apiKey = value
            case "--restarts":
                guard let count = Int(value), count >= 0 else { throw UsageError("--restarts takes a count") }
                restarts = count
            case "--token-lifetime":
                guard let seconds = Int(value), seconds > 0 else { throw UsageError("--token-lifetime takes seconds") }
                tokenLifetime = .seconds(seconds)
            default:
                throw UsageError("unknown option \(flag)")
            }
        }
    }
}

struct UsageError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = "\(description)\nusage: meeting-app --server URL [--api-key KEY] [--restarts N] [--token-lifetime SECONDS] [--verbose]" }
}

/// Says what happened, one line each, to standard output.
func say(_ line: String) {
    // Unbuffered, so whoever watches the output sees each line at once.
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
