import FoundationEssentials
import ParleyCore
@testable import ParleyStore
import Testing
import ParleyTestSupport

/// The `Store` contract, on every store: SQLite and PostgreSQL.
@Suite("Store contract", MachineLoad.server) struct StoreContractTests {
    // MARK: - Round trips

    @Test(arguments: StoreKind.allCases)
    func appendedEntriesComeBackExactlyOnRecovery(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await store.createMeeting(standup)
            var live = LiveMeeting(standup)
            try await store.append([standup.id: live.play(3)])
            try await store.append([standup.id: live.play(9)])

            let recovered = try await store.recover(standup.id, historyLimit: 100)
            #expect(recovered.record == standup)
            #expect(recovered.snapshot == nil)
            #expect(recovered.entries == live.entries)
            #expect(recovered.entries.map(\.seq) == Array(1...12))
            #expect(recovered.history == [])
            // Appending under e1 raised the stored epoch from 0.
            #expect(recovered.epoch == Epoch(1))
            #expect(recovered.warnings == [])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func replayFromSeqOneRebuildsTheLiveMeetingWithoutASnapshot(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await store.createMeeting(standup)
            var live = LiveMeeting(standup)
            for _ in 0..<8 { try await store.append([standup.id: live.play(5)]) }

            let recovered = try await store.recover(standup.id, historyLimit: 10)
            let rebuilt = try rebuild(recovered, epoch: Epoch(2))
            #expect(rebuilt.meeting == live.log.meeting)
            #expect(rebuilt.lastSeq == 40)
            #expect(rebuilt.snapshot().outcomes == live.log.snapshot().outcomes)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func recoveryFromSnapshotPlusTailRebuildsTheLiveMeeting(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await store.createMeeting(standup)
            var live = LiveMeeting(standup)
            try await store.append([standup.id: live.play(10)])
            let snapshot = live.log.snapshot()
            try await store.writeSnapshot(standup.id, snapshot)
            try await store.append([standup.id: live.play(7)])

            let recovered = try await store.recover(standup.id, historyLimit: 4)
            #expect(recovered.snapshot == snapshot)
            #expect(recovered.entries == Array(live.entries[10...]))
            #expect(recovered.entries.map(\.seq) == Array(11...17))
            #expect(recovered.history == Array(live.entries[6..<10]))
            #expect(recovered.history.map(\.seq) == [7, 8, 9, 10])
            #expect(recovered.warnings == [])

            let rebuilt = try rebuild(recovered, epoch: Epoch(2))
            #expect(rebuilt.meeting == live.log.meeting)
            #expect(rebuilt.lastSeq == 17)
            #expect(rebuilt.snapshot().outcomes == live.log.snapshot().outcomes)
            // History reaches clients that are behind the snapshot.
            #expect(rebuilt.resume(after: 8) == .replay(Array(live.entries[8...])))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func dataSurvivesClosingAndReopeningTheStore(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, another in
            var live = LiveMeeting(standup)
            try await store.createMeeting(standup)
            try await store.append([standup.id: live.play(6)])
            let snapshot = live.log.snapshot()
            try await store.writeSnapshot(standup.id, snapshot)
            try await store.append([standup.id: live.play(4)])
            try await store.advanceEpoch(standup.id, to: Epoch(5))

            let reopened = try await another()
            #expect(try await reopened.meetings() == [standup])
            #expect(try await reopened.meeting(standup.id) == standup)
            let recovered = try await reopened.recover(standup.id, historyLimit: 0)
            #expect(recovered.snapshot == snapshot)
            #expect(recovered.entries == Array(live.entries[6...]))
            #expect(recovered.epoch == Epoch(5))
            #expect(try rebuild(recovered, epoch: Epoch(6)).meeting == live.log.meeting)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func meetingsAreListedAndCreatedOnce(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            let other = record("retro")
            try await store.createMeeting(standup)
            try await store.createMeeting(other)
            await #expect(throws: StoreError.meetingExists(standup.id)) { try await store.createMeeting(standup) }
            #expect(try await store.meetings() == [other, standup])
            #expect(try await store.meeting("nope") == nil)
            await #expect(throws: StoreError.unknownMeeting("nope")) {
                _ = try await store.recover("nope", historyLimit: 1)
            }
            var live = LiveMeeting(record("nope"))
            await #expect(throws: StoreError.unknownMeeting("nope")) {
                try await store.append(["nope": live.play(1)])
            }
            await #expect(throws: StoreError.unknownMeeting("nope")) {
                try await store.advanceEpoch("nope", to: Epoch(1))
            }
        }
    }

    // MARK: - Fencing and contiguity

    @Test(arguments: StoreKind.allCases)
    func appendUnderAnOlderEpochIsFencedAfterAdvance(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await store.createMeeting(standup)
            var oldHost = LiveMeeting(standup, epoch: Epoch(1))
            try await store.append([standup.id: oldHost.play(2)])
            try await store.advanceEpoch(standup.id, to: Epoch(2))

            await #expect(throws: StoreError.fenced(standup.id, epoch: Epoch(1), current: Epoch(2))) {
                try await store.append([standup.id: oldHost.play(1)])
            }
            let recovered = try await store.recover(standup.id, historyLimit: 0)
            #expect(recovered.entries.map(\.seq) == [1, 2])
            #expect(recovered.epoch == Epoch(2))

            // The new host continues the log under e2.
            var newHost = try rebuild(recovered, epoch: Epoch(2))
            guard case .sequenced(let entry) = newHost.submit(.chat(text: "hello"), by: .participant("bob"),
                                                              opID: "b-1", at: 99_000)
            else { Issue.record("chat was not sequenced"); return }
            try await store.append([standup.id: [entry]])
            #expect(try await store.recover(standup.id, historyLimit: 0).entries.map(\.seq) == [1, 2, 3])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func advanceEpochMustStrictlyIncrease(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await store.createMeeting(standup)
            try await store.advanceEpoch(standup.id, to: Epoch(3))
            await #expect(throws: StoreError.fenced(standup.id, epoch: Epoch(3), current: Epoch(3))) {
                try await store.advanceEpoch(standup.id, to: Epoch(3))
            }
            await #expect(throws: StoreError.fenced(standup.id, epoch: Epoch(2), current: Epoch(3))) {
                try await store.advanceEpoch(standup.id, to: Epoch(2))
            }
            try await store.advanceEpoch(standup.id, to: Epoch(4))
            #expect(try await store.recover(standup.id, historyLimit: 0).epoch == Epoch(4))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func entriesUnderANewerEpochRaiseTheStoredEpoch(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await store.createMeeting(standup)
            var live = LiveMeeting(standup, epoch: Epoch(7))
            try await store.append([standup.id: live.play(1)])
            #expect(try await store.recover(standup.id, historyLimit: 0).epoch == Epoch(7))
            await #expect(throws: StoreError.fenced(standup.id, epoch: Epoch(7), current: Epoch(7))) {
                try await store.advanceEpoch(standup.id, to: Epoch(7))
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func oneFencedMeetingRollsBackTheWholeBatch(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            let retro = record("retro")
            try await store.createMeeting(standup)
            try await store.createMeeting(retro)
            try await store.advanceEpoch(retro.id, to: Epoch(2))
            var good = LiveMeeting(standup, epoch: Epoch(1))
            var stale = LiveMeeting(retro, epoch: Epoch(1))
            await #expect(throws: StoreError.fenced(retro.id, epoch: Epoch(1), current: Epoch(2))) {
                try await store.append([standup.id: good.play(3), retro.id: stale.play(3)])
            }
            #expect(try await store.recover(standup.id, historyLimit: 0).entries == [])
            #expect(try await store.recover(retro.id, historyLimit: 0).entries == [])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aGapOrARepeatedSeqIsNotContiguous(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await store.createMeeting(standup)
            var live = LiveMeeting(standup)
            let entries = live.play(6)
            try await store.append([standup.id: Array(entries[0..<2])])
            await #expect(throws: StoreError.notContiguous(standup.id, expected: 3, found: 5)) {
                try await store.append([standup.id: Array(entries[4...])])
            }
            await #expect(throws: StoreError.notContiguous(standup.id, expected: 3, found: 2)) {
                try await store.append([standup.id: [entries[1], entries[2]]])
            }
            // A gap inside one call is caught too, and nothing of that call is kept.
            await #expect(throws: StoreError.notContiguous(standup.id, expected: 4, found: 5)) {
                try await store.append([standup.id: [entries[2], entries[4]]])
            }
            #expect(try await store.recover(standup.id, historyLimit: 0).entries.map(\.seq) == [1, 2])
        }
    }

    // MARK: - Snapshots

    @Test(arguments: StoreKind.allCases)
    func onlyTheTwoNewestSnapshotsAreKept(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await store.createMeeting(standup)
            var live = LiveMeeting(standup)
            for _ in 0..<3 {
                try await store.append([standup.id: live.play(4)])
                try await store.writeSnapshot(standup.id, live.log.snapshot())
            }
            #expect(try await store.rawInt("SELECT count(*) FROM snapshots") == 2)
            #expect(try await store.rawInt("SELECT min(seq) FROM snapshots") == 8)
            // The log is never trimmed by a snapshot.
            #expect(try await store.rawInt("SELECT count(*) FROM log") == 12)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func snapshotsAreFencedAndCannotRunAheadOfTheLog(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await store.createMeeting(standup)
            var live = LiveMeeting(standup, epoch: Epoch(1))
            try await store.append([standup.id: live.play(4)])
            var ahead = live.log.snapshot()
            ahead.seq = 5
            await #expect(throws: StoreError.notContiguous(standup.id, expected: 4, found: 5)) {
                try await store.writeSnapshot(standup.id, ahead)
            }
            try await store.advanceEpoch(standup.id, to: Epoch(2))
            await #expect(throws: StoreError.fenced(standup.id, epoch: Epoch(1), current: Epoch(2))) {
                try await store.writeSnapshot(standup.id, live.log.snapshot())
            }
            #expect(try await store.rawInt("SELECT count(*) FROM snapshots") == 0)
        }
    }

    // MARK: - Damage

    @Test(arguments: StoreKind.allCases)
    func corruptNewestSnapshotFallsBackToThePreviousSnapshotAndTheLog(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await store.createMeeting(standup)
            var live = LiveMeeting(standup)
            try await store.append([standup.id: live.play(8)])
            let older = live.log.snapshot()
            try await store.writeSnapshot(standup.id, older)
            try await store.append([standup.id: live.play(8)])
            try await store.writeSnapshot(standup.id, live.log.snapshot())
            try await store.append([standup.id: live.play(4)])

            try await store.rawExecute("""
                UPDATE snapshots SET body = \(store.concatenated(["substr(body, 1, 20)", store.blob("XXXX".utf8), "substr(body, 25)"]))
                WHERE seq = 16
                """)
            let recovered = try await store.recover(standup.id, historyLimit: 0)
            #expect(recovered.snapshot == older)
            #expect(recovered.entries.map(\.seq) == Array(9...20))
            #expect(recovered.warnings == [
                "snapshot at seq 16 failed its checksum; falling back to the snapshot at seq 8",
            ])
            let rebuilt = try rebuild(recovered, epoch: Epoch(2))
            #expect(rebuilt.meeting == live.log.meeting)
            #expect(rebuilt.snapshot().outcomes == live.log.snapshot().outcomes)
        }
    }

    @Test("a standby's catch-up reads only the log after its seq, never a checkpoint, and still stops at a corrupt entry", arguments: StoreKind.allCases)
    func recoverAfterASeqReadsOnlyTheLogTail(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await store.createMeeting(standup)
            var live = LiveMeeting(standup)
            let first = live.play(10)
            try await store.append([standup.id: first])
            try await store.writeSnapshot(standup.id, live.log.snapshot())
            let rest = live.play(6)
            try await store.append([standup.id: rest])
            // A checkpoint that does not even verify is not read.
            try await store.rawExecute("UPDATE snapshots SET checksum = \(store.blob([0]))")

            let tail = try await store.recover(standup.id, after: 12)
            #expect(tail.snapshot == nil)
            #expect(tail.entries == Array(rest.dropFirst(2)))
            #expect(tail.warnings.isEmpty)
            #expect(try await store.recover(standup.id, after: 16).entries.isEmpty)
            // Before the checkpoint too: the standby may lag behind it.
            #expect(try await store.recover(standup.id, after: 7).entries == Array((first + rest).dropFirst(7)))

            try await store.rawExecute("UPDATE log SET checksum = \(store.blob([0])) WHERE seq = 14")
            let cut = try await store.recover(standup.id, after: 12)
            #expect(cut.entries.map(\.seq) == [13])
            #expect(cut.warnings.count == 1)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func everySnapshotCorruptMeansReplayFromSeqOne(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await store.createMeeting(standup)
            var live = LiveMeeting(standup)
            for _ in 0..<2 {
                try await store.append([standup.id: live.play(6)])
                try await store.writeSnapshot(standup.id, live.log.snapshot())
            }
            try await store.rawExecute("UPDATE snapshots SET body = substr(body, 1, 30)")
            let recovered = try await store.recover(standup.id, historyLimit: 5)
            #expect(recovered.snapshot == nil)
            #expect(recovered.entries == live.entries)
            #expect(recovered.history == [])
            #expect(recovered.warnings == [
                "snapshot at seq 12 failed its checksum; falling back to replaying the log from seq 1",
                "snapshot at seq 6 failed its checksum; falling back to replaying the log from seq 1",
            ])
            #expect(try rebuild(recovered, epoch: Epoch(2)).meeting == live.log.meeting)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func corruptLogEntryCutsTheLogBeforeItAndTheLogContinuesThere(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await store.createMeeting(standup)
            var live = LiveMeeting(standup)
            try await store.append([standup.id: live.play(10)])
            try await store.rawExecute("""
                UPDATE log SET body = \(store.concatenated(["substr(body, 1, 10)", store.blob("XX".utf8), "substr(body, 13)"])) WHERE seq = 6
                """)
            let recovered = try await store.recover(standup.id, historyLimit: 0)
            #expect(recovered.entries == Array(live.entries[0..<5]))
            #expect(recovered.warnings == [
                "log entry at seq 6 failed its checksum; the log is cut there and the 4 stored entries after it "
                    + "are dropped (moved to quarantine); the meeting is recovered through seq 5",
            ])
            #expect(try await store.rawInt("SELECT count(*) FROM log_quarantine") == 5)

            // A new host continues at seq 6; the next recovery is clean.
            try await store.advanceEpoch(standup.id, to: Epoch(2))
            var host = try rebuild(recovered, epoch: Epoch(2))
            guard case .sequenced(let entry) = host.submit(.chat(text: "still here"), by: .participant("bob"),
                                                           opID: "b-new", at: 99_000)
            else { Issue.record("chat was not sequenced"); return }
            #expect(entry.seq == 6)
            try await store.append([standup.id: [entry]])
            let again = try await store.recover(standup.id, historyLimit: 0)
            #expect(again.entries == Array(live.entries[0..<5]) + [entry])
            #expect(again.warnings == [])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func truncatedLogBodyCutsTheLogLikewise(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await store.createMeeting(standup)
            var live = LiveMeeting(standup)
            try await store.append([standup.id: live.play(9)])
            try await store.rawExecute("UPDATE log SET body = substr(body, 1, length(body) / 2) WHERE seq = 7")
            let recovered = try await store.recover(standup.id, historyLimit: 0)
            #expect(recovered.entries == Array(live.entries[0..<6]))
            #expect(recovered.warnings.count == 1)
            #expect(recovered.warnings.first?.hasPrefix("log entry at seq 7 failed its checksum;") == true)
            #expect(recovered.warnings.first?.contains("the 2 stored entries after it") == true)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func truncatedBodyWithAMatchingChecksumFailsToDecodeAndCutsTheLog(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await store.createMeeting(standup)
            var live = LiveMeeting(standup)
            try await store.append([standup.id: live.play(9)])
            let body = try StoredForm.encode(live.entries[3])
            let truncated = body.prefix(body.count / 2)
            try await store.rawExecute("""
                UPDATE log SET body = \(store.blob(truncated)), checksum = \(store.blob(StoredForm.checksum(Data(truncated))))
                WHERE seq = 4
                """)
            let recovered = try await store.recover(standup.id, historyLimit: 0)
            #expect(recovered.entries == Array(live.entries[0..<3]))
            #expect(recovered.warnings.count == 1)
            #expect(recovered.warnings.first?.hasPrefix("log entry at seq 4 does not decode") == true)
            #expect(recovered.warnings.first?.contains("the 5 stored entries after it") == true)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func missingLogEntryCutsTheLogAtTheGap(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await store.createMeeting(standup)
            var live = LiveMeeting(standup)
            try await store.append([standup.id: live.play(8)])
            try await store.rawExecute("DELETE FROM log WHERE seq = 5")
            let recovered = try await store.recover(standup.id, historyLimit: 0)
            #expect(recovered.entries == Array(live.entries[0..<4]))
            #expect(recovered.warnings == [
                "log entry at seq 5 is missing (the next stored entry is at seq 6); the log is cut there and the "
                    + "3 stored entries after it are dropped (moved to quarantine); the meeting is recovered through seq 4",
            ])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func historyIsCutAtACorruptEntryWithoutAnError(_ kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            try await store.createMeeting(standup)
            var live = LiveMeeting(standup)
            try await store.append([standup.id: live.play(12)])
            try await store.writeSnapshot(standup.id, live.log.snapshot())
            try await store.append([standup.id: live.play(2)])
            #expect(try await store.recover(standup.id, historyLimit: 5).history.map(\.seq) == [8, 9, 10, 11, 12])

            try await store.rawExecute("UPDATE log SET checksum = \(store.blob([UInt8](repeating: 0, count: 32))) WHERE seq = 10")
            let recovered = try await store.recover(standup.id, historyLimit: 5)
            #expect(recovered.history == Array(live.entries[10..<12]))
            #expect(recovered.entries.map(\.seq) == [13, 14])
            #expect(recovered.warnings == [])
            #expect(try rebuild(recovered, epoch: Epoch(2)).meeting == live.log.meeting)
        }
    }
}
