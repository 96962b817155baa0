import ArgumentParser
import Foundation
import GitStore
import Prefetch
import ReadModel
import RemoteTier
import Basics

/// Stopped by SIGINT; created before the handler is installed (the handler only does an atomic store).
private let prefetchInterrupt = PrefetchCancellation()

/// `gitfs prefetch NAME [--rev REV]... [--jobs N] [--fetch] [PATTERN...]`: loads matching blobs into the
/// content cache (logic in `Prefetch.Prefetcher`).
struct Prefetch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prefetch",
        abstract: "Load the files of revisions whose paths match the patterns into the content cache, in parallel.",
        discussion: """
        PATTERNs follow git's ':(glob)' pathspec rules and match the whole path from the root of the tree \
        (not just the file name): '*' and '?' do not match '/', '**/' matches any number of directories \
        (also none), a trailing '/**' everything below (other '**' act like '*', except right after the \
        leading literal part, as in git: 'a**' matches 'a/b'), '[a-z]', '[!a-z]' and '[^a-z]' are character \
        classes, '\\' quotes the next character, and a pattern naming a directory ('src' or 'src/') matches \
        everything in it. Examples: '*.md' (top level only), '**/*.c', 'docs/**', 'src'. Without a pattern \
        the whole tree is loaded. Quote patterns so the shell does not expand them.

        Files, executables and symlinks are loaded; submodules are not. An object shared by several \
        revisions, or already in the cache, is not loaded again. Progress is shown on a terminal; one \
        summary line is always printed at the end. Ctrl-C stops after the objects in hand (exit 130); the \
        cache then holds only complete entries. Safe while a mount or 'gitfs gc' of the same home runs.
        """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The mirror.") var name: String
    @Option(name: .customLong("rev"), help: ArgumentHelp("A revision to load (repeatable; default: the default branch).", valueName: "rev"))
    var revisions: [String] = []
    @Option(help: "Parallel workers (default: the number of cores).") var jobs: Int?
    @Flag(help: "Update the mirror first; if the remote cannot be reached, warn and prefetch what is mirrored.")
    var fetch = false
    @Argument(help: ArgumentHelp("Path patterns (git glob pathspecs, from the root).", valueName: "pattern"))
    var patterns: [String] = []
    @Flag(help: "Then upload the cache entries of every matching blob the remote cache lacks (HEAD first, parallel PUTs).")
    var push = false
    @OptionGroup var remote: RemoteCacheOptions

    func validate() throws {
        if let jobs, jobs < 1 || jobs > 1024 { throw ValidationError("--jobs must be between 1 and 1024") }
        do { _ = try PathFilter(patterns: patterns) } catch { throw ValidationError(error.description) }
        if push, remote.remoteCacheMode == .read { throw ValidationError("--push uploads: it needs --remote-cache-mode read-write (its default)") }
    }

    func run() throws {
        let home = try global.checkedHome()
        let store = MirrorStore(home: home)
        let filter = try PathFilter(patterns: patterns)
        if fetch {
            do { _ = try store.fetch(name: name) } catch {
                if error.kind == .notFound || error.kind == .invalidName { throw error }
                FileHandle.standardError.write(Data("gitfs: warning: fetch failed (\(error)): prefetching from what is mirrored\n".utf8))
            }
        }
        try MemoryBudgetSetting.apply(home: home)
        let cache = try Resolver.openCache(home: home)
        let tier = try remote.tier(home: home, cache: cache, defaultMode: push ? .readWrite : .read, uploadsStores: !push)
        if push && tier == nil {
            throw CommandFailure("--push needs a remote cache: give --remote-cache URL, set GITFS_REMOTE_CACHE or 'gitfs config remote-cache URL'")
        }
        defer { tier?.shutdown() }
        let resolver = Resolver(store: store, cache: cache, loaders: remote.loaders(tier), logsFailures: false)
        let view = try resolver.repository(named: name)

        _ = prefetchInterrupt.isCancelled // initialise before the handler may run
        signal(SIGINT) { _ in
            prefetchInterrupt.cancel()
            signal(SIGINT, SIG_DFL) // a second Ctrl-C ends the process at once
        }
        defer { signal(SIGINT, SIG_DFL) }
        // A parent may have started us with SIGINT blocked; Ctrl-C must work anyway (workers inherit this).
        var mask = sigset_t()
        sigemptyset(&mask)
        sigaddset(&mask, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &mask, nil)

        let prefetcher = Prefetcher(view: view, filter: filter,
                                    jobs: jobs ?? ProcessInfo.processInfo.activeProcessorCount,
                                    cancellation: prefetchInterrupt)
        let terminal = isatty(STDERR_FILENO) == 1
        var draw: (@Sendable (PrefetchProgress) -> Void)?
        if terminal {
            draw = { p in FileHandle.standardError.write(Data("\r\(p.line)\u{1B}[K".utf8)) }
        }
        let summary = try prefetcher.run(revisions: revisions, onProgress: draw)
        if terminal { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        for f in summary.failures {
            FileHandle.standardError.write(Data("gitfs: warning: cannot load '\(f.path)' (\(f.id)): \(f.error)\n".utf8))
        }
        if summary.notStored > 0 {
            // Said once, not per object: the reason is the same for all of them.
            FileHandle.standardError.write(Data("gitfs: warning: \(summary.notStored) objects were loaded but could not be stored in the content cache: \(summary.notStoredReason ?? "unknown")\n".utf8))
        }
        try StandardOutput.write(Array("\(summary)\n".utf8))
        if summary.interrupted { throw ExitCode(130) }
        if push, let tier {
            try pushEntries(prefetcher, tier, terminal: terminal)
        }
        if summary.failed > 0 {
            throw PrefetchFailed(loadFailures: summary.failed - summary.notStored, notStored: summary.notStored,
                                 name: name, cache: home.cachePath)
        }
    }
}

