import FoundationEssentials
import NIOCore
import PostgresNIO

extension PostgresStore: DocumentRows {
    public func storeDocument(_ document: StoredDocument) async throws(StoreError) {
        let manifest = String(decoding: document.manifest, as: UTF8.self)
        try await withTransaction { connection in
            try await connection.query("""
                INSERT INTO documents (meeting, document, manifest, created_at)
                VALUES (\(document.meeting), \(document.document), \(manifest), \(document.createdAt))
                """)
            guard !document.pages.isEmpty else { return }
            let ids = document.pages.map(\.id), types = document.pages.map(\.contentType)
            let bytes = document.pages.map { ByteBuffer(bytes: $0.bytes) }
            try await connection.query("""
                INSERT INTO document_pages (meeting, page, document, content_type, bytes)
                SELECT \(document.meeting), p.page, \(document.document), p.content_type, p.bytes
                FROM unnest(\(ids)::text[], \(types)::text[], \(bytes)::bytea[]) AS p(page, content_type, bytes)
                """)
        }
    }

    public func documentPage(meeting: String, page: String) async throws(StoreError) -> StoredDocument.Page? {
        try await withConnection { connection in
            try await connection.query("""
                SELECT content_type, bytes FROM document_pages WHERE meeting = \(meeting) AND page = \(page)
                """).first.map { row in
                let (contentType, bytes) = try row.decode((String, ByteBuffer).self)
                return StoredDocument.Page(id: page, contentType: contentType, bytes: Array(bytes.readableBytesView))
            }
        }
    }

    public func documentPageIDs(meeting: String, document: String) async throws(StoreError) -> [String]? {
        try await withConnection { connection in
            let rows = try await connection.query("""
                SELECT p.page FROM documents d LEFT JOIN document_pages p ON p.meeting = d.meeting AND p.document = d.document
                WHERE d.meeting = \(meeting) AND d.document = \(document)
                """)
            guard !rows.isEmpty else { return nil }
            return try rows.compactMap { try $0.decode(String?.self) }
        }
    }

    public func documentBytes(meeting: String) async throws(StoreError) -> Int {
        try await withConnection { connection in
            let rows = try await connection.query("""
                SELECT (SELECT coalesce(sum(octet_length(bytes)), 0) FROM document_pages WHERE meeting = \(meeting))
                     + (SELECT coalesce(sum(octet_length(manifest)), 0) FROM documents WHERE meeting = \(meeting))
                """)
            return Int(try rows.first?.decode(Int64.self) ?? 0)
        }
    }

    public func deleteDocument(meeting: String, document: String) async throws(StoreError) -> Bool {
        try await withConnection { connection in
            // The pages go with it (ON DELETE CASCADE), in the same statement.
            let rows = try await connection.query("""
                DELETE FROM documents WHERE meeting = \(meeting) AND document = \(document) RETURNING document
                """)
            return !rows.isEmpty
        }
    }
}
