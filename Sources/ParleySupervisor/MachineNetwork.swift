import Foundation
import Subprocess
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Machines of a local cluster in Linux network namespaces of their own, so that one can be
/// cut off from the others for real: each namespace has a veth pair to a bridge in this
/// namespace, on a private /24 (the bridge is .1, machine N is .(10+N)). Cutting a machine off
/// takes its link down on the bridge side: its packets go nowhere, its connections hang
/// rather than close, as in a real partition. Needs root (CAP_NET_ADMIN) and iproute2.
public struct MachineNetwork: Sendable {
    /// A few random hex digits that keep this network's names apart from another run's.
    public let id: String
    public let subnet: Int
    public let machines: Int

    /// Whether this process may make namespaces (root, and `ip` installed).
    public static var isPermitted: Bool {
        geteuid() == 0 && FileManager.default.isExecutableFile(atPath: ip)
    }

    static let ip = "/usr/sbin/ip"

    public var bridgeAddress: String { "10.250.\(subnet).1" }
    public func address(ofMachine index: Int) -> String { "10.250.\(subnet).\(10 + index)" }
    public var cidr: String { "10.250.\(subnet).0/24" }
    public func namespace(ofMachine index: Int) -> String { "parley-\(id)-m\(index)" }
    var bridge: String { "pb\(id)" }
    func outside(_ index: Int) -> String { "p\(id)m\(index)a" }
    func inside(_ index: Int) -> String { "p\(id)m\(index)b" }

    /// Makes the bridge and one namespace per machine (numbered from 1).
    public static func create(machines: Int) async throws -> MachineNetwork {
        let id = String(UInt32.random(in: 0...0xFFFF), radix: 16)
        let network = MachineNetwork(id: id, subnet: Int.random(in: 1...250), machines: machines)
        do {
            try await network.run(["link", "add", network.bridge, "type", "bridge"])
            try await network.run(["addr", "add", network.bridgeAddress + "/24", "dev", network.bridge])
            try await network.run(["link", "set", network.bridge, "up"])
            for index in 1...machines {
                let namespace = network.namespace(ofMachine: index)
                try await network.run(["netns", "add", namespace])
                try await network.run(["link", "add", network.outside(index), "type", "veth", "peer", "name", network.inside(index)])
                try await network.run(["link", "set", network.inside(index), "netns", namespace])
                try await network.run(["link", "set", network.outside(index), "master", network.bridge])
                try await network.run(["link", "set", network.outside(index), "up"])
                try await network.run(["-n", namespace, "addr", "add", network.address(ofMachine: index) + "/24", "dev", network.inside(index)])
                try await network.run(["-n", namespace, "link", "set", network.inside(index), "up"])
                try await network.run(["-n", namespace, "link", "set", "lo", "up"])
            }
        } catch {
            await network.remove()
            throw error
        }
        return network
    }

    /// `command` run inside machine `index`'s namespace: the executable and arguments.
    public func inside(machine index: Int, _ command: [String]) -> (String, [String]) {
        (Self.ip, ["netns", "exec", namespace(ofMachine: index)] + command)
    }

    /// Cuts machine `index` off from everything: the bridge, the other machines, the store.
    public func isolate(machine index: Int) async throws {
        try await run(["link", "set", outside(index), "down"])
    }

    /// Reconnects machine `index`.
    public func heal(machine index: Int) async throws {
        try await run(["link", "set", outside(index), "up"])
    }

    /// Removes the namespaces (their veths go with them) and the bridge.
    public func remove() async {
        for index in 1...machines {
            _ = try? await run(["netns", "del", namespace(ofMachine: index)])
        }
        _ = try? await run(["link", "del", bridge])
    }

    private func run(_ arguments: [String]) async throws {
        let result = try await Subprocess.run(.path(FilePath(Self.ip)), arguments: Arguments(arguments),
                                              output: .discarded, error: .string(limit: 1 << 14))
        guard result.terminationStatus.isSuccess else {
            throw LocalPostgresError("ip \(arguments.joined(separator: " ")) failed: \(result.standardError)")
        }
    }
}
