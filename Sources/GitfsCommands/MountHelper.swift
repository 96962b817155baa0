import Foundation

/// The form `mount.fuse3` runs for an fstab line `HOME MOUNTPOINT fuse.gitfs OPTIONS 0 0`:
/// `gitfs HOME MOUNTPOINT -o OPTIONS`. `rewrite` turns it into `gitfs mount MOUNTPOINT --home HOME
/// FLAGS...`; generic mount options (rw, dev, suid, noauto, nofail, x-systemd.*...) are accepted and
/// ignored, gitfs's own become flags, anything else is bad usage. Stateless: thread-safe.
enum MountHelperForm {
    /// Options of mount(8) and fstab that say nothing to gitfs (the mount is read-only, nodev and
    /// nosuid by nature).
    static let ignored: Set<String> = [
        "defaults", "rw", "ro", "dev", "nodev", "suid", "nosuid", "exec", "noexec", "auto", "noauto",
        "user", "nouser", "users", "owner", "group", "nofail", "_netdev", "sync", "async", "atime", "noatime",
        "relatime", "norelatime", "strictatime", "lazytime", "diratime", "nodiratime", "default_permissions",
        "silent", "loud",
    ]

    /// gitfs options: the mount flag each becomes and whether it takes a value.
    static let flags: [String: (flag: String, takesValue: Bool)] = [
        "fetch-interval": ("--fetch-interval", true), "fetch_interval": ("--fetch-interval", true),
        "cache-max-size": ("--cache-max-size", true), "cache_max_size": ("--cache-max-size", true),
        "threads": ("--threads", true),
        "memory-budget": ("--memory-budget", true), "memory_budget": ("--memory-budget", true),
        // A URL with a password is better kept in the home (`gitfs config remote-cache URL`): argv shows.
        "remote-cache": ("--remote-cache", true), "remote_cache": ("--remote-cache", true),
        "remote-cache-mode": ("--remote-cache-mode", true), "remote_cache_mode": ("--remote-cache-mode", true),
        "remote-cache-order": ("--remote-cache-order", true), "remote_cache_order": ("--remote-cache-order", true),
        "allow_other": ("--allow-other", false), "allow-other": ("--allow-other", false),
        "debug": ("--debug", false),
    ]

    /// The `mount` arguments for the helper form, nil when `arguments` are not in that form (the first
    /// is a subcommand or an option). Throws a usage error for an unknown or malformed option.
    static func rewrite(_ arguments: [String], subcommands: Set<String>) throws(HelperFormError) -> [String]? {
        guard arguments.count >= 2, let first = arguments.first, !first.hasPrefix("-"), !subcommands.contains(first),
              first.contains("/") || FileManager.default.fileExists(atPath: first) else { return nil }
        let home = first, mountpoint = arguments[1]
        var out = ["mount", mountpoint, "--home", home]
        var rest = arguments.dropFirst(2)
        while let arg = rest.popFirst() {
            let options: String
            if arg == "-o" {
                guard let value = rest.popFirst() else { throw HelperFormError("-o needs a list of options") }
                options = value
            } else if arg.hasPrefix("-o") {
                options = String(arg.dropFirst(2))
            } else {
                throw HelperFormError("unexpected argument '\(arg)' (the mount helper form is: gitfs HOME MOUNTPOINT -o OPTIONS)")
            }
            for option in options.split(separator: ",").map(String.init) {
                // Empty pieces kept: "=" names no option and "allow_other=" gives it a value (Fuzz/mount-options).
                let parts = option.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
                let name = parts[0]
                if ignored.contains(name) || name.hasPrefix("x-") || name == "comment" { continue }
                guard let known = flags[name] else {
                    throw HelperFormError("unknown mount option '\(name)'; gitfs takes \(flags.keys.sorted().joined(separator: ", ")) and ignores the generic ones (rw, noauto, nofail, ...)")
                }
                if known.takesValue {
                    guard parts.count == 2, !parts[1].isEmpty else { throw HelperFormError("mount option '\(name)' needs a value: \(name)=VALUE") }
                    out += [known.flag, parts[1]]
                } else {
                    guard parts.count == 1 else { throw HelperFormError("mount option '\(name)' takes no value") }
                    out.append(known.flag)
                }
            }
        }
        return out
    }
}

/// A malformed mount-helper command line (exit status 2).
struct HelperFormError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
