import Foundation
import GitFS

/// Finds the mount a user names without touching it: a stat, open or realpath of a mount whose server
/// hangs would hang the command. Only /proc/self/mountinfo is read, plus the path's parent directory
/// (realpath) and, when the name is a symlink, its target. Stateless: thread-safe.
enum MountLookup {
    /// The mount at `userPath`, with the absolute path it was found under (or the best guess of it).
    static func find(_ userPath: String) -> (path: String, mount: GitFSMountInfo?) {
        var path = normalized(userPath)
        for _ in 0..<8 {
            if let m = GitFSMounts.mount(at: path) { return (path, m) }
            let parent = (path as NSString).deletingLastPathComponent
            let name = (path as NSString).lastPathComponent
            let physical = normalized(canonical(parent) + "/" + name)
            if let m = GitFSMounts.mount(at: physical) { return (physical, m) }
            // Not a mount point by that name: follow it once if it is a symlink (readlink does not
            // enter what the link points to).
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: physical) else {
                return (physical, nil)
            }
            path = normalized(target.hasPrefix("/") ? target : canonical(parent) + "/" + target)
        }
        return (path, nil)
    }

    /// `path` made absolute (against the working directory) with `.`, `..` and repeated slashes
    /// removed, by text alone.
    static func normalized(_ path: String) -> String {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        var parts: [Substring] = []
        for part in absolute.split(separator: "/") {
            switch part {
            case ".": continue
            case "..": _ = parts.popLast()
            default: parts.append(part)
            }
        }
        return "/" + parts.joined(separator: "/")
    }

    /// realpath(3), or the path itself when it cannot be resolved.
    private static func canonical(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
