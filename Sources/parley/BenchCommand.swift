import ArgumentParser
import Foundation
import Logging
import ParleyBench

#if canImport(Glibc)
import Glibc
#endif

/// `parley bench`: the load generator. Each subcommand measures one thing and prints one
/// JSON result (`scripts/bench.sh` runs them all and builds docs/performance.md).
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure a Parley server: fan-out, joins, memory per idle connection, failover.",
        discussion: """
            Each benchmark starts its own server from this same binary ('parley serve --single' in a \
            temporary directory; 'parley serve', a whole zone, for failover), loads it from this \
            process over loopback, and prints one JSON result (schema parley-bench/1). Build in \
            release mode for real figures: swift build -c release --product parley. \
            scripts/bench.sh runs the whole suite and writes docs/performance.md.
            """,
        subcommands: [FanOut.self, Joins.self, Idle.self, Failover.self, LargeMeeting.self])

    /// Where the load goes and where the result is written; shared by the subcommands.
    struct Target: ParsableArguments {
        @Option(help: "Load an already running server at this URL instead of starting one (e.g. http://127.0.0.1:8080).")
        var url: String?

        @Option(help: "With --url: the server's pid, for its CPU and memory readings.")
        var serverPid: Int32?

        @Option(name: .customLong("server-option"), parsing: .singleValue,
                help: "An extra option for the server this command starts (repeatable), e.g. --server-option=--no-fsync.")
        var serverOptions: [String] = []

        @Option(help: "Write the JSON result to this file (default: standard output).")
        var output: String?

        @Option(help: "Log level of the generator's progress messages (standard error).")
        var logLevel = "info"

        func validate() throws {
            if url == nil, serverPid != nil { throw ValidationError("--server-pid goes with --url") }
            if let url, URL(string: url)?.port == nil { throw ValidationError("--url needs a host and port, e.g. http://127.0.0.1:8080") }
            guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level '\(logLevel)'") }
        }

        var logger: Logger { makeLogger(label: "parley.bench", level: logLevel) }

        /// Runs `body` against the named server, or one started for it.
        func withServer<T: Sendable>(_ body: (BenchServer) async throws -> T) async throws -> T {
            if let url, let parsed = URL(string: url) {
                return try await body(BenchServer(url: parsed, pid: serverPid))
            }
            let directory = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            return try await BenchServer.withStarted(executable: currentExecutable(), directory: directory,
                                                     options: BenchServer.benchOptions + serverOptions, body)
        }

        /// Measures `benchmark` against the server and writes the result with its field set.
        func measure<T: Sendable>(_ benchmark: String, into field: WritableKeyPath<BenchResult, T?>,
                                  _ body: (BenchServer) async throws -> T) async throws {
            bootstrapLogging(level: logLevel)
            var result = BenchResult(benchmark: benchmark, startedAt: Date(), build: BenchCommand.buildKind,
                                     command: BenchCommand.commandLine)
            result[keyPath: field] = try await withServer(body)
            try writeResult(result, to: output)
        }
    }

    /// The command line as given, for the result's `command`.
    static var commandLine: String {
        (["parley"] + CommandLine.arguments.dropFirst()).joined(separator: " ")
    }

    /// "release" or "debug", from where this binary was built.
    static var buildKind: String {
        let path = currentExecutable()
        if path.contains("/release/") { return "release" }
        if path.contains("/debug/") { return "debug" }
        return "unknown"
    }

    static func rates(_ text: String, name: String) throws -> [Double] {
        let values = text.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "_", with: "")) }
        guard !values.isEmpty, values.allSatisfy({ ($0 ?? 0) > 0 }) else {
            throw ValidationError("--\(name) takes positive numbers, comma-separated; got '\(text)'")
        }
        return values.map { $0! }
    }

    struct FanOut: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "fanout",
            abstract: "Meetings full of participants; chat messages at increasing offered rates.",
            discussion: """
                Every participant is a WebSocket client of this process. Messages are published \
                round-robin by the participants, at each offered rate for --step-seconds; a message's \
                latency runs from its publication to its last recipient. The ladder stops after the \
                first rate that is not sustained (fewer than 95% of the offered deliveries arrived \
                during the step, a message did not reach everyone, the backlog took more than 0.5 s \
                to drain, an op was rejected or a client dropped); then one more step runs at half \
                of the peak delivered rate.
                """)

        @OptionGroup var target: Target
        @Option(help: "Meetings.") var meetings = 1
        @Option(help: "Participants per meeting.") var participants = 100
        @Option(help: "Bytes of chat text per message.") var messageBytes = 128
        @Option(help: "Seconds per offered rate.") var stepSeconds = 10.0
        @Option(help: "Offered deliveries per second (messages/s × participants), comma-separated, in order.")
        var deliveries = "12500,25000,50000,100000,200000,400000,800000"
        @Flag(help: "Skip the extra step at half of the peak rate.") var noHalfPeak = false

        func validate() throws {
            _ = try BenchCommand.rates(deliveries, name: "deliveries")
            try refuse(try configuration().problems())
        }

        func configuration() throws -> FanOutConfiguration {
            var configuration = FanOutConfiguration()
            configuration.meetings = meetings
            configuration.participants = participants
            configuration.messageBytes = messageBytes
            configuration.stepSeconds = stepSeconds
            configuration.offeredDeliveries = try BenchCommand.rates(deliveries, name: "deliveries")
            configuration.halfPeak = !noHalfPeak
            configuration.logger = target.logger
            return configuration
        }

        func run() async throws {
            let configuration = try configuration()
            try await target.measure("fanout", into: \.fanout) { try await FanOutBench.run(configuration, on: $0) }
        }
    }

    struct Joins: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "joins",
            abstract: "A join storm: joins per second, up to the first join refused or timed out.",
            discussion: """
                At each offered rate, fresh meetings are filled by participants that connect, say \
                hello and wait for the welcome (tokens are issued beforehand and not timed). A join's \
                latency runs from its scheduled start. The ladder stops after the first step in which \
                a join was refused or timed out.
                """)

        @OptionGroup var target: Target
        @Option(help: "Participants per meeting.") var participantsPerMeeting = 50
        @Option(help: "Offered joins per second, comma-separated, in order.") var rates = "50,100,200,400,800,1600,3200,6400"
        @Option(help: "Seconds per offered rate.") var stepSeconds = 2.0
        @Option(help: "A join without a welcome after this many milliseconds has timed out.") var timeoutMs = 5_000

        func validate() throws {
            try refuse(try configuration().problems())
        }

        func configuration() throws -> JoinStormConfiguration {
            var configuration = JoinStormConfiguration()
            configuration.participantsPerMeeting = participantsPerMeeting
            configuration.offeredJoins = try BenchCommand.rates(rates, name: "rates")
            configuration.stepSeconds = stepSeconds
            configuration.timeoutMs = timeoutMs
            configuration.logger = target.logger
            return configuration
        }

        func run() async throws {
            let configuration = try configuration()
            try await target.measure("joins", into: \.joins) { try await JoinStormBench.run(configuration, on: $0) }
        }
    }

    struct Idle: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "idle",
            abstract: "Memory per idle connection: the server's resident memory growth over thousands of silent participants.")

        @OptionGroup var target: Target
        @Option(help: "Idle clients.") var clients = 5_000
        @Option(help: "Meetings they are spread over.") var meetings = 50
        @Option(help: "Seconds the server gets to settle before each reading.") var settleSeconds = 5.0

        func validate() throws {
            try refuse(configuration().problems())
            if target.url != nil, target.serverPid == nil { throw ValidationError("reading memory needs --server-pid with --url") }
        }

        func configuration() -> IdleMemoryConfiguration {
            var configuration = IdleMemoryConfiguration()
            configuration.clients = clients
            configuration.meetings = meetings
            configuration.settleSeconds = settleSeconds
            configuration.logger = target.logger
            return configuration
        }

        func run() async throws {
            let configuration = configuration()
            try await target.measure("idle", into: \.idle) { try await IdleMemoryBench.run(configuration, on: $0) }
        }
    }

    struct Failover: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "failover",
            abstract: "kill -9 of the collaboration server hosting meetings, under load, in a whole zone.",
            discussion: """
                Starts 'parley serve' (a zone) in a temporary directory, puts SDK clients in meetings \
                sending ops, and kills (SIGKILL) a collaboration server that hosts meetings, one kill \
                at a time once every meeting has a standby again. Per kill: the time until every \
                disrupted meeting accepted an op again, and until every disrupted client resumed. The \
                chaos history check runs too; its anomalies are reported (there should be none).
                """)

        @Option(help: "Kills to measure.") var trials = 20
        @Option(help: "Meetings.") var meetings = 8
        @Option(help: "Clients per meeting (alternating WebSocket and long-polling).") var clients = 4
        @Option(help: "Ops per second per client.") var rate = 10.0
        @Option(help: "Mean time between kills, in milliseconds.") var killIntervalMs = 3_000
        @Option(help: "Seed for the kill timing and the clients' pacing.") var seed: UInt64 = 5
        @Option(help: "Write the JSON result to this file (default: standard output).") var output: String?
        @Option(help: "Log level of the run's messages (standard error).") var logLevel = "error"
        @Flag(help: "Keep the zone's data directory and every process's log (its path is printed to standard error).")
        var keep = false

        func validate() throws {
            try refuse(configuration().problems())
        }

        func configuration() -> FailoverConfiguration {
            var configuration = FailoverConfiguration()
            configuration.trials = trials
            configuration.meetings = meetings
            configuration.clientsPerMeeting = clients
            configuration.opsPerSecondPerClient = rate
            configuration.killIntervalMs = killIntervalMs
            configuration.seed = seed
            configuration.logger = makeLogger(label: "parley.bench", level: logLevel)
            return configuration
        }

        func run() async throws {
            bootstrapLogging(level: logLevel)
            var result = BenchResult(benchmark: "failover", startedAt: Date(), build: BenchCommand.buildKind,
                                     command: BenchCommand.commandLine)
            let directory = try temporaryDirectory()
            defer {
                if keep {
                    FileHandle.standardError.write(Data("parley bench failover: kept \(directory)\n".utf8))
                } else {
                    try? FileManager.default.removeItem(atPath: directory)
                }
            }
            result.failover = try await FailoverBench.run(configuration(), executable: currentExecutable(), directory: directory)
            try writeResult(result, to: output)
        }
    }
}

