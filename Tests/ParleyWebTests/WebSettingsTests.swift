import Configuration
import FoundationEssentials
import ParleyZone
import Testing

@Suite("Web settings")
struct WebSettingsTests {
    @Test("a zone file may set part of the web section; bad values are named")
    func partialAndProblems() throws {
        let file = (name: "zone.json", contents: Data(#"{"web": {"maxFailedSignIns": 3, "passwordCost": 12}}"#.utf8))
        let zone = try ZoneConfiguration.read(ConfigurationSources(file: file))
        #expect(zone.web.maxFailedSignIns == 3)
        #expect(zone.web.lockoutSeconds == WebSettings().lockoutSeconds)
        var tooCostly = zone
        tooCostly.web.passwordCost = 40
        #expect(tooCostly.problems() == ["web.passwordCost must be 4...31"])
    }
}
