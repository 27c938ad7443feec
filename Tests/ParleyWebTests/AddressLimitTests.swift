import Foundation
@testable import ParleyServer
@testable import ParleyWeb
import ParleyZone
import Testing

@Suite("Limits per client address")
struct AddressLimitTests {
    @Test("an address gets its burst, then one action per share of a minute; another address is apart")
    func throttle() {
        var throttle = AddressThrottle(perMinute: 3)
        #expect((0..<3).map { _ in throttle.take("10.0.0.1", nowMillis: 0) } == [nil, nil, nil])
        #expect(throttle.take("10.0.0.1", nowMillis: 0) == 20, "one token every 20 s")
        #expect(throttle.take("10.0.0.2", nowMillis: 0) == nil)
        #expect(throttle.take("10.0.0.1", nowMillis: 19_000) == 1)
        #expect(throttle.take("10.0.0.1", nowMillis: 20_000) == nil)
        #expect(throttle.take("10.0.0.1", nowMillis: 20_000) == 20)
    }

    @Test("an IPv6 client is counted by its /64; IPv4 as it is, mapped or with a port")
    func addressesCounted() {
        #expect(AddressLimits.counted("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64")
        #expect(AddressLimits.counted("2001:db8:1:2:bbbb:cccc:dddd:eeee") == "2001:db8:1:2::/64")
        #expect(AddressLimits.counted("2001:db8::1") == "2001:db8:0:0::/64")
        #expect(AddressLimits.counted("[2001:DB8:1:2::9]") == "2001:db8:1:2::/64")
        #expect(AddressLimits.counted("::ffff:203.0.113.7") == "203.0.113.7")
        #expect(AddressLimits.counted("203.0.113.7:5123") == "203.0.113.7")
        #expect(AddressLimits.counted("127.0.0.1") == "127.0.0.1")
    }

    @Test("it keeps at most maxAddresses: refilled ones go first, then the longest idle")
    func bounded() {
        var throttle = AddressThrottle(perMinute: 60, maxAddresses: 100)
        for index in 0..<100 { _ = throttle.take("a\(index)", nowMillis: Int64(index)) }
        // a0...a99 each used a token at their time; by 1 s later all have refilled.
        _ = throttle.take("late", nowMillis: 1_100)
        #expect(throttle.addressesKept <= 100)
        var busy = AddressThrottle(perMinute: 1, maxAddresses: 100)
        for index in 0..<150 { _ = busy.take("b\(index)", nowMillis: Int64(index)) }
        #expect(busy.addressesKept <= 100)
        // The newest address is still limited: it was not among the longest idle.
        #expect(busy.take("b149", nowMillis: 200) != nil)
    }

    @Test("sign-ins, registrations and meeting creation are limited per address, with Retry-After; a forged X-Forwarded-For changes nothing unless trusted")
    func overHTTP() async throws {
        var settings = WebServer.fastSettings
        settings.signInsPerAddressPerMinute = 3
        settings.registrationsPerAddressPerMinute = 2
        settings.meetingsPerAddressPerMinute = 2
        let clock = TestClock()
        try await WebServer.with(settings, clock: clock.read) { server in
            let alice = Visitor(server)
            #expect(try await alice.register("alice", name: "Alice").status == 302)
            #expect(try await Visitor(server).register("bob", name: "Bob").status == 302)
            let third = try await Visitor(server).register("carol", name: "Carol")
            #expect(third.status == 429 && third.problemCode == "rate_limited")
            #expect(third.headers["retry-after"] == "30")

            // Forms that fail their CSRF check (another site's page posting through visitors'
            // browsers) do not spend the address's budget.
            for _ in 0..<5 {
                let forged = try await Visitor(server).post("/signin", [("username", "alice"), ("password", "x")])
                #expect(forged.status == 403 && forged.problemCode == "csrf_failed")
            }
            let guesser = Visitor(server, headers: ["X-Forwarded-For": "203.0.113.9"])
            var statuses: [Int] = []
            for account in ["alice", "bob", "dave", "erin"] { statuses.append(try await guesser.signIn(account, password: "wrong").status) }
            #expect(statuses.prefix(3).allSatisfy { $0 != 429 } && statuses.last == 429, "\(statuses)")
            clock.advance(byMs: 20_000)
            #expect(try await guesser.signIn("alice", password: "wrong").status != 429, "a token came back after 20 s")

            for title in ["one", "two", "three"] {
                let form = try await alice.get("/center")
                let created = try await alice.post("/center/meetings", [("_csrf", form.csrf ?? ""), ("title", title), ("action", "start")])
                #expect((created.status == 429) == (title == "three"), "\(title): \(created.status)")
            }
            #expect(server.logs.all.contains { $0.contains("rate limited") && $0.contains("create_meeting") })
        }
        settings.trustForwardedFor = true
        try await WebServer.with(settings, clock: clock.read) { server in
            for (index, address) in ["198.51.100.1", "198.51.100.2", "198.51.100.3"].enumerated() {
                let visitor = Visitor(server, headers: ["X-Forwarded-For": "10.9.9.9, \(address)"])
                let registered = try await visitor.register("user\(index)", name: "User")
                #expect(registered.status == 302, "each address has its own share")
            }
        }
    }
}
