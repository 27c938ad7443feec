import ParleyClient
import ParleyProtocol
import ParleyServer

/// Long-polling clients (protocol §2.2): the client's requests as the SDK's
/// `LongPollTransport` makes them, and the server's sessions as `PollSessions` keeps them,
/// with the same `PollDelivery` numbering. Requests and answers travel on the connection's
/// two streams. What differs from a WebSocket: a server learns nothing when a client goes
/// (the session expires), a client learns that the server closed only by reading to the end,
/// and an answer can be lost with its request sent again behind the client's back.
extension World {
    // MARK: The client's requests

    /// The client session hands its transport a frame: sent now, or after the send in flight.
    mutating func pollQueue(_ frame: ClientFrame, on key: ConnectionKey) {
        connections[key]!.poll.queued.append(frame)
        pollPump(key)
    }

    /// One send at a time, so that frames keep their order. The first carries the hello
    /// alone and opens the session; the later ones are numbered from 1.
    mutating func pollPump(_ key: ConnectionKey) {
        guard var connection = connections[key], connection.open, !connection.poll.sending,
              !connection.poll.queued.isEmpty else { return }
        let frames: [ClientFrame], batch: UInt64
        if connection.poll.opened {
            frames = connection.poll.queued
            connection.poll.queued = []
            connection.poll.sent += 1
            batch = connection.poll.sent
        } else {
            frames = [connection.poll.queued.removeFirst()]
            batch = 0
        }
        connection.poll.sending = true
        connections[key] = connection
        send(.pollSend(key, batch: batch, frames), on: .toServer(key))
    }

    mutating func pollAnswered(_ answer: PollAnswer, on key: ConnectionKey) {
        guard let connection = connections[key], connection.open else { return }
        switch answer {
        case .sent(let batch):
            connections[key]!.poll.sending = false
            if batch == 0 {
                connections[key]!.poll.opened = true
                send(.pollReceive(key, after: 0), on: .toServer(key))
            }
            pollPump(key)
        case .frames(let frames):
            connections[key]!.poll.read += 1
            for frame in frames {
                guard connections[key]!.open else { return }
                perform(client: connection.client, clients[connection.client].session.received(frame, on: connection.id))
            }
            guard connections[key]!.open else { return }
            send(.pollReceive(key, after: connections[key]!.poll.read), on: .toServer(key))
        case .gone:
            // 404 or 409: the transport fails, and the session connects anew.
            connections[key]!.open = false
            trace("client \(connection.client)", "long-poll session of connection \(key) gone")
            perform(client: connection.client, clients[connection.client].session.disconnected(connection.id))
        }
    }

    /// A long-poll connection ends: see ``World/Closer``.
    mutating func closePoll(_ key: ConnectionKey, by closer: Closer) {
        guard let connection = connections[key] else { return }
        switch closer {
        case .client:
            guard connection.open else { return }
            connections[key]!.open = false
            // The SDK deletes its session rather than leave it to expire.
            if connection.server != nil { send(.pollDelete(key), on: .toServer(key)) }
        case .network:
            guard connection.open else { return }
            connections[key]!.open = false
            // A request in flight fails: the client learns of it; the server does not.
            send(.closedToClient(key), on: .toClient(key))
        case .server:
            guard let server = connection.server, var session = servers[server].polls[key], !session.closed else { return }
            session.closed = true
            servers[server].polls[key] = session
            if session.receiving && session.outbox.isEmpty { endPoll(key, at: server) }
            // As `PollSessions` does when a connection closes: its host lets it go.
            schedule(.closedToServer(key), after: 0)
        }
    }

    // MARK: The server's sessions

    /// A send reaches the server: batch 0 opens a session with its hello.
    mutating func pollSent(_ frames: [ClientFrame], batch: UInt64, on key: ConnectionKey, at server: Int) {
        if batch == 0 { servers[server].polls[key] = PollSession(lastReceive: now) }
        guard var session = servers[server].polls[key] else { return pollAnswer(.gone, to: .pollSend(key, batch: batch, frames), on: key) }
        // Broken on purpose: requests are taken as they come, unnumbered.
        let numbered = batch > 0 && options.brokenRule != .unnumberedLongPolls ? batch : nil
        let verdict = session.delivery.send(batch: numbered)
        servers[server].polls[key] = session
        switch verdict {
        case .take:
            if !session.closed { for frame in frames { serverReceives(frame, on: key, at: server) } }
        case .duplicate:
            report.faults["long-poll send taken once", default: 0] += 1
            trace("collab-\(server)", "long-poll batch \(batch) of connection \(key) taken already")
        case .outOfStep:
            return pollAnswer(.gone, to: .pollSend(key, batch: batch, frames), on: key)
        }
        pollAnswer(.sent(batch: batch), to: .pollSend(key, batch: batch, frames), on: key)
    }

