/// Bounds on operation arguments. Frames have their own byte limit; these keep the state
/// itself bounded and sane.
public enum ModelLimits {
    /// Characters in a chat or private message, a poll question or a stroke label.
    public static let textLength = 4_000
    /// Characters in a display name, after trimming whitespace.
    public static let nameLength = 64
    /// Characters in a title (of a meeting, a document or a share) and in a poll option.
    public static let titleLength = 200
    /// Bytes (UTF-8) in an identifier, which holds only letters, digits, `-`, `_`, `.` and `:`.
    public static let identifierLength = 64
    /// Pages in one document or whiteboard.
    public static let pagesPerDocument = 2_000
    /// Points in one stroke. The web page sends longer strokes as several `draw` ops of 1,500.
    public static let strokePoints = 5_000
    /// How many options a poll has, bounds included.
    public static let pollOptions = 2...20
    /// Public and private messages kept in the meeting state (and so in every snapshot and
    /// welcome). Older messages stay in the log, but a late joiner's snapshot starts here,
    /// which keeps a welcome frame bounded (at most about 4 MB of text per kind).
    public static let messageHistory = 1_000
}

extension Meeting {
    /// Checks `operation` against the rules and, if it is allowed, applies it.
    ///
    /// Deterministic: the result depends only on the state and the arguments, so replaying
    /// an accepted log rebuilds the same state. On refusal the state is unchanged.
    /// - Parameters:
    ///   - seq: the sequence number the operation will be committed under.
    ///   - at: the commit time, chosen by the host; the model never reads a clock.
    public mutating func apply(_ operation: MeetingOp, by issuer: Issuer, at: Millis, seq: Seq) throws(Rejection) {
        if ended { throw Rejection(.meetingEnded, "the meeting has ended") }
        guard case .participant(let actorID) = issuer else {
            return try applySystem(operation, at: at)
        }
        if MeetingOp.systemKinds.contains(operation.kind) {
            throw Rejection(.forbidden, "'\(operation.kind)' is issued by the server only")
        }
        guard let actorIndex = activeIndex(actorID) else {
            throw Rejection(.notParticipant, "\(actorID) is not in this meeting")
        }
        let actor = participants[actorIndex]
        let isHost = actor.role == .host
        let isPresenterOrHost = actor.isPresenter || isHost

        switch operation {
        case .join, .leave, .presence:
            preconditionFailure("system kinds are refused above")

        case .handOverHost(let to):
            guard isHost else { throw Rejection(.notHost, "only the host can hand over the host role") }
            let target = try activeTarget(to)
            guard to != actorID else { throw Rejection(.invalidArgument, "you are already the host") }
            participants[actorIndex].role = .attendee
            participants[target].role = .host

        case .setPresenter(let to):
            guard isHost else { throw Rejection(.notHost, "only the host can choose the presenter") }
            let target = try activeTarget(to)
            for index in participants.indices { participants[index].isPresenter = index == target }

        case .chat(let text):
            guard settings.features.chat else { throw Rejection(.featureDisabled, "chat is turned off in this meeting") }
            try checkText(text)
            chat.append(ChatMessage(seq: seq, from: actorID, text: text, at: at))
            if chat.count > ModelLimits.messageHistory { chat.removeFirst(chat.count - ModelLimits.messageHistory) }

        case .privateMessage(let to, let text):
            guard settings.features.privateChat else {
                throw Rejection(.featureDisabled, "private messages are turned off in this meeting")
            }
            _ = try activeTarget(to)
            guard to != actorID else { throw Rejection(.invalidArgument, "cannot send a private message to yourself") }
            try checkText(text)
            privateMessages.append(PrivateMessage(seq: seq, from: actorID, to: to, text: text, at: at))
            if privateMessages.count > ModelLimits.messageHistory {
                privateMessages.removeFirst(privateMessages.count - ModelLimits.messageHistory)
            }

        case .addDocument(let id, let title, let pages):
            guard isPresenterOrHost else { throw Rejection(.notPresenter, "only the presenter or host can add documents") }
            try checkIdentifier(id.rawValue, "document id")
            try checkTitle(title)
            guard !pages.isEmpty, pages.count <= ModelLimits.pagesPerDocument else {
                throw Rejection(.invalidArgument, "a document has 1 to \(ModelLimits.pagesPerDocument) pages")
            }
            guard document(id) == nil else { throw Rejection(.duplicateID, "document \(id) already exists") }
            for page in pages { try checkIdentifier(page.rawValue, "page id") }
            guard Set(pages).count == pages.count, pages.allSatisfy({ documentIndex(containing: $0) == nil }) else {
                throw Rejection(.duplicateID, "page ids must be unique in the meeting")
            }
            documents.append(Document(id: id, title: title, pages: pages, isWhiteboard: false))
            if currentPage == nil { currentPage = pages[0] }

        case .addWhiteboard(let id, let title):
            guard isPresenterOrHost else { throw Rejection(.notPresenter, "only the presenter or host can add whiteboards") }
            try checkIdentifier(id.rawValue, "document id")
            try checkTitle(title)
            guard document(id) == nil else { throw Rejection(.duplicateID, "document \(id) already exists") }
            let page = Meeting.firstWhiteboardPage(of: id)
            guard documentIndex(containing: page) == nil else { throw Rejection(.duplicateID, "page \(page) already exists") }
            documents.append(Document(id: id, title: title, pages: [page], isWhiteboard: true))
            if currentPage == nil { currentPage = page }

        case .addWhiteboardPage(let documentID, let page):
            guard isPresenterOrHost else { throw Rejection(.notPresenter, "only the presenter or host can add pages") }
            guard let index = documents.firstIndex(where: { $0.id == documentID }) else {
                throw Rejection(.unknownDocument, "no document \(documentID) in this meeting")
            }
            guard documents[index].isWhiteboard else {
                throw Rejection(.invalidArgument, "pages can be added to whiteboards only")
            }
            try checkIdentifier(page.rawValue, "page id")
            guard documentIndex(containing: page) == nil else { throw Rejection(.duplicateID, "page \(page) already exists") }
            guard documents[index].pages.count < ModelLimits.pagesPerDocument else {
                throw Rejection(.invalidArgument, "a whiteboard has at most \(ModelLimits.pagesPerDocument) pages")
            }
            documents[index].pages.append(page)

        case .turnPage(let page):
            guard actor.isPresenter else { throw Rejection(.notPresenter, "only the presenter turns pages") }
            guard documentIndex(containing: page) != nil else { throw Rejection(.unknownPage, "no page \(page) in this meeting") }
            currentPage = page

        case .draw(let page, let strokeID, let tool, let color, let width, let points, let text):
            guard settings.features.annotation else { throw Rejection(.featureDisabled, "annotation is turned off in this meeting") }
            guard documentIndex(containing: page) != nil else { throw Rejection(.unknownPage, "no page \(page) in this meeting") }
            try checkIdentifier(strokeID.rawValue, "stroke id")
            guard (1...ModelLimits.strokePoints).contains(points.count) else {
                throw Rejection(.invalidArgument, "a stroke has 1 to \(ModelLimits.strokePoints) points")
            }
            guard points.allSatisfy({ $0.x.isFinite && $0.y.isFinite }) else {
                throw Rejection(.invalidArgument, "stroke points must be finite numbers")
            }
            guard width.isFinite, width > 0, width <= 100 else {
                throw Rejection(.invalidArgument, "stroke width must be in (0, 100]")
            }
            guard Meeting.isColor(color) else { throw Rejection(.invalidArgument, "colour must be #rrggbb") }
            if let text { try checkText(text) }
            let slot = annotationIndex(page)
            guard !annotations[slot].strokes.contains(where: { $0.id == strokeID }) else {
                throw Rejection(.duplicateID, "stroke \(strokeID) already exists on page \(page)")
            }
            annotations[slot].strokes.append(
                Stroke(id: strokeID, author: actorID, tool: tool, color: color, width: width, points: points, text: text))

        case .erase(let page, let strokeID):
            guard settings.features.annotation else { throw Rejection(.featureDisabled, "annotation is turned off in this meeting") }
            guard let slot = annotations.firstIndex(where: { $0.page == page }),
                  let strokeIndex = annotations[slot].strokes.firstIndex(where: { $0.id == strokeID })
            else { throw Rejection(.unknownStroke, "no stroke \(strokeID) on page \(page)") }
            guard annotations[slot].strokes[strokeIndex].author == actorID || isPresenterOrHost else {
                throw Rejection(.forbidden, "only the stroke's author, the presenter or the host can erase it")
            }
            annotations[slot].strokes.remove(at: strokeIndex)
            if annotations[slot].strokes.isEmpty { annotations.remove(at: slot) }

        case .clearPage(let page):
            guard settings.features.annotation else { throw Rejection(.featureDisabled, "annotation is turned off in this meeting") }
            guard isPresenterOrHost else { throw Rejection(.notPresenter, "only the presenter or host can clear a page") }
            guard documentIndex(containing: page) != nil else { throw Rejection(.unknownPage, "no page \(page) in this meeting") }
            annotations.removeAll { $0.page == page }

        case .createPoll(let id, let question, let options):
            guard settings.features.polls else { throw Rejection(.featureDisabled, "polls are turned off in this meeting") }
            guard isPresenterOrHost else { throw Rejection(.notPresenter, "only the presenter or host can create polls") }
            try checkIdentifier(id.rawValue, "poll id")
            try checkText(question)
            guard ModelLimits.pollOptions.contains(options.count) else {
                throw Rejection(.invalidArgument, "a poll has \(ModelLimits.pollOptions.lowerBound) to \(ModelLimits.pollOptions.upperBound) options")
            }
            for option in options {
                guard !option.isEmpty, option.count <= ModelLimits.titleLength else {
                    throw Rejection(.invalidArgument, "a poll option has 1 to \(ModelLimits.titleLength) characters")
                }
            }
            guard !polls.contains(where: { $0.id == id }) else { throw Rejection(.duplicateID, "poll \(id) already exists") }
            polls.append(Poll(id: id, creator: actorID, question: question, options: options, votes: [], closed: false))

        case .vote(let pollID, let option):
            guard settings.features.polls else { throw Rejection(.featureDisabled, "polls are turned off in this meeting") }
            let index = try pollIndex(pollID)
            guard !polls[index].closed else { throw Rejection(.pollClosed, "poll \(pollID) is closed") }
            guard polls[index].options.indices.contains(option) else {
                throw Rejection(.invalidArgument, "poll \(pollID) has no option \(option)")
            }
            guard !polls[index].votes.contains(where: { $0.voter == actorID }) else {
                throw Rejection(.alreadyVoted, "you have already voted in poll \(pollID)")
            }
            polls[index].votes.append(Poll.Vote(voter: actorID, option: option))

        case .closePoll(let pollID):
            let index = try pollIndex(pollID)
            guard polls[index].creator == actorID || isHost else {
                throw Rejection(.forbidden, "only the poll's creator or the host can close it")
            }
            guard !polls[index].closed else { throw Rejection(.pollClosed, "poll \(pollID) is already closed") }
            polls[index].closed = true

        case .startShare(let kind, let title):
            guard settings.features.applicationSharing else {
                throw Rejection(.featureDisabled, "application sharing is turned off in this meeting")
            }
            guard isPresenterOrHost else { throw Rejection(.notPresenter, "only the presenter or host can share") }
            try checkTitle(title)
            if let share { throw Rejection(.shareInProgress, "\(share.sharer) is already sharing") }
            share = ShareSession(sharer: actorID, kind: kind, title: title, controlHolder: nil, controlRequests: [])

        case .stopShare:
            let current = try currentShare()
            guard current.sharer == actorID || isHost else {
                throw Rejection(.notSharer, "only the sharer or the host can stop the share")
            }
            share = nil

        case .requestControl:
            let current = try currentShare()
            guard current.sharer != actorID else { throw Rejection(.invalidArgument, "the sharer already has control") }
            guard current.controlHolder != actorID else { throw Rejection(.invalidArgument, "you already hold control") }
            guard !current.controlRequests.contains(actorID) else {
                throw Rejection(.invalidArgument, "you have already requested control")
            }
            share?.controlRequests.append(actorID)

        case .grantControl(let to):
            let current = try currentShare()
            guard current.sharer == actorID else { throw Rejection(.notSharer, "only the sharer can grant control") }
            _ = try activeTarget(to)
            guard to != actorID else { throw Rejection(.invalidArgument, "the sharer already has control") }
            share?.controlHolder = to
            share?.controlRequests.removeAll { $0 == to }

        case .revokeControl:
            let current = try currentShare()
            guard current.sharer == actorID else { throw Rejection(.notSharer, "only the sharer can revoke control") }
            guard current.controlHolder != nil else { throw Rejection(.notControlHolder, "nobody holds control") }
            share?.controlHolder = nil

        case .releaseControl:
            let current = try currentShare()
            guard current.controlHolder == actorID else {
                throw Rejection(.notControlHolder, "you do not hold control")
            }
            share?.controlHolder = nil

        case .lock, .unlock:
            guard isHost else { throw Rejection(.notHost, "only the host can lock or unlock the meeting") }
            locked = operation == .lock

        case .end:
            guard isHost else { throw Rejection(.notHost, "only the host can end the meeting") }
            ended = true
            share = nil
        }
    }

