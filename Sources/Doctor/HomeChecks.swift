import Basics
import ContentCache
import Foundation
import GitStore
import ReadModel
import Settings

extension Doctor {
    /// The home exists (or can be made), belongs to this user, is writable and not writable by others,
    /// and its file system has room.
    func homeChecks() -> [Verdict] {
        let name = "home"
        var st = stat()
        guard stat(home.path, &st) == 0 else {
            let parent = (home.path as NSString).deletingLastPathComponent
            if access(parent, W_OK) == 0 || !FileManager.default.fileExists(atPath: parent) {
                return [.warning(name, "\(home.path) does not exist yet", fix: "gitfs clone URL creates it")]
            }
            return [.problem(name, "\(home.path) does not exist and \(parent) is not writable by \(who)",
                             fix: "use a home you can write: --home DIR or GITFS_HOME")]
        }
        var out: [Verdict] = []
        let mode = st.st_mode & 0o777
        if st.st_mode & 0o170000 != 0o040000 {
            return [.problem(name, "\(home.path) is not a directory", fix: "point --home (or GITFS_HOME) at a directory")]
        }
        if access(home.path, R_OK | W_OK | X_OK) != 0 {
            out.append(.problem(name, "\(home.path) (owner uid \(st.st_uid), mode 0\(String(mode, radix: 8))) is not readable and writable by \(who)",
                                fix: "chown -R \(geteuid()) \(home.path), or use a home of your own with --home"))
        } else if mode & 0o002 != 0 {
            out.append(.problem(name, "\(home.path) is writable by every user (mode 0\(String(mode, radix: 8))): anyone can change what the mount shows",
                                fix: "chmod o-w \(home.path)"))
        } else {
            out.append(.ok(name, "\(home.path) is yours to write (mode 0\(String(mode, radix: 8)))"))
        }
        var fs = statvfs()
        if statvfs(home.path, &fs) == 0 {
            let free = Int(fs.f_bavail) * Int(fs.f_frsize)
            let total = max(1, Int(fs.f_blocks) * Int(fs.f_frsize))
            let text = "\(free >> 20) MiB free of \(total >> 20) MiB on the home's file system"
            if free < 256 << 20 {
                out.append(.problem("free space", text, fix: "free space, or shrink the cache: gitfs gc --max-size SIZE"))
            } else if free * 20 < total {
                out.append(.warning("free space", text + " (under 5%)", fix: "gitfs gc --max-size SIZE, or set cache-max-size"))
            } else {
                out.append(.ok("free space", text))
            }
        }
        return out
    }

    /// The cache's format version, and a sample of cached blobs of each mirror's default branch read
    /// back and checked against their object ids.
    func cacheChecks() -> [Verdict] {
        let name = "cache"
        let versionPath = home.cachePath + "/VERSION"
        guard FileManager.default.fileExists(atPath: home.cachePath) else {
            return [.ok(name, "no cache yet (made on first use)")]
        }
        guard let text = try? String(contentsOfFile: versionPath, encoding: .utf8) else {
            return [.problem(name, "\(versionPath) is missing or unreadable", fix: "check the permissions of \(home.cachePath), or move it away (the cache refills itself)")]
        }
        let version = text.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? ""
        guard version == ContentCache.formatVersion else {
            return [.problem(name, "\(home.cachePath) has format '\(version.prefix(40))', this gitfs reads only '\(ContentCache.formatVersion)'",
                             fix: "use the gitfs that wrote it, or move \(home.cachePath) away (the cache refills itself)")]
        }
        let cache: ContentCache
        do { cache = try Resolver.openCache(home: home) } catch {
            return [.problem(name, "cannot open the cache: \(error)", fix: "check the permissions of \(home.cachePath)")]
        }
        var checked = 0, bad: [String] = []
        for mirror in MirrorStore(home: home).names() {
            for oid in sampleBlobs(mirror: mirror, limit: 16) {
                guard let entry = cache.lookup(oid), entry.size <= 4 << 20 else { continue }
                checked += 1
                var bytes = [UInt8](repeating: 0, count: entry.size)
                let n = try? bytes.withUnsafeMutableBytes { buffer -> Int in
                    var done = 0
                    while done < buffer.count {
                        let r = try entry.read(offset: done, into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]))
                        if r == 0 { break }
                        done += r
                    }
                    return done
                }
                let ok = n == entry.size && bytes.withUnsafeBytes { GitHash.blobID(of: $0) } == oid
                if !ok { bad.append(oid.hex) }
            }
        }
        var out = [Verdict.ok(name, "format '\(ContentCache.formatVersion)'")]
        if !bad.isEmpty {
            out.append(.problem("cache sample", "\(bad.count) of \(checked) sampled entries do not match their object ids (e.g. \(bad[0]))",
                                fix: "gitfs verify --repair"))
        } else {
            out.append(.ok("cache sample", checked == 0 ? "no cached blobs of the default branches to sample" : "\(checked) sampled entries match their object ids"))
        }
        return out
    }

    /// Up to `limit` blobs at the top of the mirror's default branch.
    private func sampleBlobs(mirror: String, limit: Int) -> [ObjectID] {
        guard let repo = try? MirrorStore(home: home).open(name: mirror),
              let refs = try? repo.refs(), let branch = refs.defaultBranch,
              let target = refs.branches.first(where: { $0.name == branch })?.target,
              let commit = try? repo.commit(target), let entries = try? repo.tree(commit.tree) else { return [] }
        return entries.filter { $0.objectKind == .blob }.prefix(limit).map(\.oid)
    }

    /// Each mirror: readable, its origin URL (credentials masked), and with `network` whether it answers.
    func mirrorChecks() -> [Verdict] {
        let store = MirrorStore(home: home)
        let names = store.names()
        guard !names.isEmpty else {
            return [.warning("mirrors", "no repositories in \(home.reposPath)", fix: "gitfs clone URL")]
        }
        var out: [Verdict] = []
        for name in names {
            let check = "mirror \(name)"
            let info: MirrorInfo
            do { info = try store.info(name: name) } catch {
                out.append(.problem(check, "cannot be read: \(Credentials.redacted(error.message))",
                                    fix: "gitfs remove \(name) and clone it again"))
                continue
            }
            if let damage = info.damage {
                out.append(.problem(check, damage, fix: "gitfs remove \(name) and clone it again"))
                continue
            }
            if info.filter != nil {
                // Blobless mirrors fetch through the git command.
                if let v = GitCommand.version(), (v.major, v.minor) >= (2, 25) {} else {
                    out.append(.problem(check, "a blobless mirror (\(info.filter ?? "")) needs git 2.25 or later, found \(GitCommand.version().map { "\($0.major).\($0.minor)" } ?? "none")",
                                        fix: "apt-get install git (2.25 or later)"))
                    continue
                }
            }
            let url = Credentials.redacted(info.url)
            guard network else {
                out.append(.ok(check, "origin \(url) (--network checks that it answers)"))
                continue
            }
            do {
                try store.checkReachable(name: name)
                out.append(.ok(check, "origin \(url) answers"))
            } catch {
                out.append(.problem(check, "origin \(url) does not answer: \(Credentials.redacted(error.message))",
                                    fix: "check the network and the URL; reads go on from the mirror meanwhile"))
            }
        }
        return out
    }
}