    mutating func pollReceive(after: UInt64, on key: ConnectionKey, at server: Int) {
        let request = Event.pollReceive(key, after: after)
        guard var session = servers[server].polls[key] else { return pollAnswer(.gone, to: request, on: key) }
        session.lastReceive = now
        defer { if servers[server].polls[key] != nil { servers[server].polls[key] = session } }
        switch session.delivery.receive(after: options.brokenRule == .unnumberedLongPolls ? nil : after) {
        case .resend(let frames):
            report.faults["long-poll batch sent again", default: 0] += 1
            pollAnswer(.frames(frames), to: request, on: key)
        case .outOfStep:
            pollAnswer(.gone, to: request, on: key)
        case .fresh where !session.outbox.isEmpty:
            pollAnswer(.frames(session.takeBatch(at: now)), to: request, on: key)
        case .fresh where session.closed:
            servers[server].polls[key] = nil
            pollAnswer(.gone, to: request, on: key)
        case .fresh:
            session.receiving = true
            schedule(.pollWaitOver(key, server: server, incarnation: servers[server].incarnation, after: session.delivery.sent),
                     after: Self.pollWaitMs)
        }
    }

    /// A receive's wait ran out: it is answered with nothing (unless frames answered it first).
    mutating func pollWaitOver(_ key: ConnectionKey, after: UInt64, at server: Int) {
        guard var session = servers[server].polls[key], session.receiving, session.delivery.sent == after else { return }
        let frames = session.takeBatch(at: now)   // none: frames answer a waiting receive as they come
        servers[server].polls[key] = session
        pollAnswer(.frames(frames), to: .pollReceive(key, after: after), on: key)
    }

    /// A frame for a long-poll client waits in its session's outbox; a waiting receive takes it.
    mutating func pollEnqueue(_ frame: ServerFrame, on key: ConnectionKey) {
        guard let server = connections[key]?.server, var session = servers[server].polls[key], !session.closed else { return }
        session.outbox.append(frame)
        guard session.receiving else { return servers[server].polls[key] = session }
        let after = session.delivery.sent
        let frames = session.takeBatch(at: now)
        servers[server].polls[key] = session
        pollAnswer(.frames(frames), to: .pollReceive(key, after: after), on: key)
    }

    /// A waiting receive of a closed session with nothing left to read: the session ends.
    mutating func endPoll(_ key: ConnectionKey, at server: Int) {
        guard let session = servers[server].polls.removeValue(forKey: key), session.receiving else { return }
        pollAnswer(.gone, to: .pollReceive(key, after: session.delivery.sent), on: key)
    }

    /// Sessions whose client stopped receiving expire, as `PollSessions.run` closes them.
    mutating func expirePolls(at server: Int) {
        for key in servers[server].polls.keys.sorted() {
            // A detach below can end other sessions (a host that stops closes its connections).
            guard let session = servers[server].polls[key], !session.receiving,
                  now - session.lastReceive > Self.pollExpiryMs else { continue }
            servers[server].polls[key] = nil
            trace("collab-\(server)", "long-poll session of connection \(key) expired")
            guard let connection = connections[key] else { continue }
            host(clients[connection.client].meeting, at: server) { host, now in host.detach(key, at: now) }
        }
    }

    /// Answers `request`, unless the answer is to be lost: then the client's HTTP stack,
    /// seeing the connection die before any answer, sends the same request again.
    mutating func pollAnswer(_ answer: PollAnswer, to request: Event, on key: ConnectionKey) {
        // Not the hello's: a retried open makes a second session, which the sim does not model.
        let opensSession = if case .pollSend(_, 0, _) = request { true } else { false }
        if connections[key]!.poll.lostAnswers > 0, !opensSession {
            connections[key]!.poll.lostAnswers -= 1
            report.faults["long-poll request retried", default: 0] += 1
            trace("net", "answer to \(request) lost; the client's HTTP stack sends it again")
            return send(request, on: .toServer(key))
        }
        send(.pollAnswer(key, answer), on: .toClient(key))
    }
}

extension World.PollSession {
    /// The frames waiting, as the next batch: what the receive that takes them is answered.
    mutating func takeBatch(at now: Int64) -> [ServerFrame] {
        let frames = outbox
        outbox = []
        receiving = false
        lastReceive = now
        delivery.sending(frames)
        return frames
    }
}
