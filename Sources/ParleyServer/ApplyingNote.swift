import FoundationEssentials
import Logging
import ParleyCore
import ParleyStore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The note a host keeps of the op it is applying to one meeting (see ``PoisonGuard``).
/// A fixed-size record rewritten in place: two `pwrite`s per op, no fsync (a process crash
/// keeps the page cache; only the machine's crash loses the note, and then there is no
/// crash loop to break).
final class ApplyingNote: Sendable {
    private let descriptor: Int32
    private static let recordSize = 512

    init?(guard poison: PoisonGuard, meeting: MeetingID) {
        let folder = poison.directory + "/" + poison.process
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let path = folder + "/" + Self.fileName(meeting)
        descriptor = open(path, O_WRONLY | O_CREAT, 0o600)
        guard descriptor >= 0 else { return nil }
        idle()
    }

    deinit { close(descriptor) }

    func applying(_ participant: ParticipantID, _ op: OpID) {
        write("\(getpid()) op \(participant.rawValue) \(op.rawValue)")
    }

    func idle() { write("\(getpid()) idle") }

    private func write(_ line: String) {
        var bytes = Array(line.utf8.prefix(Self.recordSize - 1))
        bytes += [UInt8](repeating: UInt8(ascii: " "), count: Self.recordSize - 1 - bytes.count) + [UInt8(ascii: "\n")]
        _ = bytes.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
    }

    /// A crashed process lingers as a zombie until its parent reaps it; that is dead too.
    private static func isAlive(_ pid: Int32) -> Bool {
        guard kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let state = stat.split(separator: ")").last?.split(separator: " ").first else { return true }
        return state != "Z" && state != "X"
    }

    static func fileName(_ meeting: MeetingID) -> String {
        String(meeting.rawValue.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" })
    }

    /// Reads the notes every gone process left for `meeting`, counts each op they were
    /// applying as a crash in the store, and removes those notes. Returns the ops that have
    /// now crashed `poison.afterCrashes` times or more.
    static func collectCrashes(_ meeting: MeetingID, guard poison: PoisonGuard, store: any Store, now: Millis,
                               logger: Logger) async -> Set<OpOutcomes.Key> {
        let name = fileName(meeting)
        let folders = (try? FileManager.default.contentsOfDirectory(atPath: poison.directory)) ?? []
        for folder in folders {
            let path = poison.directory + "/" + folder + "/" + name
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { continue }
            let words = text.split(separator: " ", omittingEmptySubsequences: true).map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            guard let pid = words.first.flatMap({ Int32($0) }), pid != getpid() else { continue }
            guard words.count >= 4, words[1] == "op" else {
                if !isAlive(pid) { try? FileManager.default.removeItem(atPath: path) }
                continue
            }
            // The meeting is being taken from that process, which was applying an op. A
            // crashing process can take a while to die (the backtracer runs first, and the
            // supervisor kills it at the heartbeat timeout): give it that long.
            for _ in 0..<60 where isAlive(pid) { try? await Task.sleep(for: .milliseconds(50)) }
            try? FileManager.default.removeItem(atPath: path)
            let participant = ParticipantID(words[2])
            let op = OpID(words[3])
            do {
                let count = try await store.recordCrash(meeting, participant: participant, op: op, at: now)
                logger.error("a process died while applying an op", metadata: [
                    "meeting": "\(meeting)", "process": "\(folder)", "pid": "\(pid)", "participant": "\(participant)",
                    "op": "\(op)", "crashes": "\(count)", "poison_after": "\(poison.afterCrashes)",
                ])
            } catch {
                logger.warning("cannot record a crash", metadata: ["meeting": "\(meeting)", "error": "\(error)"])
            }
        }
        do {
            let crashed = try await store.crashes(meeting).filter { $0.count >= poison.afterCrashes }
            return Set(crashed.map { OpOutcomes.Key(participant: $0.participant, opID: $0.op) })
        } catch {
            logger.warning("cannot read crashed ops", metadata: ["meeting": "\(meeting)", "error": "\(error)"])
            return []
        }
    }
}