extension Prefetch {
    /// `--push`: uploads the entries of every matching blob the remote lacks; one summary line.
    func pushEntries(_ prefetcher: Prefetcher, _ tier: RemoteTier, terminal: Bool) throws {
        let start = MonotonicTime.now
        let ids = try prefetcher.matchingBlobs(revisions: revisions)
        let count = ids.count
        var progress: (@Sendable (RemoteTier.PushSummary) -> Void)?
        if terminal {
            progress = { p in
                guard p.done % 64 == 0 || p.done == count else { return }
                FileHandle.standardError.write(Data("\rpushing: \(p.done)/\(count) objects, \(p.uploaded) uploaded\u{1B}[K".utf8))
            }
        }
        let s = tier.push(ids, jobs: max(4, jobs ?? 8), onProgress: progress)
        if terminal { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        let seconds = String(format: "%.1f", (MonotonicTime.now - start).seconds)
        try StandardOutput.write(Array("pushed \(ids.count) objects to \(tier.client.url): \(s.uploaded) uploaded (\(ByteCount.format(s.bytes))), \(s.alreadyThere) already there, \(s.notCached) not in the local cache, \(s.failed) failed\(s.skipped > 0 ? ", \(s.skipped) skipped (the remote is backing off)" : "") in \(seconds)s\n".utf8))
        if s.failed + s.skipped > 0 {
            throw CommandFailure("\(s.failed + s.skipped) uploads to the remote cache failed: \(s.firstError ?? "unknown")")
        }
    }
}

/// Some objects could not be loaded, or were loaded but not stored: the revision is not ready offline.
struct PrefetchFailed: Error, CustomStringConvertible {
    let loadFailures: Int
    let notStored: Int
    let name: String
    let cache: String
    var description: String {
        var parts: [String] = []
        if loadFailures > 0 {
            parts.append("\(loadFailures) objects could not be loaded (see the warnings above); check the mirror with 'git -C <home>/repos/\(name).git fsck' and run 'gitfs verify'")
        }
        if notStored > 0 {
            parts.append("\(notStored) objects could not be stored in the content cache \(cache) (see the warning above); make room or make it writable and run the prefetch again")
        }
        return parts.joined(separator: "; ")
    }
}
