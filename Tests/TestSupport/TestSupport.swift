import Foundation
#if canImport(Glibc)
import Glibc
#endif

// Shared helpers for the test targets: temporary directories, running processes, the gitfs binary,
// fixture repositories made with the git CLI, and a git daemon on 127.0.0.1.

/// A failure of a test helper (a command that exited non-zero, a daemon that did not start, ...).
public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

// MARK: - TempDir

/// A fresh directory under /tmp, removed (recursively) in deinit or by `remove()`. Not thread-safe to
/// remove from two threads; reading `path` is.
public final class TempDir: @unchecked Sendable {
    public let path: String
    private var removed = false

    /// Creates `/tmp/gitfs-test-<prefix>-XXXXXX` (mkdtemp).
    public init(_ prefix: String = "t") throws {
        var template = Array("/tmp/gitfs-test-\(prefix)-XXXXXX".utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw TestFailure("mkdtemp failed: \(String(cString: strerror(errno)))")
        }
        path = String(cString: p)
    }

    /// `path + "/" + name`.
    public func sub(_ name: String) -> String { path + "/" + name }

    /// Removes the directory now (idempotent).
    public func remove() {
        guard !removed else { return }
        removed = true
        try? FileManager.default.removeItem(atPath: path)
    }

    deinit { remove() }
}

// MARK: - Processes

/// Result of `run`.
public struct RunResult: Sendable {
    public let status: Int32
    public let stdout: [UInt8]
    public let stderr: String
    /// stdout decoded as UTF-8 (lossy).
    public var out: String { String(decoding: stdout, as: UTF8.self) }
}

/// Runs `argv` (argv[0] looked up in PATH when it has no `/`), feeding `stdin`, collecting both outputs
/// concurrently (no pipe deadlock), and waits for it to exit.
@discardableResult
public func run(_ argv: [String], cwd: String? = nil, env: [String: String]? = nil, stdin: [UInt8]? = nil) throws -> RunResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: try resolveExecutable(argv[0]))
    p.arguments = Array(argv.dropFirst())
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    var environment = ProcessInfo.processInfo.environment
    for (k, v) in env ?? [:] { environment[k] = v }
    p.environment = environment
    let outPipe = Pipe(), errPipe = Pipe()
    p.standardOutput = outPipe
    p.standardError = errPipe
    let inPipe: Pipe? = stdin != nil ? Pipe() : nil
    p.standardInput = inPipe ?? FileHandle.nullDevice
    try p.run()
    let group = DispatchGroup()
    let outBox = DataBox(), errBox = DataBox()
    DispatchQueue.global().async(group: group) { outBox.data = outPipe.fileHandleForReading.readDataToEndOfFile() }
    DispatchQueue.global().async(group: group) { errBox.data = errPipe.fileHandleForReading.readDataToEndOfFile() }
    if let inPipe, let stdin {
        let writer = inPipe.fileHandleForWriting
        DispatchQueue.global().async(group: group) {
            writer.write(Data(stdin))
            try? writer.close()
        }
    }
    group.wait()
    p.waitUntilExit()
    return RunResult(status: p.terminationStatus, stdout: Array(outBox.data), stderr: String(decoding: errBox.data, as: UTF8.self))
}

private final class DataBox: @unchecked Sendable { var data = Data() }

private func resolveExecutable(_ name: String) throws -> String {
    if name.contains("/") { return name }
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
    for dir in path.split(separator: ":") where access("\(dir)/\(name)", X_OK) == 0 { return "\(dir)/\(name)" }
    throw TestFailure("\(name): not found in PATH")
}

/// Environment that makes git deterministic and independent of the user's config.
public let gitEnvironment: [String: String] = [
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": "/tmp",
    "GIT_AUTHOR_NAME": "Fixture", "GIT_AUTHOR_EMAIL": "fixture@example.com",
    "GIT_COMMITTER_NAME": "Fixture", "GIT_COMMITTER_EMAIL": "fixture@example.com",
    "GIT_AUTHOR_DATE": "2024-01-02T03:04:05Z", "GIT_COMMITTER_DATE": "2024-01-02T03:04:05Z",
    "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C",
]

/// Runs `git ARGS` in `cwd`; throws (failing the test) on a non-zero exit. Returns stdout.
@discardableResult
public func git(_ args: String..., cwd: String, env: [String: String] = [:], stdin: [UInt8]? = nil) throws -> String {
    try gitBytes(args, cwd: cwd, env: env, stdin: stdin).out
}

/// `git` with an argument array, returning the whole result (throws on non-zero exit).
@discardableResult
public func gitBytes(_ args: [String], cwd: String, env: [String: String] = [:], stdin: [UInt8]? = nil) throws -> RunResult {
    let r = try run(["git"] + args, cwd: cwd, env: gitEnvironment.merging(env) { $1 }, stdin: stdin)
    guard r.status == 0 else {
        throw TestFailure("git \(args.joined(separator: " ")) (in \(cwd)) exited \(r.status): \(r.stderr)")
    }
    return r
}

// MARK: - gitfs binary

/// The gitfs executable: $GITFS_BIN, else `gitfs` next to the running test binary (the build dir).
public var gitfsBinary: String {
    if let b = ProcessInfo.processInfo.environment["GITFS_BIN"], !b.isEmpty { return b }
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return (exe as NSString).deletingLastPathComponent + "/gitfs"
}

/// Runs `gitfs --home HOME ARGS...` (global option placed after the subcommand name).
@discardableResult
public func runGitfs(home: String, _ args: [String], env: [String: String]? = nil, stdin: [UInt8]? = nil) throws -> RunResult {
    guard FileManager.default.isExecutableFile(atPath: gitfsBinary) else {
        throw TestFailure("gitfs binary not found at \(gitfsBinary); run 'swift build' first or set GITFS_BIN")
    }
    var argv = [gitfsBinary]
    if let first = args.first {
        argv += [first, "--home", home] + args.dropFirst()
    } else {
        argv += ["--home", home]
    }
    return try run(argv, env: env, stdin: stdin)
}

/// `runGitfs` that throws when the exit status is not 0; returns the result.
@discardableResult
public func gitfsOK(home: String, _ args: [String]) throws -> RunResult {
    let r = try runGitfs(home: home, args)
    guard r.status == 0 else { throw TestFailure("gitfs \(args.joined(separator: " ")) exited \(r.status): \(r.stderr)") }
    return r
}
