import ArgumentParser
import Foundation
import Logging
import ParleyClient
import ParleyCore
import ParleyProtocol

/// `parley join`: a terminal chat client, and a living example of the Swift SDK.
struct Join: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Join a meeting from the terminal and chat.",
        discussion: """
            Type a line to send it as chat. Commands:
              /who              who is here, with role and presence
              /pm NAME text     a private message to NAME
              /quit             leave the meeting (end of input does the same)
            """)

    enum TransportChoice: String, ExpressibleByArgument, CaseIterable {
        case auto, websocket, longpoll

        var preference: TransportPreference {
            switch self {
            case .auto: .automatic
            case .websocket: .webSocket
            case .longpoll: .longPolling
            }
        }
    }

    @Argument(help: "The meeting id, as printed by `parley meeting create`.")
    var meeting: String

    @Option(help: "Your display name; the server issues you an attendee token. Not needed with --token.")
    var name: String?

    @Option(help: "The server's HTTP base URL.")
    var server = "http://127.0.0.1:8080"

    @Option(help: "A meeting token (for example the host token from `parley meeting create`).")
    var token: String?

    @Option(help: "The server's API key, if it runs with --api-key (default: $PARLEY_API_KEY).")
    var apiKey: String?

    @Option(help: "auto (WebSocket, falling back to long-polling), websocket or longpoll.")
    var transport: TransportChoice = .auto

    @Flag(help: "Log connection details to standard error.")
    var verbose = false

    func validate() throws {
        if token == nil, (name ?? "").trimmingCharacters(in: .whitespaces).isEmpty {
            throw ValidationError("pass --name NAME to join as an attendee, or --token TOKEN")
        }
    }

    func run() async throws {
        let serverURL = try parseServerURL(server)
        let token: String
        if let given = self.token {
            token = given
        } else {
            token = try await ParleyHTTP.issueToken(server: serverURL, meeting: MeetingID(meeting), name: name ?? "",
                                                    role: .attendee, apiKey: apiKey ?? environmentAPIKey).token
        }
        var logger = Logger(label: "parley.join") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = verbose ? .debug : .warning
        let client = try MeetingClient(server: serverURL, token: token,
                                  options: .init(policy: ConnectionPolicy(transport: transport.preference), logger: logger))
        try await client.connect()

        guard let me = await client.participantID, let state = await client.meeting else { return }
        let console = Console(me: me)
        console.write("Joined “\(state.title)” (\(state.id)). Type /help for commands.")
        console.write(console.attendeeList(state))

        let (inputs, feed) = AsyncStream.makeStream(of: Input.self)
        readStandardInput(into: feed)
        let ended: CloseReason? = await withDiscardingTaskGroup { group in
            group.addTask {
                var reason: CloseReason?
                var welcomes = 0
                for await event in client.events {
                    if case .connection(.closed(let why)) = event { reason = why }
                    if case .welcome = event { welcomes += 1 }
                    // The first welcome and its "connected" were shown above as the attendee list.
                    if welcomes <= 1, event == .welcome(.snapshot) || event == .connection(.connected) { continue }
                    if let line = console.line(for: event, meeting: await client.meeting) { console.write(line) }
                }
                feed.yield(.sessionEnded(reason))
            }
            var ended: CloseReason?
            loop: for await input in inputs {
                switch input {
                case .endOfInput:
                    break loop
                case .sessionEnded(let reason):
                    ended = reason
                    break loop
                case .line(let text):
                    switch ChatCommand(text) {
                    case .none:
                        continue
                    case .quit:
                        break loop
                    case .help:
                        console.write(Join.configuration.discussion)
                    case .who:
                        if let state = await client.meeting { console.write(console.attendeeList(state)) }
                    case .unknown(let word):
                        console.write("! unknown command \(word); try /help")
                    case .privateMessage(let rest):
                        guard let state = await client.meeting else { continue }
                        switch console.resolveRecipient(rest, in: state) {
                        case .failure(let problem):
                            console.write("! \(problem)")
                        case .success(let (to, text)):
                            group.addTask { await send(.privateMessage(to: to, text: text), client, console) }
                        }
                    case .chat(let text):
                        group.addTask { await send(.chat(text: text), client, console) }
                    }
                }
            }
            await client.leave()
            return ended
        }
        switch ended {
        case .refused?, .unreachable?:
            throw ParleyError.closed(ended!)
        default:
            break
        }
    }

    enum Input: Sendable {
        case line(String)
        case endOfInput
        case sessionEnded(CloseReason?)
    }
}

