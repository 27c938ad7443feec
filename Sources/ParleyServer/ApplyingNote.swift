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
public final class ApplyingNote: Sendable {
    private let descriptor: Int32
    private static let recordSize = 512

    private let meeting: MeetingID

    init?(guard poison: PoisonGuard, meeting: MeetingID) {
        let folder = poison.directory + "/" + poison.process
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let path = folder + "/" + Self.fileName(meeting)
        descriptor = open(path, O_WRONLY | O_CREAT, 0o600)
        guard descriptor >= 0 else { return nil }
        self.meeting = meeting
        idle()
    }

    deinit { close(descriptor) }

    /// The meeting goes in the note too: a machine's supervisor, which counts the crashes of
    /// its own processes for a cluster (``sweep(directory:store:now:afterCrashes:logger:)``),
    /// reads it there.
    func applying(_ participant: ParticipantID, _ op: OpID) {
        write("\(getpid()) op \(participant.rawValue) \(op.rawValue) \(meeting.rawValue)")
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
            guard let note = Note(path: path), note.pid != getpid() else { continue }
            if note.op != nil {
                // The meeting is being taken from that process, which was applying an op. A
                // crashing process can take a while to die (the backtracer runs first, and the
                // supervisor kills it at the heartbeat timeout): give it that long.
                for _ in 0..<60 where isAlive(note.pid) { try? await Task.sleep(for: .milliseconds(50)) }
            }
            // Counted even if it still lives: the meeting is taken from it mid-op either way.
            await count(note, at: path, meeting: meeting, process: folder, poison: poison.afterCrashes, store: store, now: now,
                        logger: logger, onlyIfGone: note.op == nil)
        }
        do {
            let crashed = try await store.crashes(meeting).filter { $0.count >= poison.afterCrashes }
            return Set(crashed.map { OpOutcomes.Key(participant: $0.participant, opID: $0.op) })
        } catch {
            logger.warning("cannot read crashed ops", metadata: ["meeting": "\(meeting)", "error": "\(error)"])
            return []
        }
    }

    /// What a note says: who wrote it, and the op it was applying (with its meeting, in notes
    /// written since the meeting was added), or nil when idle.
    struct Note {
        var pid: Int32
        var op: (participant: ParticipantID, op: OpID, meeting: MeetingID?)?

        init?(path: String) {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
            let words = text.split(separator: " ", omittingEmptySubsequences: true)
                .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
            guard let pid = words.first.flatMap({ Int32($0) }) else { return nil }
            self.pid = pid
            op = words.count >= 4 && words[1] == "op"
                ? (ParticipantID(words[2]), OpID(words[3]), words.count >= 5 ? MeetingID(words[4]) : nil) : nil
        }
    }

    /// A note (whose writer is gone, with `onlyIfGone`): removed when idle; when it names an
    /// op, counted in the store as a crash, exactly once. The note is claimed by a rename
    /// first, so that of the processes that find it (the next host, and in a cluster the
    /// machine's supervisor) one counts it.
    private static func count(_ note: Note, at path: String, meeting: MeetingID, process: String, poison afterCrashes: Int,
                              store: any Store, now: Millis, logger: Logger, onlyIfGone: Bool) async {
        if onlyIfGone, isAlive(note.pid) { return }
        guard let (participant, op, _) = note.op else {
            try? FileManager.default.removeItem(atPath: path)
            return
        }
        let claimed = path + ".counting-\(getpid())"
        guard rename(path, claimed) == 0 else { return }  // another process counts it
        defer { try? FileManager.default.removeItem(atPath: claimed) }
        do {
            let count = try await store.recordCrash(meeting, participant: participant, op: op, at: now)
            logger.error("a process died while applying an op", metadata: [
                "meeting": "\(meeting)", "process": "\(process)", "pid": "\(note.pid)", "participant": "\(participant)",
                "op": "\(op)", "crashes": "\(count)", "poison_after": "\(afterCrashes)",
            ])
        } catch {
            logger.warning("cannot record a crash", metadata: ["meeting": "\(meeting)", "error": "\(error)"])
        }
    }

    /// Counts the crashes that notes under `directory` (one folder per process) record, for
    /// every process that is gone. In a cluster a machine's supervisor runs this: the next
    /// host of a meeting may be on another machine and cannot read this machine's notes, and
    /// the store the crashes are counted in is shared, so the poison limit holds
    /// cluster-wide. Notes of an older format (no meeting) are left to the next host here.
    public static func sweep(directory: String, store: any Store, now: Millis, afterCrashes: Int, logger: Logger) async {
        let folders = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for folder in folders {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory + "/" + folder)) ?? []
            for name in names where !name.contains(".counting-") {
                let path = directory + "/" + folder + "/" + name
                guard let note = Note(path: path) else { continue }
                if note.op != nil, note.op?.meeting == nil { continue }
                await count(note, at: path, meeting: note.op?.meeting ?? MeetingID(name), process: folder, poison: afterCrashes,
                            store: store, now: now, logger: logger, onlyIfGone: true)
            }
        }
    }
}
