/// How far each running upload's conversion has got, so the page can say "converting page 3
/// of 12" while the upload request itself is still waiting for its answer.
///
/// The page names its upload with `X-Parley-Upload: <id>` (its own choice, 1 to 64 letters,
/// digits, `-` or `_`) and asks `GET /v1/meetings/{id}/uploads/{upload}` with the same join
/// token. An entry exists only while its upload request runs, and is keyed by meeting and
/// participant too, so nobody learns about another's uploads. Entries are bounded: past
/// ``maxEntries`` an upload is simply not tracked (it still works, without a progress
/// report), which cannot happen while conversions themselves are bounded far lower.
actor UploadProgress {
    /// What `GET …/uploads/{upload}` answers, as JSON.
    struct Report: Codable, Equatable, Sendable {
        /// `receiving` (the body is being read), `waiting` (for a converter slot),
        /// `counting` (the pages), `converting` (page `page` of `pages`) or `storing`.
        var state: String
        var page: Int?
        var pages: Int?

        static let receiving = Report(state: "receiving")
        static let waiting = Report(state: "waiting")
        static let counting = Report(state: "counting")
        static let storing = Report(state: "storing")
        static func converting(page: Int, of pages: Int) -> Report { Report(state: "converting", page: page, pages: pages) }
    }

    static let maxEntries = 256

    private var entries: [String: Report] = [:]

    /// Whether `id` is an upload id a page may choose.
    nonisolated static func isValidID(_ id: String) -> Bool {
        (1...64).contains(id.utf8.count) && id.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == 0x2D || byte == 0x5F
        }
    }

    nonisolated static func key(meeting: String, participant: String, upload: String) -> String {
        "\(meeting)\u{0}\(participant)\u{0}\(upload)"
    }

    /// Starts tracking `key`; false (not tracked) when the table is full.
    @discardableResult
    func begin(_ key: String) -> Bool {
        guard entries[key] != nil || entries.count < Self.maxEntries else { return false }
        entries[key] = .receiving
        return true
    }

    /// Records a step; ignored for an upload that is not tracked.
    func update(_ key: String, _ report: Report) {
        if entries[key] != nil { entries[key] = report }
    }

    func end(_ key: String) {
        entries[key] = nil
    }

    func report(_ key: String) -> Report? {
        entries[key]
    }
}
