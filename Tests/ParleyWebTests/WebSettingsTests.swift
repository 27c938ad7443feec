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

    @Test("the sandbox override, the meeting quota and the upload bound are read from the web section and range-checked")
    func uploadKeys() throws {
        let defaults = WebSettings()
        #expect(!defaults.allowUnsandboxedConversion && defaults.meetingDocumentBytes == 200 << 20 && defaults.maxConcurrentUploads == 8)
        #expect(defaults.problems().isEmpty)
        let zone = try JSONDecoder().decode(ZoneConfiguration.self, from: Data(
            #"{"web": {"allowUnsandboxedConversion": true, "meetingDocumentBytes": 0, "maxConcurrentUploads": 0}}"#.utf8))
        #expect(zone.web.allowUnsandboxedConversion)
        #expect(zone.problems() == ["web.meetingDocumentBytes must be at least 1", "web.maxConcurrentUploads must be 1...256"])
        var settings = WebSettings()
        settings.maxConcurrentUploads = 257
        #expect(settings.problems() == ["web.maxConcurrentUploads must be 1...256"])
    }
}
