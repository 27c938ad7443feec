import Foundation
import Testing

/// How much of the machine a test takes while it runs, so the suite does not run more at
/// once than two cores can carry.
///
/// Swift Testing starts every test at once. On a 2-core CI machine that meant 10 to 65
/// runnable threads and no idle time for the first 40 s of a run (results/vmstat-full-suite-
/// 2026-12-03.txt), and tests that time a real thing (a 1 s connect timeout, a 2-interval
/// ping, a 3 s converter limit) failed now and then for want of CPU, not for a bug. Each
/// test that starts servers or processes takes its weight from one shared budget before it
/// begins and gives it back when it ends; tests of pure code take nothing.
///
/// The wait happens outside the test's time limit: the trait scopes the test function as a
/// whole, and Swift Testing applies `.timeLimit` to each test case inside that scope.
public struct MachineLoad: TestTrait, SuiteTrait, TestScoping {
    public let weight: Int

    /// One in-process server, one child process, or one database on the shared PostgreSQL.
    public static let server = MachineLoad(weight: 1)
    /// A zone of processes, a pair of PostgreSQL servers, a browser, a chaos or bench run.
    public static let processes = MachineLoad(weight: 2)
    /// A cluster of machines: nothing else that starts servers runs beside it.
    public static let machine = MachineLoad(weight: MachineBudget.shared.capacity)

    public var isRecursive: Bool { true }

    /// The whole test function (all its cases), never a suite: a suite holding the budget
    /// while its tests run one by one would keep it for minutes.
    public func scopeProvider(for test: Test, testCase: Test.Case?) -> MachineLoad? {
        !test.isSuite && testCase == nil ? self : nil
    }

    public func provideScope(for test: Test, testCase: Test.Case?,
                             performing function: @Sendable () async throws -> Void) async throws {
        // A test marked twice (on its suite and on itself) takes the larger weight once.
        if let held = MachineBudget.held {
            guard weight > held else { return try await function() }
        }
        let budget = MachineBudget.shared
        let granted = min(weight, budget.capacity)
        await budget.acquire(granted)
        do {
            try await MachineBudget.$held.withValue(granted) { try await function() }
        } catch {
            await budget.release(granted)
            throw error
        }
        await budget.release(granted)
    }
}

/// The shared budget behind `MachineLoad`: first come, first served, so a test that needs
/// the whole machine is not starved by a stream of small ones.
public actor MachineBudget {
    /// Four units: a cluster takes all, two zones or four servers run side by side.
    /// `PARLEY_TEST_MACHINE_BUDGET` sets another (a bigger machine, or 1 to run them one by one).
    public static let shared = MachineBudget(
        capacity: ProcessInfo.processInfo.environment["PARLEY_TEST_MACHINE_BUDGET"].flatMap(Int.init).map { max(1, $0) } ?? 4)

    @TaskLocal static var held: Int?

    public nonisolated let capacity: Int
    private var inUse = 0
    private var waiting: [(units: Int, resume: CheckedContinuation<Void, Never>)] = []

    public init(capacity: Int) { self.capacity = capacity }

    func acquire(_ units: Int) async {
        if waiting.isEmpty, inUse + units <= capacity {
            inUse += units
            return
        }
        await withCheckedContinuation { waiting.append((units, $0)) }
    }

    func release(_ units: Int) {
        inUse -= units
        // Strictly in order: the first waiter goes first, even if a later, smaller one would fit.
        while let first = waiting.first, inUse + first.units <= capacity {
            waiting.removeFirst()
            inUse += first.units
            first.resume.resume()
        }
    }
}