private func send(_ operation: ParleyCore.MeetingOp, _ client: MeetingClient, _ console: Console) async {
    do {
        try await client.send(operation)
    } catch ParleyError.rejected(let rejection) {
        console.write("! not sent: \(rejection.message)")
    } catch {
        console.write("! not sent: \(error)")
    }
}

/// Reads lines on a dedicated thread, so a blocking `readLine` never holds a thread of the
/// cooperative pool. The thread ends with the process.
private func readStandardInput(into feed: AsyncStream<Join.Input>.Continuation) {
    let thread = Thread {
        while let line = readLine(strippingNewline: true) { feed.yield(.line(line)) }
        feed.yield(.endOfInput)
    }
    thread.name = "parley-stdin"
    thread.start()
}

enum ChatCommand: Equatable {
    case chat(String)
    case who
    case privateMessage(String)
    case quit
    case help
    case unknown(String)

    /// nil for a blank line.
    init?(_ line: String) {
        let text = line.trimmingCharacters(in: .whitespaces)
        guard !text.isEmpty else { return nil }
        guard text.hasPrefix("/") else { self = .chat(text); return }
        let word = text.prefix { !$0.isWhitespace }
        let rest = text.dropFirst(word.count).trimmingCharacters(in: .whitespaces)
        switch word.lowercased() {
        case "/who": self = .who
        case "/pm", "/msg": self = .privateMessage(rest)
        case "/quit", "/exit": self = .quit
        case "/help": self = .help
        default: self = .unknown(String(word))
        }
    }
}

/// Formats what happens in the meeting as terminal lines.
struct Console: Sendable {
    let me: ParticipantID

