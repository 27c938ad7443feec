import ArgumentParser
import Foundation
import ParleyServer
import ParleySupervisor
import ParleyZone

/// `parley cluster`: a zone whose processes run on several machines.
struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Prepare and run a zone spread over several machines, sharing a PostgreSQL store.",
        subcommands: [ClusterInit.self])
}

/// `parley cluster init`: what every machine of a cluster must share, made once.
struct ClusterInit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Make each machine's data directory: the zone secret and the token keys, the same on every machine.",
        discussion: """
            Reads the cluster configuration (a zone configuration with a "machines" section) and
            writes OUT/MACHINE for each machine: zone/secret (mode 0600, in a 0700 directory), which
            authenticates the links between processes, and keys/token-signing.ed25519 (0600) and
            its .pub, which sign and verify join tokens. Copy OUT/MACHINE to that machine and run
            'parley serve --config cluster.json --machine MACHINE --data DIR --store postgres://...'
            there. Existing files are kept, so running it again adds machines without changing
            the secrets of those already running.
            """)

    @Option(help: "The cluster configuration (JSON).")
    var config: String

    @Option(help: "Where to write one data directory per machine.")
    var out: String

    func run() async throws {
        let configuration = try ZoneConfiguration.load(from: config)
        guard let first = configuration.machines.first else {
            throw ValidationError("\(config) names no machines: add a \"machines\" section (see the README, \"A cluster\")")
        }
        // The first machine's files are made (or kept); every other machine gets copies.
        let origin = out + "/" + first.name
        try ClusterFiles.prepare(origin: origin)
        _ = try TokenKeys.ensure(dataDirectory: origin)
        for machine in configuration.machines {
            let data = out + "/" + machine.name
            if machine.name != first.name {
                try ClusterFiles.copyShared(from: origin, to: data,
                                            files: ["zone/secret", "keys/token-signing.ed25519", "keys/token-signing.ed25519.pub"])
            }
            print("\(machine.name) (\(machine.address)): \(data)")
        }
    }
}