    /// Whether `participant` may send input events to the shared application right now.
    public func mayControlShare(_ participant: ParticipantID) -> Bool {
        guard let share else { return false }
        return share.controlHolder == participant || (share.controlHolder == nil && share.sharer == participant)
    }

    /// The id of the page a new whiteboard starts with: `"<document>.1"`.
    public static func firstWhiteboardPage(of document: DocumentID) -> PageID {
        PageID("\(document.rawValue).1")
    }

    // MARK: - System operations

    private mutating func applySystem(_ operation: MeetingOp, at: Millis) throws(Rejection) {
        switch operation {
        case .join(let id, let name, let role):
            try checkIdentifier(id.rawValue, "participant id")
            let trimmed = name.trimmingWhitespace
            guard !trimmed.isEmpty, trimmed.count <= ModelLimits.nameLength else {
                throw Rejection(.invalidArgument, "a name has 1 to \(ModelLimits.nameLength) characters")
            }
            let existing = participants.firstIndex { $0.id == id }
            if let existing, participants[existing].presence != .left {
                throw Rejection(.alreadyJoined, "\(id) is already in the meeting")
            }
            // The host may always come back, even into a locked or full meeting.
            if role != .host {
                if locked { throw Rejection(.meetingLocked, "the meeting is locked") }
                let present = participants.count { $0.presence != .left }
                if settings.maxParticipants > 0, present >= settings.maxParticipants {
                    throw Rejection(.meetingFull, "the meeting is full (\(settings.maxParticipants) participants)")
                }
            }
            let effectiveRole = roleOnJoining(role)
            let becomesPresenter = presenter == nil && (effectiveRole == .host || effectiveRole == .presenter)
            let participant = Participant(id: id, name: trimmed, role: effectiveRole, isPresenter: becomesPresenter,
                                          presence: .connected, joinedAt: at)
            if let existing { participants[existing] = participant } else { participants.append(participant) }

        case .leave(let id):
            guard let index = activeIndex(id) else { throw Rejection(.unknownParticipant, "\(id) is not in the meeting") }
            let wasHost = participants[index].role == .host
            let wasPresenter = participants[index].isPresenter
            participants[index].presence = .left
            participants[index].isPresenter = false
            participants[index].role = .attendee
            if wasHost, let heir = participants.firstIndex(where: { $0.presence != .left }) {
                participants[heir].role = .host
            }
            if wasPresenter, let host = participants.firstIndex(where: { $0.role == .host && $0.presence != .left }) {
                participants[host].isPresenter = true
            }
            if share?.sharer == id { share = nil }
            if share?.controlHolder == id { share?.controlHolder = nil }
            share?.controlRequests.removeAll { $0 == id }

        case .presence(let id, let presence):
            guard presence != .left else { throw Rejection(.invalidArgument, "use 'leave' to remove a participant") }
            guard let index = activeIndex(id) else { throw Rejection(.unknownParticipant, "\(id) is not in the meeting") }
            guard participants[index].presence != presence else {
                throw Rejection(.invalidArgument, "\(id) is already \(presence.rawValue)")
            }
            participants[index].presence = presence

        default:
            throw Rejection(.forbidden, "'\(operation.kind)' must come from a participant")
        }
    }

