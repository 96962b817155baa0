import Foundation
import Basics
import FuseServer
import GitFS
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The mount layout, attributes and errors of GitFileSystem, driven directly (no FUSE, no root), with
/// git as the oracle. The real-mount suites check the same through the kernel; these catch layout bugs
/// in seconds and anywhere.
@Suite(.serialized) struct LayoutTests {
    static let fixtureFS: (FixtureRepo, DirectFS) = {
        let fixture = try! FixtureRepo.shared()
        return (fixture, try! DirectFS("layout", mirrors: [(fixture.path, "fixture")]))
    }()

    @Test func rootRepositoryAndRefsAreLaidOutAsGitSays() throws {
        let (fixture, d) = Self.fixtureFS
        #expect(try d.names("") == [".gitfs", "fixture"])
        #expect(try d.names(".gitfs") == ["stats"])
        #expect(try d.names("fixture") == ["HEAD", "branches", "tags", "commits"])
        for path in ["", ".gitfs", "fixture", "fixture/branches", "fixture/tags", "fixture/commits"] {
            let a = try d.attributes(path)
            #expect(a.kind == .directory && a.permissions == 0o555, "\(path): \(a)")
        }
        #expect(try d.link("fixture/HEAD") == "branches/\(fixture.defaultBranch)")
        #expect(try d.attributes("fixture/HEAD").kind == .symlink)

        // branches/ and tags/ show a ref's name split at "/" as directories, each a link to its commit.
        #expect(Set(try d.names("fixture/branches")) == ["feature", "main", "release-1.x"])
        #expect(try d.names("fixture/branches/feature") == ["x"])
        #expect(Set(try d.names("fixture/tags")) == ["nested", "v1.0", "v1.1-light"])
        for (kind, refs) in [("branches", fixture.branches), ("tags", fixture.tags)] {
            for (name, commit) in refs {
                let depth = name.split(separator: "/").count
                let path = "fixture/\(kind)/\(name)"
                #expect(try d.link(path) == String(repeating: "../", count: depth) + "commits/" + commit, "\(path)")
                let a = try d.attributes(path)
                let target = try d.link(path)
                #expect(a.kind == .symlink && a.size == UInt64(target.utf8.count), "\(path): \(a)")
                #expect(try d.xattr(path, "user.git.oid") == commit, "\(path): an annotated tag is peeled")
            }
        }
        // commits/ lists what the refs point at; any other full commit id can still be looked up.
        let targets = Set(fixture.branches.values).union(fixture.tags.values)
        #expect(Set(try d.names("fixture/commits")) == targets)
        let older = try revParse(fixture.path, "main~1")
        #expect(!targets.contains(older))
        #expect(try d.attributes("fixture/commits/\(older)").kind == .directory)
    }

    @Test func everyRevisionMatchesGitEntryByEntry() throws {
        let (fixture, d) = Self.fixtureFS
        var blobsChecked = Set<String>()
        for rev in fixture.revisions {
            let commit = try revParse(fixture.path, rev + "^{commit}")
            let want = try gitTreeObjects(fixture.path, commit)
            let mtime = try commitTime(fixture.path, commit)
            let root = "fixture/commits/\(commit)"
            // Walk by readdir, as `find` does; every entry's listed attributes must be its getattr's (a
            // names-only entry's kind; ListingPolicy).
            var seen: [String] = []
            func visit(_ rel: String) throws {
                seen.append(rel)
                let path = rel.isEmpty ? root : root + "/" + rel
                let listed = try d.fs.readDirectory(try d.node(path)).entries
                for e in listed {
                    let name = String(decoding: e.name, as: UTF8.self)
                    let childRel = rel.isEmpty ? name : rel + "/" + name
                    let a = try d.attributes(root + "/" + childRel)
                    #expect(e.attributes.kind == a.kind && (e.withoutAttributes || e.attributes.permissions == a.permissions
                            && e.attributes.size == a.size && e.attributes.mtime == a.mtime), "\(rev):\(childRel)")
                    if a.kind == .directory { try visit(childRel) } else { seen.append(childRel) }
                }
            }
            try visit("")
            #expect(Set(seen) == Set(want.keys), "\(rev): \(Set(seen).symmetricDifference(want.keys).sorted())")
            #expect(seen.count == Set(seen).count, "\(rev): a name listed twice")

