import Foundation
import GitStore
import Settings

/// The verdict of one check of `gitfs doctor`: a name, whether it passed, one line saying what was
/// found and, when it did not pass, one line saying how to fix it. A value: thread-safe.
public struct Verdict: Sendable, Equatable {
    public enum Status: String, Sendable { case ok, warning, problem }
    public let check: String
    public let status: Status
    public let message: String
    public let fix: String?

    public static func ok(_ check: String, _ message: String) -> Verdict { Verdict(check: check, status: .ok, message: message, fix: nil) }
    public static func warning(_ check: String, _ message: String, fix: String) -> Verdict {
        Verdict(check: check, status: .warning, message: message, fix: fix)
    }
    public static func problem(_ check: String, _ message: String, fix: String) -> Verdict {
        Verdict(check: check, status: .problem, message: message, fix: fix)
    }

    /// `[ok] check: message` or `[problem] check: message — fix: ...`.
    public var line: String {
        "[\(status.rawValue)] \(check): \(message)" + (fix.map { " — fix: \($0)" } ?? "")
    }
}

/// What `gitfs doctor` looks at, for the user running it: FUSE access, mounts, the home, the cache
/// and the mirrors. Every check only reads (nothing is created or repaired) and none touches a mount's
/// files, so a hung or dead server cannot block it. Stateless: thread-safe.
public struct Doctor: Sendable {
    public let home: Home
    /// Whether `allow_other` is configured (flag, environment or home setting).
    public let allowOther: Bool
    /// Also connect to each mirror's origin.
    public let network: Bool
    /// Files the checks read; tests and unusual systems may point them elsewhere.
    public var fuseDevice = "/dev/fuse"
    public var fuseConf = "/etc/fuse.conf"

    public init(home: Home, allowOther: Bool, network: Bool) {
        self.home = home
        self.allowOther = allowOther
        self.network = network
    }

    /// Every check, in the order printed.
    public func run() -> [Verdict] {
        var out = [fuseDeviceAccess(), fusermount(), userAllowOther(), kernelProtocol()]
        out += mounts()
        out += homeChecks()
        out += cacheChecks()
        out += mirrorChecks()
        return out
    }

    var isRoot: Bool { geteuid() == 0 }
    var who: String { "uid \(geteuid())" }
}
