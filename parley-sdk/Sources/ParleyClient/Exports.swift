// `import ParleyClient` is all an app writes: the meeting model (`Meeting`, `MeetingOp`,
// `Rejection`, the identifiers), the wire types it meets (`ProtocolError`, `ResumeMode`) and
// the `Logger` that `MeetingClient.Options` takes come with it.
@_exported import ParleyCore
@_exported import ParleyProtocol
@_exported import Logging
