import FoundationEssentials
import ParleyCore
@testable import ParleyStore
import Testing

@Suite struct SQLiteStoreTests {
    // MARK: - Round trips

    @Test func appendedEntriesComeBackExactlyOnRecovery() async throws {
        try await withStore { store, _ in
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

    @Test func replayFromSeqOneRebuildsTheLiveMeetingWithoutASnapshot() async throws {
        try await withStore { store, _ in
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

    @Test func recoveryFromSnapshotPlusTailRebuildsTheLiveMeeting() async throws {
        try await withStore { store, _ in
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

    @Test func dataSurvivesClosingAndReopeningTheStore() async throws {
        try await withTemporaryDirectory { directory in
            var live = LiveMeeting(standup)
            var snapshot: Snapshot?
            do {
                let store = try SQLiteStore(directory: directory)
                try await store.createMeeting(standup)
                try await store.append([standup.id: live.play(6)])
                snapshot = live.log.snapshot()
                try await store.writeSnapshot(standup.id, snapshot!)
                try await store.append([standup.id: live.play(4)])
                try await store.advanceEpoch(standup.id, to: Epoch(5))
            }
            let reopened = try SQLiteStore(directory: directory)
            #expect(try await reopened.meetings() == [standup])
            #expect(try await reopened.meeting(standup.id) == standup)
            let recovered = try await reopened.recover(standup.id, historyLimit: 0)
            #expect(recovered.snapshot == snapshot)
            #expect(recovered.entries == Array(live.entries[6...]))
            #expect(recovered.epoch == Epoch(5))
            #expect(try rebuild(recovered, epoch: Epoch(6)).meeting == live.log.meeting)
        }
    }

    @Test func fullSynchronousIsTheDefault() async throws {
        try await withTemporaryDirectory { directory in
            // PRAGMA synchronous: 2 is FULL, 1 is NORMAL.
            let full = try SQLiteStore(directory: directory)
            let normal = try SQLiteStore(directory: directory, synchronous: .normal)
            #expect(try await full.rawInt("PRAGMA synchronous") == 2)
            #expect(try await normal.rawInt("PRAGMA synchronous") == 1)
        }
    }

    @Test func meetingsAreListedAndCreatedOnce() async throws {
        try await withStore { store, _ in
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

    @Test func appendUnderAnOlderEpochIsFencedAfterAdvance() async throws {
        try await withStore { store, _ in
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

    @Test func advanceEpochMustStrictlyIncrease() async throws {
        try await withStore { store, _ in
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

    @Test func entriesUnderANewerEpochRaiseTheStoredEpoch() async throws {
        try await withStore { store, _ in
            try await store.createMeeting(standup)
            var live = LiveMeeting(standup, epoch: Epoch(7))
            try await store.append([standup.id: live.play(1)])
            #expect(try await store.recover(standup.id, historyLimit: 0).epoch == Epoch(7))
            await #expect(throws: StoreError.fenced(standup.id, epoch: Epoch(7), current: Epoch(7))) {
                try await store.advanceEpoch(standup.id, to: Epoch(7))
            }
        }
    }

    @Test func oneFencedMeetingRollsBackTheWholeBatch() async throws {
        try await withStore { store, _ in
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

    @Test func aGapOrARepeatedSeqIsNotContiguous() async throws {
        try await withStore { store, _ in
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

    @Test func onlyTheTwoNewestSnapshotsAreKept() async throws {
        try await withStore { store, _ in
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

    @Test func snapshotsAreFencedAndCannotRunAheadOfTheLog() async throws {
        try await withStore { store, _ in
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

    @Test func corruptNewestSnapshotFallsBackToThePreviousSnapshotAndTheLog() async throws {
        try await withStore { store, _ in
            try await store.createMeeting(standup)
            var live = LiveMeeting(standup)
            try await store.append([standup.id: live.play(8)])
            let older = live.log.snapshot()
            try await store.writeSnapshot(standup.id, older)
            try await store.append([standup.id: live.play(8)])
            try await store.writeSnapshot(standup.id, live.log.snapshot())
            try await store.append([standup.id: live.play(4)])

            try await store.rawExecute("""
                UPDATE snapshots SET body = CAST(substr(body, 1, 20) || 'XXXX' || substr(body, 25) AS BLOB)
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

    @Test("a standby's catch-up reads only the log after its seq, never a checkpoint, and still stops at a corrupt entry")
    func recoverAfterASeqReadsOnlyTheLogTail() async throws {
        try await withStore { store, _ in
            try await store.createMeeting(standup)
            var live = LiveMeeting(standup)
            let first = live.play(10)
            try await store.append([standup.id: first])
            try await store.writeSnapshot(standup.id, live.log.snapshot())
            let rest = live.play(6)
            try await store.append([standup.id: rest])
            // A checkpoint that does not even verify is not read.
            try await store.rawExecute("UPDATE snapshots SET checksum = X'00'")

            let tail = try await store.recover(standup.id, after: 12)
            #expect(tail.snapshot == nil)
            #expect(tail.entries == Array(rest.dropFirst(2)))
            #expect(tail.warnings.isEmpty)
            #expect(try await store.recover(standup.id, after: 16).entries.isEmpty)
            // Before the checkpoint too: the standby may lag behind it.
            #expect(try await store.recover(standup.id, after: 7).entries == Array((first + rest).dropFirst(7)))

            try await store.rawExecute("UPDATE log SET checksum = X'00' WHERE seq = 14")
            let cut = try await store.recover(standup.id, after: 12)
            #expect(cut.entries.map(\.seq) == [13])
            #expect(cut.warnings.count == 1)
        }
    }

    @Test func everySnapshotCorruptMeansReplayFromSeqOne() async throws {
        try await withStore { store, _ in
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

    @Test func corruptLogEntryCutsTheLogBeforeItAndTheLogContinuesThere() async throws {
        try await withStore { store, _ in
            try await store.createMeeting(standup)
            var live = LiveMeeting(standup)
            try await store.append([standup.id: live.play(10)])
            try await store.rawExecute("""
                UPDATE log SET body = CAST(substr(body, 1, 10) || 'XX' || substr(body, 13) AS BLOB) WHERE seq = 6
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

    @Test func truncatedLogBodyCutsTheLogLikewise() async throws {
        try await withStore { store, _ in
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

    @Test func truncatedBodyWithAMatchingChecksumFailsToDecodeAndCutsTheLog() async throws {
        try await withStore { store, _ in
            try await store.createMeeting(standup)
            var live = LiveMeeting(standup)
            try await store.append([standup.id: live.play(9)])
            let body = try SQLiteStore.encode(live.entries[3])
            let truncated = body.prefix(body.count / 2)
            try await store.rawExecute("""
                UPDATE log SET body = \(blobLiteral(truncated)), checksum = \(blobLiteral(SQLiteStore.checksum(Data(truncated))))
                WHERE seq = 4
                """)
            let recovered = try await store.recover(standup.id, historyLimit: 0)
            #expect(recovered.entries == Array(live.entries[0..<3]))
            #expect(recovered.warnings.count == 1)
            #expect(recovered.warnings.first?.hasPrefix("log entry at seq 4 does not decode") == true)
            #expect(recovered.warnings.first?.contains("the 5 stored entries after it") == true)
        }
    }

    @Test func missingLogEntryCutsTheLogAtTheGap() async throws {
        try await withStore { store, _ in
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

    @Test func historyIsCutAtACorruptEntryWithoutAnError() async throws {
        try await withStore { store, _ in
            try await store.createMeeting(standup)
            var live = LiveMeeting(standup)
            try await store.append([standup.id: live.play(12)])
            try await store.writeSnapshot(standup.id, live.log.snapshot())
            try await store.append([standup.id: live.play(2)])
            #expect(try await store.recover(standup.id, historyLimit: 5).history.map(\.seq) == [8, 9, 10, 11, 12])

            try await store.rawExecute("UPDATE log SET checksum = zeroblob(32) WHERE seq = 10")
            let recovered = try await store.recover(standup.id, historyLimit: 5)
            #expect(recovered.history == Array(live.entries[10..<12]))
            #expect(recovered.entries.map(\.seq) == [13, 14])
            #expect(recovered.warnings == [])
            #expect(try rebuild(recovered, epoch: Epoch(2)).meeting == live.log.meeting)
        }
    }
}
