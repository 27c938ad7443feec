import ArgumentParser
import Foundation
import ParleyClient
import ParleyCore

/// `parley meeting …`: meetings through the HTTP API.
struct MeetingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "meeting",
        abstract: "Create meetings on a Parley server.",
        subcommands: [Create.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a meeting; prints its id, your host token and a ready-to-paste join command.")

        @Option(help: "The server's HTTP base URL.")
        var server = "http://127.0.0.1:8080"

        @Option(help: "The meeting's title.")
        var title: String

        @Option(help: "The most participants present at once (0: no limit).")
        var maxParticipants: Int?

        @Option(help: "The server's API key, if it runs with --api-key (default: $PARLEY_API_KEY).")
        var apiKey: String?

        @Flag(help: "Print the server's answer as JSON.")
        var json = false

        func validate() throws {
            if let maxParticipants, maxParticipants < 0 {
                throw ValidationError("--max-participants must be 0 (no limit) or more")
            }
        }

        func run() async throws {
            let serverURL = try parseServerURL(server)
            let settings = maxParticipants.map { MeetingSettings(maxParticipants: $0) }
            let created = try await ParleyHTTP.createMeeting(server: serverURL, title: title, settings: settings,
                                                             apiKey: apiKey ?? environmentAPIKey)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(created), as: UTF8.self))
                return
            }
            let base = "parley join \(created.meeting.id) --server \(shellQuoted(serverURL.absoluteString))"
            print("""
                Meeting      \(created.meeting.id)  \(created.meeting.title)
                Host         \(created.participant)
                Host token   \(created.hostToken)

                Join as the host:
                  \(base) --token \(shellQuoted(created.hostToken))
                Invite others (each gets an attendee token):
                  \(base) --name NAME
                """)
        }
    }
}

func parseServerURL(_ text: String) throws -> URL {
    guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
          url.host != nil
    else {
        throw ValidationError("--server must be an http:// or https:// URL, such as http://127.0.0.1:8080")
    }
    return url
}

/// Quotes `text` for a POSIX shell when it holds anything but safe characters.
func shellQuoted(_ text: String) -> String {
    let safe = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/=@%+,")
    if !text.isEmpty, text.allSatisfy({ safe.contains($0) }) { return text }
    return "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

/// `PARLEY_API_KEY`, the same variable `parley serve` reads.
var environmentAPIKey: String? { ProcessInfo.processInfo.environment["PARLEY_API_KEY"] }
