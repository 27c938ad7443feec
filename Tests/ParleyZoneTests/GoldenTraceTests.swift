import FoundationEssentials
import ParleyZone
import Testing

// Golden traces: the zone's pure rules (`Placement`, `ManagerElection`) replayed from readable
// scenario files in `Traces/`, in the style of etcd raft's `testdata/*.txt`. A change in
// behaviour shows up as a diff of a text file that a reviewer can read.
//
// A trace file, line by line:
//
//     # A comment: says what the scenario shows and why. Kept as written.
//     placement move-timeout-ms=1000          <- the header: which machine, and its tuning
//     > 0 register collab-1 machine=m1        <- an input: `> [TIME] COMMAND WORDS...`
//       open standup on collab-1 standby=-    <- what it answered, one action a line, indented
//                                                by exactly two spaces; no lines: no actions
//
// - Blank lines and `#` lines may go anywhere; they end the list of actions above them.
// - The first other line is the header: `placement` or `election`, with options (see
//   `GoldenTraceMachines.swift` for each machine's header options, commands and actions).
// - TIME is in milliseconds. Commands that take the time need it, the others must not have it
//   (`hosting`, `show`), and it never goes back within a file.
// - Words are separated by single spaces; `key=value` is an option; `"..."` is one word that
//   may hold spaces (a reason). Absent values are written `-`, epochs `e3`, locates `#1`.
// - `show` is not an input: it prints the machine's state (places, or role and lease) as its
//   "actions", to pin down state a scenario depends on.
// - Anything else (an unknown command or option, a missing word, trailing whitespace, an
//   indented line without its input) fails the test at that line.
//
// The test feeds every input to a fresh machine, renders what it returns in the same form and
// compares. A mismatch is reported at the input's line in the trace file, with a line diff
// (`-` expected, `+` actual). When a change in behaviour is intended, run the test with
// `PARLEY_UPDATE_TRACES=1`: it rewrites the files with the actual actions (comments and inputs
// stay as written) instead of failing; review the result with `git diff`.

/// Next to this file: the tests run from a source checkout, and the test target declares no
/// resources (which would need a change to Package.swift).
private let tracesDirectory = URL(filePath: #filePath).deletingLastPathComponent().appending(path: "Traces").path
private let traceNames = ((try? FileManager.default.contentsOfDirectory(atPath: tracesDirectory)) ?? [])
    .filter { $0.hasSuffix(".trace") }.sorted()
private let updatingTraces = ProcessInfo.processInfo.environment["PARLEY_UPDATE_TRACES"] == "1"

@Suite("Golden traces of the zone's rules")
struct GoldenTraceTests {
    @Test("the trace directory holds scenarios for placement and for the election")
    func tracesFound() {
        #expect(traceNames.filter { $0.hasPrefix("placement-") }.count >= 5, "in \(tracesDirectory): \(traceNames)")
        #expect(traceNames.filter { $0.hasPrefix("election-") }.count >= 2, "in \(tracesDirectory): \(traceNames)")
    }

    @Test("a trace replays to exactly the actions written in it", arguments: traceNames)
    func replay(_ name: String) throws {
        let path = tracesDirectory + "/" + name
        let text = String(decoding: try #require(FileManager.default.contents(atPath: path)), as: UTF8.self)
        func record(_ message: String, line: Int) {
            Issue.record(Comment(rawValue: "\(name):\(line): \(message)"),
                         sourceLocation: SourceLocation(fileID: "ParleyZoneTests/\(name)", filePath: path, line: line, column: 1))
        }
        let trace: Trace
        do { trace = try Trace(text) } catch { return record(error.message, line: error.line) }
        let replayed: Replay
        do { replayed = try Replay(trace) } catch { return record(error.message, line: error.line) }
        if updatingTraces {
            if replayed.text != text { try Data(replayed.text.utf8).write(to: URL(filePath: path)) }
            return
        }
        for mismatch in replayed.mismatches {
            record("""
                the actions differ (- expected, + actual); if the change is meant, rerun with \
                PARLEY_UPDATE_TRACES=1 and review the git diff
                > \(mismatch.step.input)
                \(diff(expected: mismatch.step.expected, actual: mismatch.actual).joined(separator: "\n"))
                """, line: mismatch.step.lineNumber)
        }
    }

    @Test("the trace grammar refuses what it does not know, at the line where it is")
    func strictGrammar() {
        func error(_ text: String) -> TraceError? {
            do { _ = try Replay(try Trace(text)); return nil } catch { return error }
        }
        #expect(error("placement\n> 0 tick\n") == nil)
        #expect(error("placement\n> 0 tick\n> 5 dance\n") == TraceError("unknown command `dance`", line: 3))
        #expect(error("placement\n> 0 tick\ntick\n") == TraceError("not a comment, input or indented action: `tick`", line: 3))
        #expect(error("placement\n# note\n  open standup on collab-1 standby=-\n")
            == TraceError("an action must follow its input line", line: 3))
        #expect(error("placement\n> 0 tick \n") == TraceError("trailing whitespace", line: 2))
        #expect(error("placement\n> 5 tick\n> 4 tick\n") == TraceError("time goes back from 5 to 4", line: 3))
        #expect(error("placement\n> hosting standup on collab-1 e1 extra\n") == TraceError("unexpected `extra`", line: 2))
        #expect(error("placement\n> 3 hosting standup on collab-1 e1\n") == TraceError("`hosting` takes no time", line: 2))
        #expect(error("placement\n> tick\n") == TraceError("`tick` needs a time: `> 100 tick`", line: 2))
        #expect(error("placement move-timeout-ms=soon\n") == TraceError("move-timeout-ms: `soon` is not a number", line: 1))
        #expect(error("election me=manager-1 lease-ms=100 poll-ms=200\n")
            == TraceError("the lease must outlast a poll and the safety margin", line: 1))
        #expect(error("raft\n") == TraceError("unknown machine `raft`: `placement` or `election`", line: 1))
    }
}

