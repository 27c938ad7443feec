import FoundationEssentials
import ParleyCore
@testable import ParleyStore
import Testing

/// What only the SQLite store has: its durability setting.
@Suite struct SQLiteStoreTests {
    @Test func fullSynchronousIsTheDefault() async throws {
        try await withTemporaryDirectory { directory in
            // PRAGMA synchronous: 2 is FULL, 1 is NORMAL.
            let full = try SQLiteStore(directory: directory)
            let normal = try SQLiteStore(directory: directory, synchronous: .normal)
            #expect(try await full.rawInt("PRAGMA synchronous") == 2)
            #expect(try await normal.rawInt("PRAGMA synchronous") == 1)
        }
    }
}
