/// One join or leave, as the zone's log service records it: who, when, where.
public struct Attendance: Codable, Equatable, Sendable {
    /// Whether the participant came or went.
    public enum Event: String, Codable, Sendable { case joined, left }
    /// The meeting joined or left.
    public var meeting: MeetingID
    /// Who joined or left.
    public var participant: ParticipantID
    /// The participant's display name at the time.
    public var name: String
    /// Joined or left.
    public var event: Event
    /// The server that hosted the meeting (a zone process name).
    public var server: String
    /// When, in milliseconds since the Unix epoch.
    public var at: Millis

    /// Records one join or leave.
    public init(meeting: MeetingID, participant: ParticipantID, name: String, event: Event, server: String, at: Millis) {
        self.meeting = meeting
        self.participant = participant
        self.name = name
        self.event = event
        self.server = server
        self.at = at
    }
}
