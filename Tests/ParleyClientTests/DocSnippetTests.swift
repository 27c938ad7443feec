import Foundation
import Testing

/// Every Swift block of the README and of the SDK's guide is code that compiles: it must
/// appear, line for line (indentation aside), in the sample app's sources, which `swift
/// build` compiles against the SDK alone, or in these tests, which also run. Package
/// manifest fragments (`.package(…)`) are the one exception.
@Suite("Documentation snippets")
struct DocSnippetTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static var documents: [URL] {
        let guide = root.appendingPathComponent("parley-sdk/Sources/ParleyClient/ParleyClient.docc")
        let articles = (try? FileManager.default.contentsOfDirectory(at: guide, includingPropertiesForKeys: nil)) ?? []
        return [root.appendingPathComponent("README.md")] + articles.filter { $0.pathExtension == "md" }.sorted { $0.path < $1.path }
    }

    /// The Swift files snippets may come from, each as its non-empty lines, trimmed.
    static var sources: [(String, [String])] {
        let folders = ["Examples/MeetingApp/Sources/MeetingApp", "Tests/ParleyClientTests"]
        return folders.flatMap { folder -> [(String, [String])] in
            let directory = root.appendingPathComponent(folder)
            let files = (try? FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)) ?? []
            return files.filter { $0.pathExtension == "swift" }.map { file in
                (folder + "/" + file.lastPathComponent, Self.lines((try? String(contentsOf: file, encoding: .utf8)) ?? ""))
            }
        }
    }

    static func lines(_ text: String) -> [String] {
        text.split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
    }

    /// The bodies of the ```swift blocks in `markdown`.
    static func swiftBlocks(_ markdown: String) -> [String] {
        var blocks: [String] = []
        var current: [Substring]?
        for line in markdown.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if current == nil, trimmed == "```swift" {
                current = []
            } else if current != nil, trimmed == "```" {
                blocks.append(current!.joined(separator: "\n"))
                current = nil
            } else if current != nil {
                current!.append(line)
            }
        }
        return blocks
    }

    static func contains(_ haystack: [String], _ needle: [String]) -> Bool {
        guard !needle.isEmpty, needle.count <= haystack.count else { return needle.isEmpty }
        return (0...(haystack.count - needle.count)).contains { Array(haystack[$0..<$0 + needle.count]) == needle }
    }

    @Test("the README and the guide have Swift blocks to check")
    func thereAreSnippets() throws {
        let readme = try String(contentsOf: Self.root.appendingPathComponent("README.md"), encoding: .utf8)
        #expect(Self.swiftBlocks(readme).count >= 2)
        #expect(Self.documents.count >= 3, "the README and at least two guide articles: \(Self.documents.map(\.lastPathComponent))")
    }

    @Test("every Swift block is compiled code from the sample app or the SDK's tests, with only SDK imports")
    func snippetsCompile() throws {
        let sources = Self.sources
        var checked = 0
        for document in Self.documents {
            let markdown = try String(contentsOf: document, encoding: .utf8)
            for block in Self.swiftBlocks(markdown) {
                let lines = Self.lines(block)
                if lines.contains(where: { $0.hasPrefix(".package(") }) { continue }
                let imports = lines.filter { $0.hasPrefix("import ") }
                let allowed: Set = ["import Foundation", "import ParleyClient", "import ParleyTesting", "import SwiftUI",
                                    "import Testing"]
                #expect(Set(imports).isSubset(of: allowed), "\(document.lastPathComponent): \(imports)")
                let body = lines.filter { !$0.hasPrefix("import ") }
                let found = sources.contains { Self.contains($0.1, body) }
                #expect(found, "\(document.lastPathComponent): this block is not in the sample app or the tests:\n\(block)")
                checked += 1
            }
        }
        #expect(checked >= 2)
    }
}
