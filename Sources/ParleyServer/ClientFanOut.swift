import Logging
import NIOCore
import ParleyCore
import ParleyProtocol

/// How a meeting's frames reach its client connections on this server, the same whether the
/// meeting is hosted here or served from a copy: each frame is encoded once per meeting
/// (twice if private), and a connection that cannot keep up is reported, never waited for.
struct ClientFanOut {
    let encoder: FrameEncoder
    let logger: Logger
    let metrics: ServerMetrics

    /// The welcome and the replay are a backlog the client reads at its own pace; only what
    /// comes from now on is queued (and counted) behind it.
    func welcome(_ connection: ClientConnection, _ participant: ParticipantID, _ welcome: Welcome, replay: ArraySlice<LogEntry>) {
        connection.markAttached(participant: participant)
        connection.welcomed(welcome.mode)
        let lead = ByteBuffer(bytes: encoder.encode(.welcome(welcome)))
        connection.outbox.startBacklog(Backlog(lead: lead, entries: replay, viewer: participant))
        logger.info("participant attached", metadata: [
            "participant": "\(participant)", "mode": "\(welcome.mode.rawValue)", "from_seq": "\(welcome.seq)",
            "connection": "\(connection.id)",
        ])
    }

    /// Each entry queued to every recipient, then its acks. Returns the connections that
    /// could not keep up.
    func deliver(_ entries: ArraySlice<LogEntry>, to recipients: [(ClientConnection, ParticipantID)],
                 acks: [Seq: [(ClientConnection, OpID)]]) -> [ClientConnection] {
        var slow: [ClientConnection] = []
        for entry in entries {
            let whole = ByteBuffer(bytes: encoder.encode(.event(.visible(entry))))
            let redacted: ByteBuffer? = entry.operation.privateRecipient == nil ? nil
                : ByteBuffer(bytes: encoder.encode(.event(.redacted(seq: entry.seq, epoch: entry.epoch, at: entry.at))))
            for (connection, participant) in recipients where !slow.contains(where: { $0 === connection }) {
                let frame = redacted == nil || entry.isVisible(to: participant) ? whole : redacted!
                if !enqueue(frame, to: connection) { slow.append(connection) }
            }
            metrics.deliveries.increment(by: Int64(recipients.count - slow.count))
            for (connection, opID) in acks[entry.seq] ?? [] {
                connection.send(.ack(id: opID, epoch: entry.epoch, seq: entry.seq), encoder)
            }
        }
        return slow
    }

    /// Returns the connections that could not keep up.
    func relay(_ signal: Signal, from: ParticipantID, to recipients: [ClientConnection]) -> [ClientConnection] {
        let frame = ByteBuffer(bytes: encoder.encode(.signal(from: from, signal)))
        return recipients.filter { !enqueue(frame, to: $0) }
    }

    /// A client that cannot keep up is dropped, not allowed to grow memory.
    private func enqueue(_ frame: ByteBuffer, to connection: ClientConnection) -> Bool {
        switch connection.outbox.offer(frame) {
        case .queued:
            return true
        case .overflowed:
            metrics.slowConsumersDropped.increment()
            logger.notice("slow consumer disconnected", metadata: ["connection": "\(connection.id)"])
            return false
        case .closed:
            // Gone already (it left, or was failed): not a slow consumer.
            return false
        }
    }
}
