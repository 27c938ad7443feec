import Hummingbird
import NIOCore

/// Hummingbird's request context plus the client's address: what per-address limits (the
/// web zone's sign-in, registration and meeting creation) count by.
public struct ParleyRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The peer of the connection: the client, or a proxy in front of Parley.
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }
}
