/// One join or leave, as the zone's log service records it: who, when, where.
public struct Attendance: Codable, Equatable, Sendable {
    public enum Event: String, Codable, Sendable { case joined, left }
    public var meeting: MeetingID
    public var participant: ParticipantID
    public var name: String
    public var event: Event
    /// The server that hosted the meeting (a zone process name).
    public var server: String
    public var at: Millis

    public init(meeting: MeetingID, participant: ParticipantID, name: String, event: Event, server: String, at: Millis) {
        self.meeting = meeting
        self.participant = participant
        self.name = name
        self.event = event
        self.server = server
        self.at = at
    }
}
