import ArgumentParser

@main
struct Parley: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parley",
        abstract: "A real-time meeting server that never loses a meeting.",
        subcommands: [Serve.self, MeetingCommand.self, Join.self, ZoneCommand.self, ClusterCommand.self, CtlCommand.self, NodeCommand.self, ChaosCommand.self, BenchCommand.self, SimCommand.self]
    )
}
