import ArgumentParser
import Foundation
import GitFS

/// `gitfs unmount MOUNTPOINT`: asks the server to unmount cleanly; clears a mount whose server died or
/// stopped answering.
struct Unmount: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unmount", abstract: "Unmount a gitfs mount (also one whose server died).")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The mount point.") var mountpoint: String
    @Option(help: "Seconds to wait for the server before forcing.") var timeout = 15

    func run() throws {
        let target = URL(fileURLWithPath: mountpoint).standardizedFileURL.path
        guard let mount = GitFSMounts.mount(at: target) else {
            throw MountError("\(target) is not mounted")
        }
        guard mount.fsType.hasPrefix("fuse") else {
            throw MountError("\(target) is a \(mount.fsType) mount, not gitfs")
        }
        let pid = mount.serverPID.flatMap { GitFSMounts.isAlive($0) ? $0 : nil }
        if let pid {
            kill(pid, SIGTERM)
            if waitUntil(seconds: Double(timeout), { GitFSMounts.mount(at: target) != mount && !GitFSMounts.isAlive(pid) }) {
                print("unmounted \(target)")
                return
            }
        }
        // No live server (killed, crashed) or it did not finish: detach, then abort the connection.
        if GitFSMounts.mount(at: target) == mount, !GitFSMounts.detach(target) {
            throw MountError("cannot unmount \(target): \(String(cString: strerror(errno)))")
        }
        if let pid, !waitUntil(seconds: 3, { !GitFSMounts.isAlive(pid) }) {
            GitFSMounts.abortConnection(minor: mount.minor)
            kill(pid, SIGKILL)
        } else if pid == nil {
            GitFSMounts.abortConnection(minor: mount.minor)
        }
        print("unmounted \(target)")
    }

    private func waitUntil(seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }
}