    // MARK: - Lookups and argument checks

    private func activeIndex(_ id: ParticipantID) -> Int? {
        participants.firstIndex { $0.id == id && $0.presence != .left }
    }

    private func activeTarget(_ id: ParticipantID) throws(Rejection) -> Int {
        guard let index = activeIndex(id) else { throw Rejection(.unknownParticipant, "\(id) is not in the meeting") }
        return index
    }

    private func document(_ id: DocumentID) -> Document? { documents.first { $0.id == id } }

    private func documentIndex(containing page: PageID) -> Int? {
        documents.firstIndex { $0.pages.contains(page) }
    }

    private mutating func annotationIndex(_ page: PageID) -> Int {
        if let index = annotations.firstIndex(where: { $0.page == page }) { return index }
        annotations.append(PageAnnotations(page: page, strokes: []))
        return annotations.count - 1
    }

    private func pollIndex(_ id: PollID) throws(Rejection) -> Int {
        guard let index = polls.firstIndex(where: { $0.id == id }) else {
            throw Rejection(.unknownPoll, "no poll \(id) in this meeting")
        }
        return index
    }

    private func currentShare() throws(Rejection) -> ShareSession {
        guard let share else { throw Rejection(.notSharing, "nobody is sharing") }
        return share
    }

    private func checkText(_ text: String) throws(Rejection) {
        guard !text.isEmpty, text.count <= ModelLimits.textLength else {
            throw Rejection(.invalidArgument, "text has 1 to \(ModelLimits.textLength) characters")
        }
    }

    private func checkTitle(_ title: String) throws(Rejection) {
        guard title.count <= ModelLimits.titleLength else {
            throw Rejection(.invalidArgument, "a title has at most \(ModelLimits.titleLength) characters")
        }
    }

    private func checkIdentifier(_ raw: String, _ what: String) throws(Rejection) {
        guard !raw.isEmpty, raw.utf8.count <= ModelLimits.identifierLength,
              raw.unicodeScalars.allSatisfy({ $0.properties.isAlphabetic || ("0"..."9").contains($0) || "-_.:".unicodeScalars.contains($0) })
        else {
            throw Rejection(.invalidArgument, "a \(what) has 1 to \(ModelLimits.identifierLength) bytes of letters, digits, '-', '_', '.' or ':'")
        }
    }

    static func isColor(_ color: String) -> Bool {
        let scalars = Array(color.unicodeScalars)
        guard scalars.count == 7, scalars[0] == "#" else { return false }
        return scalars.dropFirst().allSatisfy { $0.properties.isASCIIHexDigit }
    }
}

extension String {
    var trimmingWhitespace: String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
              let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        return String(scalars[first...last])
    }
}
