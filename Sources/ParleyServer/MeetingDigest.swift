import Crypto
import FoundationEssentials
import ParleyCore

/// A fingerprint of a meeting's state: SHA-256 of its canonical JSON (keys sorted; the state
/// holds arrays, never dictionaries, so the bytes are the same in every process). Copies of
/// a meeting compare digests at each checkpoint seq to find one whose state has gone wrong.
public struct MeetingDigest: Hashable, Codable, Sendable, CustomStringConvertible {
    /// Hex, the first 16 bytes of the hash: plenty to tell states apart, short in a log line.
    public let hex: String

    public init(hex: String) { self.hex = hex }

    public init(of meeting: Meeting) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // A Meeting always encodes; an empty digest would only ever disagree.
        let bytes = (try? encoder.encode(meeting)) ?? Data()
        let digits = Array("0123456789abcdef")
        hex = String(SHA256.hash(data: bytes).prefix(16).flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0xf)]] })
    }

    public var description: String { hex }
}

/// How one copy's digest at a checkpoint seq is settled against the host's: the copy and the
/// host vote, and the state rebuilt from the last checkpoint both agreed on plus the
/// committed entries since casts the third vote. Pure.
public enum DigestVerdict: Equatable, Sendable {
    /// The copy agrees with the host.
    case agreed
    /// The copy is in the minority: discard it and rebuild it from the store.
    case copyOutvoted
    /// The host is in the minority: it must be demoted and the standby promoted.
    case hostOutvoted
    /// No two agree (or the entries to rebuild from are gone, or the rebuild started from a
    /// state no vote confirmed): trust the store.
    case undecided

    /// - Parameter baseVoted: whether the state the rebuild started from was confirmed by a
    ///   vote. One loaded from the store was not: a host that went wrong writes its
    ///   checkpoints from its wrong state, so such a rebuild may side with the host, never
    ///   against it.
    public static func settle(host: MeetingDigest, copy: MeetingDigest, rebuilt: MeetingDigest?, baseVoted: Bool) -> DigestVerdict {
        if host == copy { return .agreed }
        switch rebuilt {
        case host?: return .copyOutvoted
        case copy? where baseVoted: return .hostOutvoted
        default: return .undecided
        }
    }
}

/// A copy outvoted its host at checkpoint `seq`: the host's digest and the copy's (which the
/// state rebuilt from the log agreed with).
public struct HostOutvoted: Sendable {
    public var meeting: MeetingID
    public var seq: Seq
    public var host: MeetingDigest
    public var copy: MeetingDigest
}