/// A line the trace grammar does not accept, and where it is.
struct TraceError: Error, Equatable {
    var message: String
    var line: Int

    init(_ message: String, line: Int = 0) {
        self.message = message
        self.line = line
    }
}

/// A trace file as written: its header, its inputs with the actions they expect, and the
/// comments around them (kept, so that a rewritten file differs only in its actions).
struct Trace {
    struct Step {
        let lineNumber: Int
        /// The input as written, after `> `.
        let input: String
        /// The expected actions, without their indentation.
        var expected: [String] = []
    }
    enum Line {
        case verbatim(String)
        case step(Step)
    }

    var header: (text: String, lineNumber: Int)?
    var lines: [Line] = []

    init(_ text: String) throws(TraceError) {
        var afterStep = false
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = index + 1
            if line.last?.isWhitespace == true { throw TraceError("trailing whitespace", line: lineNumber) }
            if line.hasPrefix("> ") {
                guard header != nil else { throw TraceError("the header (`placement` or `election`) comes first", line: lineNumber) }
                lines.append(.step(Step(lineNumber: lineNumber, input: String(line.dropFirst(2)))))
                afterStep = true
            } else if line.hasPrefix("  ") {
                guard afterStep, case .step(var step) = lines.removeLast() else {
                    throw TraceError("an action must follow its input line", line: lineNumber)
                }
                step.expected.append(String(line.dropFirst(2)))
                lines.append(.step(step))
            } else if line.isEmpty || line.hasPrefix("#") {
                lines.append(.verbatim(String(line)))
                afterStep = false
            } else if header == nil {
                header = (String(line), lineNumber)
                lines.append(.verbatim(String(line)))
            } else {
                throw TraceError("not a comment, input or indented action: `\(line)`", line: lineNumber)
            }
        }
        // The file's final newline leaves one empty last line; it is not part of the trace.
        if case .verbatim("") = lines.last { lines.removeLast() }
    }
}

/// A trace fed to a fresh machine: the file as it would read with the actual actions, and
/// the steps whose actions differ from the expected ones.
struct Replay {
    var text = ""
    var mismatches: [(step: Trace.Step, actual: [String])] = []

    init(_ trace: Trace) throws(TraceError) {
        guard let header = trace.header else { throw TraceError("no header (`placement` or `election`)", line: 1) }
        var machine: any TraceMachine
        do throws(TraceError) {
            var words = try Words(header.text)
            switch try words.word("the machine") {
            case "placement": machine = try PlacementTrace(&words)
            case "election": machine = try ElectionTrace(&words)
            case let other: throw TraceError("unknown machine `\(other)`: `placement` or `election`")
            }
            try words.end()
        } catch { throw TraceError(error.message, line: header.lineNumber) }
        var lastMs: Int64 = .min
        for line in trace.lines {
            guard case .step(let step) = line else {
                if case .verbatim(let verbatim) = line { text += verbatim + "\n" }
                continue
            }
            let actual: [String]
            do throws(TraceError) {
                var input = try TraceInput(step.input)
                if let atMs = input.atMs {
                    guard atMs >= lastMs else { throw TraceError("time goes back from \(lastMs) to \(atMs)") }
                    lastMs = atMs
                }
                actual = try machine.apply(&input)
                try input.words.end()
            } catch { throw TraceError(error.message, line: step.lineNumber) }
            text += (["> " + step.input] + actual.map { "  " + $0 }).joined(separator: "\n") + "\n"
            if actual != step.expected { mismatches.append((step, actual)) }
        }
    }
}

