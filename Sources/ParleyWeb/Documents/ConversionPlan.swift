/// Decides, step by step, how one PDF becomes page images: which converter runs next, and
/// what the uploader is told. Pure: the caller runs each step (a separate process) and
/// feeds back what happened.
///
/// Each converter first counts the pages, then renders them. Design diversity: when a
/// converter fails in any way (missing, crashed, killed at its time or memory limit, wrong
/// output), the next one, an independent implementation, starts over. A page count above
/// the limit ends the plan at once, since another converter would only count the same
/// pages again.
struct ConversionPlan: Sendable {
    enum Step: Equatable, Sendable {
        case count(converter: Int)
        /// Render pages 1...`pages`.
        case render(converter: Int, pages: Int)
    }

    enum Action: Equatable, Sendable {
        case run(Step)
        /// Converter `converter` rendered all `pages` pages.
        case succeed(converter: Int, pages: Int)
        case fail(DocumentError)
    }

    /// What a step came to.
    enum Outcome: Equatable, Sendable {
        /// The counter ran and reported this many pages.
        case counted(Int)
        /// The renderer ran and produced this many page images.
        case rendered(Int)
        /// The step did not work, and why (for the log).
        case failed(String)
    }

    private enum State: Equatable {
        case notStarted
        case counting(converter: Int)
        case rendering(converter: Int, pages: Int)
        case finished
    }

    let converters: [String]
    let maxPages: Int
    private var state = State.notStarted
    /// Why each converter that was tried failed, in order (for the log).
    private(set) var failures: [(converter: String, reason: String)] = []

    init(converters: [String], maxPages: Int) {
        precondition(maxPages >= 1, "a document may have at least one page")
        self.converters = converters
        self.maxPages = maxPages
    }

    mutating func start() -> Action {
        precondition(state == .notStarted, "a plan is started once")
        return next(after: -1)
    }

    mutating func finished(_ outcome: Outcome) -> Action {
        switch (state, outcome) {
        case (.counting(let converter), .counted(let pages)):
            if pages < 1 {
                return failed(converter, "it found no pages")
            }
            if pages > maxPages {
                state = .finished
                return .fail(.tooManyPages(count: pages, limit: maxPages))
            }
            state = .rendering(converter: converter, pages: pages)
            return .run(.render(converter: converter, pages: pages))
        case (.rendering(let converter, let pages), .rendered(let rendered)):
            guard rendered == pages else {
                return failed(converter, "it rendered \(rendered) of \(pages) pages")
            }
            state = .finished
            return .succeed(converter: converter, pages: pages)
        case (.counting(let converter), .failed(let reason)), (.rendering(let converter, _), .failed(let reason)):
            return failed(converter, reason)
        default:
            preconditionFailure("outcome \(outcome) does not answer the plan's state \(state)")
        }
    }

    private mutating func failed(_ converter: Int, _ reason: String) -> Action {
        failures.append((converters[converter], reason))
        return next(after: converter)
    }

    private mutating func next(after converter: Int) -> Action {
        let next = converter + 1
        guard next < converters.count else {
            state = .finished
            return .fail(.conversionFailed(converters: converters))
        }
        state = .counting(converter: next)
        return .run(.count(converter: next))
    }
}
