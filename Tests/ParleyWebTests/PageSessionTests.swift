import Foundation
import Subprocess
import SystemPackage
import Testing
import ParleyTestSupport

/// The meeting page's protocol state machine (`Public/js/meeting/session.js`) is pure, like
/// the SDK's `ClientSession`: Node's test runner drives it directly in Tests/js, with time
/// passed in. Node is Debian's `nodejs` (.ci/run installs it).
@Suite("The meeting page's session rules, in Node", MachineLoad.server)
struct PageSessionTests {
    @Test("Tests/js passes under node --test")
    func nodeTests() async throws {
        let tests = BrowserTests.repository.appendingPathComponent("Tests/js").path
        let result = try await Subprocess.run(
            .name("node"), arguments: ["--test", tests], output: .string(limit: 1 << 20), error: .string(limit: 1 << 20))
        let output = result.standardOutput + result.standardError
        #expect(result.terminationStatus.isSuccess, "\(output)")
        // The runner's own count, so a directory with no tests cannot pass.
        #expect(output.contains("# fail 0") && !output.contains("# pass 0"), "\(output)")
    }
}
