import Foundation
import Logging
import ParleyCore
@testable import ParleyServer
import ParleyStore
import Testing
import ParleyTestSupport

/// A host that dies while applying an op leaves a note naming it; the crash is counted in the
/// store once, whoever finds the note: the meeting's next host on this machine, or (in a
/// cluster, where the next host may be on another machine) this machine's supervisor.
@Suite("Counting crashes from applying notes", MachineLoad.server)
struct CrashCountingTests {
    @Test("a dead process's note is counted exactly once, however many sweeps and next hosts find it at once; an idle one is removed uncounted")
    func countedOnce() async throws {
        let directory = try TemporaryDirectory()
        let (store, applying) = try await Self.store(in: directory.path, meetings: ["m-crashy", "m-moved"])
        let meeting = MeetingID("m-crashy")
        let dead = try Self.deadPID()
        // The format `ApplyingNote.applying` writes: pid, "op", participant, op id, meeting.
        try Self.note("\(dead) op p-ada op-7 \(meeting.rawValue)", process: "collab-2", meeting: meeting, in: applying)
        try Self.note("\(dead) idle", process: "collab-4", meeting: meeting, in: applying)
        // A meeting no host here builds again (it moved to another machine): only a sweep counts it.
        let moved = MeetingID("m-moved")
        try Self.note("\(dead) op p-cy op-9 \(moved.rawValue)", process: "collab-2", meeting: moved, in: applying)
        let poison = PoisonGuard(directory: applying, process: "collab-1", afterCrashes: 1)
        let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

        async let first: Void = ApplyingNote.sweep(directory: applying, store: store, now: 10, afterCrashes: 1, logger: quiet)
        async let second: Void = ApplyingNote.sweep(directory: applying, store: store, now: 10, afterCrashes: 1, logger: quiet)
        async let host = ApplyingNote.collectCrashes(meeting, guard: poison, store: store, now: 10, logger: quiet)
        _ = await (first, second)
        let poisoned = await host

        // Counted once, by whichever of the three claimed the note first.
        #expect(try await store.crashes(meeting) == [OpCrashes(participant: "p-ada", op: "op-7", count: 1)])
        #expect(try await store.crashes(moved) == [OpCrashes(participant: "p-cy", op: "op-9", count: 1)])
        // The host sees the count if it was recorded before it looked (a sweep may still be
        // recording it); it never sees an op that was not counted.
        #expect(poisoned.isSubset(of: [OpOutcomes.Key(participant: "p-ada", opID: "op-7")]))
        for process in ["collab-2", "collab-4"] {
            let left = (try? FileManager.default.contentsOfDirectory(atPath: applying + "/" + process)) ?? []
            #expect(left.isEmpty, "\(process) still has \(left)")
        }

        // Swept again: nothing more is counted.
        await ApplyingNote.sweep(directory: applying, store: store, now: 20, afterCrashes: 1, logger: quiet)
        #expect(try await store.crashes(meeting).map(\.count) == [1])
        #expect(try await store.crashes(moved).map(\.count) == [1])
    }

    @Test("a sweep leaves a live process's note and a note without its meeting (an older host's) alone")
    func sweepLeavesWhatItCannotCount() async throws {
        let directory = try TemporaryDirectory()
        let (store, applying) = try await Self.store(in: directory.path, meetings: ["m-old"])
        let meeting = MeetingID("m-old")
        try Self.note("\(getpid()) op p-ada op-1 \(meeting.rawValue)", process: "collab-1", meeting: meeting, in: applying)
        try Self.note("\(try Self.deadPID()) op p-ada op-2", process: "collab-2", meeting: meeting, in: applying)
        await ApplyingNote.sweep(directory: applying, store: store, now: 10, afterCrashes: 2,
                                 logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        #expect(try await store.crashes(meeting).isEmpty)
        for process in ["collab-1", "collab-2"] {
            #expect((try? FileManager.default.contentsOfDirectory(atPath: applying + "/" + process))?.count == 1)
        }
    }

    /// A store in `directory` with these meetings, and where the notes go.
    static func store(in directory: String, meetings: [MeetingID]) async throws -> (SQLiteStore, String) {
        let store = try SQLiteStore(directory: directory, synchronous: .normal)
        for meeting in meetings {
            try await store.createMeeting(MeetingRecord(id: meeting, title: meeting.rawValue, settings: MeetingSettings(), createdAt: 1))
        }
        return (store, directory + "/applying")
    }

    static func note(_ text: String, process: String, meeting: MeetingID, in directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory + "/" + process, withIntermediateDirectories: true)
        let padded = text + String(repeating: " ", count: 511 - text.utf8.count) + "\n"
        try Data(padded.utf8).write(to: URL(fileURLWithPath: directory + "/" + process + "/" + ApplyingNote.fileName(meeting)))
    }

    /// The pid of a process that has exited and been reaped.
    static func deadPID() throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/true")
        try process.run()
        process.waitUntilExit()
        return process.processIdentifier
    }
}
