import FoundationEssentials
import ParleyZone
import Testing

@Suite("Web settings")
struct WebSettingsTests {
    @Test("a zone file may set part of the web section; bad values are named")
    func partialAndProblems() throws {
        let zone = try JSONDecoder().decode(ZoneConfiguration.self, from: Data(#"{"web": {"maxFailedSignIns": 3, "passwordCost": 40}}"#.utf8))
        #expect(zone.web.maxFailedSignIns == 3)
        #expect(zone.web.lockoutSeconds == WebSettings().lockoutSeconds)
        #expect(zone.problems() == ["web.passwordCost must be 4...31"])
    }
}
