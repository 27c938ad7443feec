/// What a copy of a meeting on another server (an edge) and the meeting's host say to each
/// other about the participants attached to the copy, beside the committed stream the copy
/// follows. Here rather than in the server because the host's rules (ParleyServer) and the
/// zone's wire (ParleyZone) both carry them.
///
/// The copy never sequences anything: it passes its participants' arrivals, ops, signals
/// and departures up, and learns the outcome of an op from the committed stream (the entry
/// carries the op's id), or from the host's answer when there is no new entry for it.
public enum CopyRequest: Codable, Equatable, Sendable {
    /// `participant` is attached to the copy (a join, or a return): the host sequences the
    /// join or the presence change, as it does for its own connections. Also sent again for
    /// every attached participant whenever the copy's link to a host starts.
    case arrive(participant: ParticipantID, name: String, role: Role)
    /// An op from one of the copy's participants, under the id the client gave it.
    case op(participant: ParticipantID, id: OpID, MeetingOp)
    /// A signal from one of the copy's participants, for everyone elsewhere.
    case signal(participant: ParticipantID, Signal)
    /// The participant's connection to the copy is gone (`leaving` false), or it said goodbye.
    case depart(participant: ParticipantID, leaving: Bool)
}

public enum CopyNotice: Codable, Equatable, Sendable {
    /// The op is committed at `seq` already (it was sent before): acknowledge it once the
    /// copy holds that seq.
    case acked(participant: ParticipantID, id: OpID, epoch: Epoch, seq: Seq)
    /// The op was refused; nothing was sequenced for it.
    case rejected(participant: ParticipantID, id: OpID, Rejection)
    /// The host refused the participant's arrival (the meeting filled up, was locked or
    /// ended meanwhile): close its connection with this reason.
    case refused(participant: ParticipantID, Rejection)
    /// Another connection of the participant attached elsewhere: close the copy's one.
    case replaced(participant: ParticipantID)
    /// A signal from a participant attached elsewhere.
    case signal(from: ParticipantID, Signal)
}
