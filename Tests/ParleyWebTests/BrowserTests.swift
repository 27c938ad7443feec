import Foundation
import Subprocess
import SystemPackage
import ParleyTestSupport
import Testing

/// The meeting page in a real headless Chromium (Debian's chromium and chromium-driver,
/// driven by Selenium), against a real `parley serve --single` that is killed with SIGKILL
/// and restarted. The steps are in Tests/browser/meeting_test.py (which also checks the
/// pages' wording, join links, upload progress, the reconnecting banner, guests, and Leave
/// and Rejoin as a user sees them); screenshots and the
/// server's log go to test-artifacts/ at the top of the repository.
@Suite("The meeting page in a real browser", MachineLoad.processes, .serialized, .timeLimit(.minutes(8)))
struct BrowserTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static var binary: String { BuiltProducts.parley }

    /// Single: `parley serve --single` is killed and started again on the same port. Zone:
    /// the collaboration server hosting the meeting is killed; the pages, served by the web
    /// process, resume on the hot standby over a cross-origin WebSocket.
    @Test("two users and a guest meet: chat, private chat, a PDF turned to page 3, an annotation, a poll; SIGKILL, both resume intact",
          arguments: ["single", "zone"])
    func meeting(_ layout: String) async throws {
        let script = Self.repository.appendingPathComponent("Tests/browser/meeting_test.py").path
        let artifacts = Self.repository.appendingPathComponent("test-artifacts/browser/\(layout)").path
        // Not while a cluster test changes the network interfaces (see NetworkChanges).
        let result = try await NetworkChanges.lock.exclusively {
            try await Subprocess.run(
                .name("python3"), arguments: Arguments([script, "--parley", Self.binary, "--artifacts", artifacts] + (layout == "zone" ? ["--zone"] : [])),
                output: .string(limit: 1 << 20), error: .string(limit: 1 << 20))
        }
        let output = result.standardOutput + result.standardError
        #expect(result.terminationStatus.isSuccess, "the browser test failed; screenshots in \(artifacts)\n\(output)")
        #expect(output.contains("browser test passed"))
    }

    /// The operator's zone page against a real zone: refused to a non-administrator, live
    /// processes and meetings, a restart through the confirmation dialog that fails the
    /// meeting over (listed with its duration), and a forged action refused (Tests/browser/admin_test.py).
    @Test("the zone page: 403 for others; live processes, meetings and failovers; restart with confirmation and CSRF")
    func adminPage() async throws {
        let script = Self.repository.appendingPathComponent("Tests/browser/admin_test.py").path
        let artifacts = Self.repository.appendingPathComponent("test-artifacts/browser/admin").path
        let result = try await NetworkChanges.lock.exclusively {
            try await Subprocess.run(
                .name("python3"), arguments: Arguments([script, "--parley", Self.binary, "--artifacts", artifacts]),
                output: .string(limit: 1 << 20), error: .string(limit: 1 << 20))
        }
        let output = result.standardOutput + result.standardError
        #expect(result.terminationStatus.isSuccess, "the admin browser test failed; screenshots in \(artifacts)\n\(output)")
        #expect(output.contains("admin browser test passed"))
    }
}