    func write(_ line: String) {
        // Unbuffered, so lines show at once even when stdout is a pipe.
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    func name(_ id: ParticipantID, in meeting: Meeting?) -> String {
        if id == me { return "you" }
        return meeting?.participant(id)?.name ?? id.rawValue
    }

    func attendeeList(_ meeting: Meeting) -> String {
        let present = meeting.participants.filter { $0.presence != .left }
        guard !present.isEmpty else { return "Nobody else is here yet." }
        let lines = present.map { person -> String in
            var tags = [person.role.rawValue]
            if person.isPresenter && person.role != .presenter { tags.append("presenting") }
            if person.presence == .reconnecting { tags.append("reconnecting…") }
            let who = person.id == me ? "\(person.name) (you)" : person.name
            return "  \(who) — \(tags.joined(separator: ", "))"
        }
        return "In the meeting (\(present.count)):\n" + lines.joined(separator: "\n")
    }

    func line(for event: ClientEvent, meeting: Meeting?) -> String? {
        switch event {
        case .connection(.connecting), .connection(.connected):
            return nil
        case .connection(.reconnecting):
            return "… reconnecting"
        case .connection(.resumed):
            return "… resumed"
        case .connection(.closed(let reason)):
            return reason == .left ? "You left the meeting." : "Disconnected: \(reason)."
        case .welcome(.snapshot):
            return "… caught up from a snapshot; messages sent while you were away may not be shown"
        case .welcome(.replay):
            return nil
        case .error(let error):
            return "! \(error.message) (\(error.code.rawValue))"
        case .signal:
            return nil
        case .dropped(let count):
            return "… \(count) updates skipped while the terminal was busy"
        case .entry(let entry):
            return line(for: entry, meeting: meeting)
        }
    }

    func line(for entry: LogEntry, meeting: Meeting?) -> String? {
        let time = "[\(clock(entry.at))]"
        let actor = entry.issuer.participantID.map { name($0, in: meeting) } ?? "server"
        switch entry.operation {
        case .chat(let text):
            return "\(time) \(actor): \(text)"
        case .privateMessage(let to, let text):
            return "\(time) \(actor) → \(name(to, in: meeting)) (private): \(text)"
        case .join(let id, let joined, _):
            let role = meeting?.participant(id)?.role.rawValue ?? "attendee"
            return id == me ? "\(time) * you joined as \(role)" : "\(time) * \(joined) joined as \(role)"
        case .leave(let id):
            return "\(time) * \(name(id, in: meeting)) left"
        case .presence(let id, .reconnecting):
            return "\(time) * \(name(id, in: meeting)) is reconnecting…"
        case .presence(let id, _):
            return "\(time) * \(name(id, in: meeting)) is back"
        case .handOverHost(let to):
            return "\(time) * \(actor) made \(name(to, in: meeting)) the host"
        case .setPresenter(let to):
            return "\(time) * \(actor) made \(name(to, in: meeting)) the presenter"
        case .lock:
            return "\(time) * \(actor) locked the meeting"
        case .unlock:
            return "\(time) * \(actor) unlocked the meeting"
        case .end:
            return "\(time) * \(actor) ended the meeting"
        case .createPoll(_, let question, let options):
            return "\(time) * \(actor) opened a poll: \(question) [\(options.joined(separator: " / "))]"
        case .startShare(let kind, let title):
            return "\(time) * \(actor) started sharing a \(kind.rawValue): \(title)"
        case .stopShare:
            return "\(time) * the share stopped"
        default:
            return nil  // Drawing, pages, votes and control hand-offs are not shown in a chat terminal.
        }
    }

    /// `/pm NAME text`: NAME is a participant's name (which may hold spaces) or id.
    func resolveRecipient(_ rest: String, in meeting: Meeting) -> Result<(ParticipantID, String), RecipientProblem> {
        let others = meeting.participants.filter { $0.presence != .left && $0.id != me }
        let lowered = rest.lowercased()
        let matches = others.filter { person in
            [person.name, person.id.rawValue].contains { lowered.hasPrefix($0.lowercased() + " ") }
        }
        // The longest name wins, so "Ann Lee hi" goes to "Ann Lee" rather than "Ann".
        let longest = matches.map { person in
            max(lowered.hasPrefix(person.name.lowercased() + " ") ? person.name.count : 0,
                lowered.hasPrefix(person.id.rawValue.lowercased() + " ") ? person.id.rawValue.count : 0)
        }.max() ?? 0
        let best = matches.filter { person in
            (lowered.hasPrefix(person.name.lowercased() + " ") && person.name.count == longest)
                || (lowered.hasPrefix(person.id.rawValue.lowercased() + " ") && person.id.rawValue.count == longest)
        }
        guard !best.isEmpty else { return .failure(RecipientProblem("usage: /pm NAME text — NAME must be someone present (see /who)")) }
        guard best.count == 1 else {
            return .failure(RecipientProblem("several people are called that; use their id: "
                                             + best.map(\.id.rawValue).joined(separator: ", ")))
        }
        let text = String(rest.dropFirst(longest)).trimmingCharacters(in: .whitespaces)
        guard !text.isEmpty else { return .failure(RecipientProblem("usage: /pm NAME text")) }
        return .success((best[0].id, text))
    }

    struct RecipientProblem: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    private func clock(_ at: Millis) -> String {
        let date = Date(timeIntervalSince1970: Double(at) / 1_000)
        let parts = Calendar.current.dateComponents([.hour, .minute], from: date)
        let hour = parts.hour ?? 0
        let minute = parts.minute ?? 0
        return (hour < 10 ? "0" : "") + "\(hour):" + (minute < 10 ? "0" : "") + "\(minute)"
    }
}