extension BenchCommand {
    struct LargeMeeting: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "large-meeting",
            abstract: "One large meeting spread over several collaboration servers (edges), against the same meeting on one server.",
            discussion: """
                Starts a zone ('parley serve') with --collabs collaboration servers twice: first with every \
                participant on the meeting's host, then with edges on, so that the locator spreads them \
                evenly over the host, its standby and edges (docs/zone.md, "Edges"). Each participant \
                asks the locator where to connect, as a client does. Then, as in 'fan-out', chat \
                messages at increasing offered rates, each run stopping after its first rate not \
                sustained. Reported per step: deliveries per second, publish-to-last-recipient latency, \
                and the host's CPU time per message.
                """)

        @Option(help: "Participants in the meeting.") var participants = 5_000
        @Option(help: "Collaboration servers in the zone.") var collabs = 4
        @Option(help: "Bytes of chat text per message.") var messageBytes = 128
        @Option(help: "Seconds per offered rate.") var stepSeconds = 10.0
        @Option(help: "Offered deliveries per second (messages/s × participants), comma-separated, in order.")
        var deliveries = "25000,50000,100000,200000,400000"
        @Option(help: "Write the JSON result to this file (default: standard output).") var output: String?
        @Option(help: "Log level of the run's messages (standard error).") var logLevel = "info"

        func validate() throws {
            _ = try BenchCommand.rates(deliveries, name: "deliveries")
            try refuse(try configuration().problems())
        }

        func configuration() throws -> LargeMeetingConfiguration {
            var configuration = LargeMeetingConfiguration()
            configuration.participants = participants
            configuration.collabs = collabs
            configuration.messageBytes = messageBytes
            configuration.stepSeconds = stepSeconds
            configuration.offeredDeliveries = try BenchCommand.rates(deliveries, name: "deliveries")
            configuration.logger = makeLogger(label: "parley.bench", level: logLevel)
            return configuration
        }

        func run() async throws {
            bootstrapLogging(level: logLevel)
            var result = BenchResult(benchmark: "large-meeting", startedAt: Date(), build: BenchCommand.buildKind,
                                     command: BenchCommand.commandLine)
            let directory = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            result.largeMeeting = try await LargeMeetingBench.run(try configuration(), executable: currentExecutable(), directory: directory)
            try writeResult(result, to: output)
        }
    }
}

/// Settings with problems are refused before anything starts, every problem in one message.
private func refuse(_ problems: [String]) throws {
    guard problems.isEmpty else { throw ValidationError(problems.joined(separator: "; ")) }
}

/// Prints the result, or writes it to `output`.
private func writeResult(_ result: BenchResult, to output: String?) throws {
    let json = try result.json()
    if let output {
        try (json + "\n").write(toFile: output, atomically: true, encoding: .utf8)
    } else {
        print(json)
    }
}

/// A fresh directory under /tmp (short: a zone's control socket path must stay under ~100 bytes).
private func temporaryDirectory() throws -> String {
    var template = Array("/tmp/parley-bench-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else {
        throw ValidationError("cannot create a temporary directory under /tmp: errno \(errno)")
    }
    return String(cString: made)
}
