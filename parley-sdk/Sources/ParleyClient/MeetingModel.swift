import Observation

/// A meeting for SwiftUI: the client's state on the main actor, observable, kept current
/// by ``run()``.
///
/// ```swift
/// @State private var model: MeetingModel
///
/// var body: some View {
///     List(model.meeting?.chat ?? [], id: \.seq) { Text($0.text) }
///         .overlay { if model.connectionState == .reconnecting { ProgressView() } }
///         .task { await model.run() }
/// }
/// ```
@MainActor
@Observable
public final class MeetingModel {
    /// The meeting as this participant may see it; nil before the first welcome.
    public private(set) var meeting: Meeting?
    /// The connection's state, as the client last announced it.
    public private(set) var connectionState: ConnectionState
    /// The last seq reflected in ``meeting``.
    public private(set) var lastSeq: Seq = 0
    /// Who this participant is, after the first welcome.
    public private(set) var participantID: ParticipantID?
    /// The last error the server reported, until the next welcome.
    public private(set) var lastError: ProtocolError?

    /// The client this model follows. Connect, send and leave through it (or ``send(_:timeout:)``).
    public let client: MeetingClient

    /// A model that follows `client`; it stays empty until ``run()`` starts.
    public init(client: MeetingClient) {
        self.client = client
        connectionState = .connecting
    }

    /// This participant, once welcomed.
    public var me: Participant? { participantID.flatMap { meeting?.participant($0) } }

    /// Follows the client until its session ends or the calling task is cancelled (as a
    /// view's `.task` is when the view goes away). Reads the client once at the start, so
    /// it may begin before or after ``MeetingClient/connect()``.
    public func run() async {
        let events = client.subscribe()
        await refresh()
        for await event in events {
            // The client's own state is read by `refresh`; only errors live here.
            switch event {
            case .welcome: lastError = nil
            case .error(let error): lastError = error
            case .connection, .entry, .signal, .dropped: break
            }
            await refresh()
        }
    }

    /// Sends an op through the client; see ``MeetingClient/send(_:timeout:)``.
    @discardableResult
    public func send(_ operation: MeetingOp, timeout: Duration? = nil) async throws(ParleyError) -> Ack {
        try await client.send(operation, timeout: timeout)
    }

    private func refresh() async {
        let view = await client.view()
        meeting = view.meeting
        lastSeq = view.lastSeq
        participantID = view.participantID
        connectionState = view.connectionState
    }
}

extension MeetingClient {
    /// What a view shows, read in one hop.
    struct View: Sendable {
        var meeting: Meeting?
        var lastSeq: Seq
        var participantID: ParticipantID?
        var connectionState: ConnectionState
    }

    func view() -> View {
        View(meeting: meeting, lastSeq: lastSeq, participantID: participantID, connectionState: connectionState)
    }
}