            for (rel, object) in want {
                let path = rel.isEmpty ? root : root + "/" + rel
                let a = try d.attributes(path)
                #expect(a.mtime == Int64(mtime), "\(rev):\(rel): mtime \(a.mtime), commit time \(mtime)")
                #expect(try d.xattr(path, "user.git.oid") == object.oid, "\(rev):\(rel)")
                #expect(try d.xattr(path, "user.git.commit") == commit, "\(rev):\(rel)")
                switch object.mode {
                case "040000":
                    #expect(a.kind == .directory && a.permissions == 0o555, "\(rev):\(rel): \(a)")
                case "160000":
                    #expect(a.kind == .directory && a.permissions == 0o555, "\(rev):\(rel): \(a)")
                    #expect(try d.names(path).isEmpty, "\(rev):\(rel): a submodule is an empty directory")
                case "120000":
                    let target = try fixture.gitBlob(commit, rel)
                    #expect(a.kind == .symlink && a.size == UInt64(target.count), "\(rev):\(rel): \(a)")
                    #expect(try d.fs.readLink(try d.node(path)) == target, "\(rev):\(rel)")
                case "100644", "100755":
                    let size = Int(try git("cat-file", "-s", object.oid, cwd: fixture.path)
                        .trimmingCharacters(in: .whitespacesAndNewlines))!
                    #expect(a.kind == .regularFile && a.size == UInt64(size), "\(rev):\(rel): \(a), git size \(size)")
                    #expect(a.permissions == (object.mode == "100755" ? 0o555 : 0o444), "\(rev):\(rel): \(a)")
                    if blobsChecked.insert(object.oid).inserted {
                        #expect(try d.readAll(path) == (try fixture.gitBlob(commit, rel)), "\(rev):\(rel): content")
                    }
                default:
                    Issue.record("\(rev):\(rel): unexpected mode \(object.mode)")
                }
            }
        }
        #expect(blobsChecked.count > 15)
    }

    @Test func missingNamesAreENOENTAndWrongUsesTheirErrno() throws {
        let (fixture, d) = Self.fixtureFS
        let main = fixture.branches["main"]!
        let root = "fixture/commits/\(main)"
        for path in ["nope", ".gitfs/nope", "fixture/nope", "fixture/branches/nope", "fixture/branches/feature/nope",
                     "fixture/tags/nope", "fixture/commits/" + String(repeating: "0", count: 40),
                     "fixture/commits/\(main.prefix(12))", "fixture/commits/not-hex",
                     // A tree or blob id is not a commit: no directory of that name.
                     "fixture/commits/" + (try revParse(fixture.path, "main^{tree}")),
                     "fixture/commits/" + (try revParse(fixture.path, "main:README.md")),
                     root + "/nope", root + "/src/nope", root + "/sub/anything", "..repo", "../x"] {
            #expect(d.lookupError(path) == ENOENT, "\(path): errno \(String(describing: d.lookupError(path)))")
        }
        #expect(d.lookupError(root + "/README.md/x") == ENOTDIR)
        #expect(d.lookupError("fixture/HEAD/x") == ENOTDIR)
        #expect(d.failure { () throws(Errno) in try d.names(root + "/README.md") } == ENOTDIR)
        #expect(d.failure { () throws(Errno) in try d.link(root + "/README.md") } == EINVAL)
        #expect(d.failure { () throws(Errno) in try d.link(root + "/src") } == EINVAL)
        #expect(d.failure { () throws(Errno) in try d.readAll(root + "/src") } == EISDIR)
        #expect(d.failure { () throws(Errno) in try d.readAll("fixture/branches") } == EISDIR)
        #expect(try d.xattr(root + "/README.md", "user.nope") == nil)
        #expect(try d.fs.extendedAttributes(of: try d.node("fixture/branches")).isEmpty)
    }

    @Test func statsFileAndStatfsTellTheCache() throws {
        let (fixture, d) = Self.fixtureFS
        d.fs.setStatsSource { Array("{\"requests\": 7}\n".utf8) }
        let stats = try d.node(".gitfs/stats")
        #expect(try d.readAll(stats) == Array("{\"requests\": 7}\n".utf8))
        #expect(try d.fs.attributes(of: stats).size == 16)
        #expect(try d.fs.attributes(of: stats).permissions == 0o444)
        // Each lookup takes a new snapshot under a new node (the kernel caches a node's pages).
        #expect(try d.node(".gitfs/stats") != stats)

        _ = try d.readAll("fixture/commits/\(fixture.branches["main"]!)/data/lines.txt")
        let s = d.fs.statistics()
        let totals = d.resolver.cache.runningTotals()
        #expect(s.files == UInt64(totals.entries) && s.totalBytes == UInt64(totals.diskBytes))
        #expect(s.files > 0 && s.totalBytes > 0, "a blob read is in the cache: \(s)")
    }
}
