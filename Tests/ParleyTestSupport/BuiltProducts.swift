import Foundation

/// The executables built beside the test bundle.
public enum BuiltProducts {
    /// The `parley` binary under test: `PARLEY_BINARY` if set, else the one built beside this
    /// test bundle (the build products folder holds both).
    public static var parley: String {
        if let given = ProcessInfo.processInfo.environment["PARLEY_BINARY"] { return given }
        return sibling("parley")
    }

    /// Another executable product of this package, built beside the test bundle.
    public static func sibling(_ name: String) -> String {
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent(name).path
    }
}
