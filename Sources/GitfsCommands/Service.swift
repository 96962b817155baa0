import ArgumentParser
import Foundation
import GitFS
import Settings

/// `gitfs service install|remove MOUNTPOINT [--user]`: a systemd unit that mounts the home at start and
/// unmounts it cleanly at stop (SIGTERM, which the server answers by unmounting).
struct Service: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "service", abstract: "Install or remove a systemd unit for a mount.",
        subcommands: [Install.self, Remove.self])

    struct Target: ParsableArguments {
        @Argument(help: "The mount point.") var mountpoint: String
        @Flag(help: "A user unit (~/.config/systemd/user); the default unless run as root.") var user = false

        var absoluteMountpoint: String { URL(fileURLWithPath: mountpoint).standardizedFileURL.path }
        var userUnit: Bool { user || geteuid() != 0 }
        var unit: ServiceUnit { ServiceUnit(mountpoint: absoluteMountpoint, user: userUnit) }
    }

    struct Install: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "install", abstract: "Write a systemd unit that mounts the home at MOUNTPOINT.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var target: Target
        @Option(help: ArgumentHelp("Fetch in the background this often (default: the fetch-interval setting).", valueName: "duration"))
        var fetchInterval: String?

        func validate() throws {
            try Units.validateDuration(fetchInterval, option: "--fetch-interval")
        }

        func run() throws {
            let unit = target.unit
            let text = unit.text(executable: Spawn.selfExecutable(), home: global.resolvedHome, fetchInterval: fetchInterval)
            try unit.write(text)
            let ctl = unit.user ? "systemctl --user" : "systemctl"
            print("wrote \(unit.path); start it now and at every boot with: \(ctl) daemon-reload && \(ctl) enable --now \(unit.name)")
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "remove", abstract: "Remove the systemd unit of MOUNTPOINT (stop it first).")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var target: Target

        func run() throws {
            let unit = target.unit
            guard FileManager.default.fileExists(atPath: unit.path) else {
                throw MountError("no gitfs unit for \(target.absoluteMountpoint) at \(unit.path)")
            }
            guard unlink(unit.path) == 0 else {
                throw MountError("cannot remove \(unit.path): \(String(cString: strerror(errno)))")
            }
            let ctl = unit.user ? "systemctl --user" : "systemctl"
            print("removed \(unit.path); if it was running: \(ctl) stop \(unit.name) && \(ctl) daemon-reload")
        }
    }
}

/// The systemd unit of one mount point: its name (`gitfs-<escaped path>.service`, escaped as
/// `systemd-escape --path` does), where it lives and what it says. A value: thread-safe.
struct ServiceUnit {
    let mountpoint: String
    let user: Bool

    var name: String { "gitfs-\(Self.escapePath(mountpoint)).service" }

    var directory: String {
        guard user else { return "/etc/systemd/system" }
        let env = ProcessInfo.processInfo.environment
        let config = env["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? ((env["HOME"] ?? NSHomeDirectory()) + "/.config")
        return config + "/systemd/user"
    }

    var path: String { directory + "/" + name }

    /// `systemd-escape --path`: slashes trimmed and turned into '-', other bytes outside [A-Za-z0-9:_.]
    /// (and a leading '.') as `\xNN`; "/" is "-".
    static func escapePath(_ path: String) -> String {
        let trimmed = path.split(separator: "/").joined(separator: "/")
        if trimmed.isEmpty { return "-" }
        var out = ""
        for (i, byte) in trimmed.utf8.enumerated() {
            let c = Character(Unicode.Scalar(byte))
            if byte == UInt8(ascii: "/") { out += "-" }
            else if (c.isASCII && (c.isLetter || c.isNumber)) || c == ":" || c == "_" || (c == "." && i > 0) { out.append(c) }
            else { out += String(format: "\\x%02x", byte) }
        }
        return out
    }

    /// One word of an Exec line: `%` doubled, quoted when it holds blanks, quotes or backslashes.
    static func quote(_ word: String) -> String {
        let escaped = word.replacingOccurrences(of: "%", with: "%%")
        guard escaped.contains(where: { $0 == " " || $0 == "\t" || $0 == "\"" || $0 == "\\" || $0 == "'" }) else { return escaped }
        return "\"" + escaped.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    func text(executable: String, home: String, fetchInterval: String?) -> String {
        var start = [executable, "mount", mountpoint, "--home", home, "--foreground"]
        if let fetchInterval { start += ["--fetch-interval", fetchInterval] }
        let exec = start.map(Self.quote).joined(separator: " ")
        let clear = [executable, "unmount", mountpoint, "--home", home].map(Self.quote).joined(separator: " ")
        return """
        [Unit]
        Description=gitfs: git repositories of \(home.replacingOccurrences(of: "%", with: "%%")) at \(mountpoint.replacingOccurrences(of: "%", with: "%%"))
        Wants=network-online.target
        After=network-online.target

        [Service]
        Type=simple
        # A mount left dead by a crash is cleared first ('-': nothing to clear is fine).
        ExecStartPre=-\(clear)
        ExecStart=\(exec)
        # SIGTERM makes the server unmount cleanly and exit.
        KillSignal=SIGTERM
        TimeoutStopSec=30
        Restart=on-failure
        RestartSec=5

        [Install]
        WantedBy=\(user ? "default.target" : "multi-user.target")

        """
    }

    func write(_ text: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw MountError("cannot write \(path): \(error.localizedDescription)")
        }
    }
}