/// One machine's commands: feeds an input to the machine and renders what it answered, one
/// line per action, in the form the trace files use.
protocol TraceMachine {
    mutating func apply(_ input: inout TraceInput) throws(TraceError) -> [String]
}

/// An input line: its time when it has one, its command, and the words that follow.
struct TraceInput {
    let atMs: Int64?
    let command: String
    var words: Words

    init(_ text: String) throws(TraceError) {
        words = try Words(text)
        let first = try words.word("a command")
        if let atMs = Int64(first) {
            self.atMs = atMs
            command = try words.word("a command after the time")
        } else {
            atMs = nil
            command = first
        }
    }

    /// The time, for a command that takes it.
    func nowMs() throws(TraceError) -> Int64 {
        guard let atMs else { throw TraceError("`\(command)` needs a time: `> 100 \(command)`") }
        return atMs
    }

    /// For a command that takes no time (it has none in the machine's API).
    func timeless() throws(TraceError) {
        if atMs != nil { throw TraceError("`\(command)` takes no time") }
    }
}

/// The words of a line: positional words in order, and `key=value` options. Each is to be
/// used exactly once; ``end()`` refuses what is left over.
struct Words {
    private var positional: [String] = []
    private var options: [(key: String, value: String)] = []

    init(_ text: some StringProtocol) throws(TraceError) {
        var rest = Substring(text)
        while let first = rest.first {
            if first == " " {
                rest = rest.dropFirst()
            } else if first == "\"" {
                let body = rest.dropFirst()
                guard let close = body.firstIndex(of: "\"") else { throw TraceError("a quote is not closed: `\(rest)`") }
                positional.append(String(body[..<close]))
                rest = body[body.index(after: close)...]
            } else {
                let word = rest.prefix { $0 != " " }
                rest = rest.dropFirst(word.count)
                if let equals = word.firstIndex(of: "=") {
                    options.append((String(word[..<equals]), String(word[word.index(after: equals)...])))
                } else {
                    positional.append(String(word))
                }
            }
        }
    }

    mutating func word(_ what: String) throws(TraceError) -> String {
        guard !positional.isEmpty else { throw TraceError("missing \(what)") }
        return positional.removeFirst()
    }

    /// The next word, which must be `literal` (a word that makes the line read as a sentence).
    mutating func expect(_ literal: String) throws(TraceError) {
        let word = try word("`\(literal)`")
        if word != literal { throw TraceError("expected `\(literal)`, found `\(word)`") }
    }

    mutating func rest() -> [String] {
        defer { positional = [] }
        return positional
    }

    /// Every value of the option `key`, in order (an option may repeat).
    mutating func values(_ key: String) -> [String] {
        defer { options.removeAll { $0.key == key } }
        return options.filter { $0.key == key }.map(\.value)
    }

    mutating func value(_ key: String) throws(TraceError) -> String? {
        let values = values(key)
        if values.count > 1 { throw TraceError("`\(key)=` given \(values.count) times") }
        return values.first
    }

    mutating func number<Number: FixedWidthInteger>(_ key: String, default fallback: Number) throws(TraceError) -> Number {
        guard let text = try value(key) else { return fallback }
        return try parseNumber(text, key)
    }

    func end() throws(TraceError) {
        if let word = positional.first { throw TraceError("unexpected `\(word)`") }
        if let option = options.first { throw TraceError("unknown option `\(option.key)=`") }
    }
}

func parseNumber<Number: FixedWidthInteger>(_ text: String, _ what: String) throws(TraceError) -> Number {
    guard let number = Number(text) else { throw TraceError("\(what): `\(text)` is not a number") }
    return number
}

/// A line diff: two spaces for a line in both, `-` for expected only, `+` for actual only.
func diff(expected: [String], actual: [String]) -> [String] {
    // common[i][j]: the longest common subsequence of expected[i...] and actual[j...].
    var common = Array(repeating: Array(repeating: 0, count: actual.count + 1), count: expected.count + 1)
    for i in expected.indices.reversed() {
        for j in actual.indices.reversed() {
            common[i][j] = expected[i] == actual[j] ? common[i + 1][j + 1] + 1 : max(common[i + 1][j], common[i][j + 1])
        }
    }
    var lines: [String] = []
    var (i, j) = (0, 0)
    while i < expected.count || j < actual.count {
        if i < expected.count, j < actual.count, expected[i] == actual[j] {
            lines.append("    " + expected[i])
            (i, j) = (i + 1, j + 1)
        } else if j == actual.count || (i < expected.count && common[i + 1][j] >= common[i][j + 1]) {
            lines.append("-   " + expected[i])
            i += 1
        } else {
            lines.append("+   " + actual[j])
            j += 1
        }
    }
    return lines
}
