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

    @Test("the sandbox override, the meeting quota and the upload bound are read from the web section and range-checked")
    func uploadKeys() throws {
        let defaults = WebSettings()
        #expect(!defaults.allowUnsandboxedConversion && defaults.meetingDocumentBytes == 200 << 20 && defaults.maxConcurrentUploads == 8)
        #expect(defaults.problems().isEmpty)
        let file = (name: "zone.json", contents: Data(
            #"{"web": {"allowUnsandboxedConversion": true, "meetingDocumentBytes": 0, "maxConcurrentUploads": 0}}"#.utf8))
        #expect(throws: ConfigurationProblems(source: "in zone.json", problems: [
            "web.meetingDocumentBytes must be at least 1", "web.maxConcurrentUploads must be 1...256",
        ])) { try ZoneConfiguration.read(ConfigurationSources(file: file)) }
        let allowed = (name: "zone.json", contents: Data(#"{"web": {"allowUnsandboxedConversion": true}}"#.utf8))
        #expect(try ZoneConfiguration.read(ConfigurationSources(file: allowed)).web.allowUnsandboxedConversion)
        var settings = WebSettings()
        settings.maxConcurrentUploads = 257
        #expect(settings.problems() == ["web.maxConcurrentUploads must be 1...256"])
    }
}
