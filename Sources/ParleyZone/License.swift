import ParleyCore

/// The license service's rule: how many participants the whole zone may have present at
/// once, whichever servers host their meetings. A meeting's own limit is enforced by its
/// host, the one place that meeting lives.
///
/// Pure: fed admissions and the attendance log, it answers admit or refuse.
public struct LicenseBook: Sendable {
    public struct Seat: Hashable, Sendable {
        public var meeting: MeetingID
        public var participant: ParticipantID

        public init(meeting: MeetingID, participant: ParticipantID) {
            self.meeting = meeting
            self.participant = participant
        }
    }

    public enum Decision: Equatable, Sendable {
        case admit
        case refuse(String)
    }

    public let zoneLimit: Int
    public private(set) var present: Set<Seat> = []

    public init(zoneLimit: Int) { self.zoneLimit = zoneLimit }

    /// Rebuilds who is present from the attendance log (after the service restarts).
    public init(zoneLimit: Int, replaying log: [Attendance]) {
        self.zoneLimit = zoneLimit
        for record in log { record.event == .joined ? (_ = present.insert(record.seat)) : (_ = present.remove(record.seat)) }
    }

    /// A participant wants to join. Taking a seat they already hold is always admitted.
    public mutating func admit(_ meeting: MeetingID, _ participant: ParticipantID) -> Decision {
        let seat = Seat(meeting: meeting, participant: participant)
        if present.contains(seat) { return .admit }
        guard present.count < zoneLimit else {
            return .refuse("the zone's license allows \(zoneLimit) participants at once, and all are present")
        }
        present.insert(seat)
        return .admit
    }

    public mutating func record(_ attendance: Attendance) {
        switch attendance.event {
        case .joined: present.insert(attendance.seat)
        case .left: present.remove(attendance.seat)
        }
    }
}

extension Attendance {
    var seat: LicenseBook.Seat { LicenseBook.Seat(meeting: meeting, participant: participant) }
}
