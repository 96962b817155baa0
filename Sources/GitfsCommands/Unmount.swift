import ArgumentParser
import Foundation
import GitFS

/// `gitfs unmount MOUNTPOINT`: asks the server to unmount cleanly; clears a mount whose server died or
/// stopped answering. Acts only on gitfs mounts (type `fuse.gitfs`, source `gitfs:<pid>`), and never
/// touches the mount point itself, so a hung server cannot hang it.
struct Unmount: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unmount", abstract: "Unmount a gitfs mount (also one whose server died or hangs).")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The mount point.") var mountpoint: String
    @Option(help: "Seconds to wait for the server to unmount cleanly before forcing.") var timeout = 15

    /// How long a stopped server (SIGSTOP, a debugger) gets: it handles no signal until resumed.
    static let stoppedServerWait = 1.0

    func validate() throws {
        if timeout < 0 { throw ValidationError("--timeout must be 0 or more seconds") }
    }

    func run() throws {
        let (target, found) = MountLookup.find(mountpoint)
        guard let mount = found else { throw CommandFailure("\(target) is not mounted") }
        guard mount.fsType == "fuse.gitfs" else {
            throw CommandFailure("\(target) is a \(mount.fsType) mount, not gitfs; not touching it")
        }
        guard let pid = mount.serverPID else {
            throw CommandFailure("\(target) is a fuse.gitfs mount whose source '\(mount.entry.source)' names no gitfs server; not touching it")
        }
        let state = GitFSMounts.serverState(pid)
        if state == .notPermitted {
            throw CommandFailure("\(target) is served by another user's process (pid \(pid)): unmount it as that user or as root")
        }
        if state != .gone {
            kill(pid, SIGTERM)
            let wait = state == .stopped ? Self.stoppedServerWait : Double(timeout)
            if waitUntil(seconds: wait, { !isMounted(mount) && !GitFSMounts.isAlive(pid) }) {
                print("unmounted \(target)")
                return
            }
        }
        try force(mount, at: target, server: state == .gone ? nil : pid)
        print("unmounted \(target)")
    }

    /// The server is gone, stopped or did not finish: fail every pending request, take the mount away
    /// and end the server. As root: abort the connection (fusectl), detach (umount2 MNT_DETACH), then
    /// SIGKILL the server. As another user, who can abort only when fusectl is mounted: SIGKILL the
    /// server (closing /dev/fuse aborts the connection too), then `fusermount3 -u`, lazily if busy.
    private func force(_ mount: GitFSMountInfo, at target: String, server pid: Int32?) throws(CommandFailure) {
        let aborted = GitFSMounts.abortConnection(minor: mount.minor)
        if let pid, !aborted { killAndWait(pid) }
        if isMounted(mount) {
            let detached = geteuid() == 0 ? GitFSMounts.detach(target) : GitFSMounts.fusermountUnmount(target)
            if !detached && isMounted(mount) {
                throw CommandFailure("cannot unmount \(target): it is still mounted; try 'umount -l \(target)' as root")
            }
        }
        // An aborted server sees the session end and exits; a stopped or stuck one is killed.
        if let pid, GitFSMounts.isAlive(pid) {
            if GitFSMounts.serverState(pid) == .stopped || !waitUntil(seconds: 3, { !GitFSMounts.isAlive(pid) }) {
                killAndWait(pid)
            }
        }
    }

    /// SIGKILL, then up to 5 seconds for the process to be gone.
    private func killAndWait(_ pid: Int32) {
        kill(pid, SIGKILL)
        _ = waitUntil(seconds: 5) { !GitFSMounts.isAlive(pid) }
    }

    /// Whether this very mount (same device, type and source) is still in the mount table.
    private func isMounted(_ mount: GitFSMountInfo) -> Bool {
        GitFSMounts.mount(at: mount.mountpoint) == mount
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
