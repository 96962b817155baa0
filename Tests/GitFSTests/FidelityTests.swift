import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

extension MountTests {
    /// `commits/<id>/` against `git archive <id> | tar -x`, and the refs against `git`.
    @Suite struct Fidelity {

        /// A repository whose second commit adds a directory of 10,000 entries.
        static func makeWideRepo(at dir: String) throws {
            let many = (0..<10_000).map { (String(format: "many/f%05d.txt", $0), Array("entry \($0)\n".utf8)) }
            try fastImportRepo(at: dir, commits: [[("README", Array("wide\n".utf8))], many])
        }

        @Test func everyCommitEqualsGitArchive() throws {
            let fixture = try FixtureRepo.shared()
            let work = try TempDir("fidelity")
            let wide = work.sub("wide")
            try Self.makeWideRepo(at: wide)

            let m = try MountedHome("fidelity")
            defer { m.unmount() }
            try m.clone(fixture.path, as: "fixture")
            try m.clone(wide, as: "wide")
            try m.mount(watchdogSeconds: 240)

            var compared = 0
            for (name, repo) in [("fixture", fixture.path), ("wide", wide)] {
                let commits = try git("rev-list", "--all", cwd: repo).split(separator: "\n").map(String.init)
                #expect(commits.count >= 2)
                for id in commits {
                    let expectedDir = work.sub("archive-\(id)")
                    try gitArchive(repo, id, into: expectedDir)
                    defer { try? FileManager.default.removeItem(atPath: expectedDir) }
                    let root = m.path("\(name)/commits/\(id)")
                    try compareCommit(root: root, expectedDir: expectedDir, repo: repo, id: id)
                    compared += 1
                }
            }
            #expect(compared >= 7)
            #expect(!m.watchdogHasFired)
        }

        private func compareCommit(root: String, expectedDir: String, repo: String, id: String) throws {
            let ct = try commitTime(repo, id)
            let expected = try walkTree(expectedDir)
            let actual = try walkTree(root)
            let missing = Set(expected.keys).subtracting(actual.keys).sorted()
            let extra = Set(actual.keys).subtracting(expected.keys).sorted()
            #expect(missing.isEmpty, "\(id): missing from the mount: \(missing.prefix(10))")
            #expect(extra.isEmpty, "\(id): extra in the mount: \(extra.prefix(10))")

            var problems: [String] = []
            for (rel, want) in expected.sorted(by: { $0.key < $1.key }) {
                guard let got = actual[rel] else { continue }
                let full = rel.isEmpty ? root : root + "/" + rel
                if got.mtime != ct { problems.append("\(rel): mtime \(got.mtime), committer time \(ct)") }
                switch want.kind {
                case .directory:
                    if got.kind != .directory || got.permissions != 0o555 { problems.append("\(rel): \(got), want a 0555 directory") }
                case .symlink(let target):
                    if got.kind != .symlink(target) { problems.append("\(rel): \(got), want symlink -> \(target)") }
                    if got.size != target.utf8.count { problems.append("\(rel): symlink size \(got.size), want \(target.utf8.count)") }
                case .file:
                    let mode: UInt32 = want.isExecutableFile ? 0o555 : 0o444
                    if got.kind != .file || got.permissions != mode || got.size != want.size {
                        problems.append("\(rel): \(got), want file mode \(String(mode, radix: 8)) size \(want.size)")
                        continue
                    }
                    switch readWholeFile(expectedDir + "/" + rel) {
                    case .success(let bytes):
                        if let diff = compareFile(full, with: bytes) { problems.append(diff) }
                    case .failure(let e): problems.append("cannot read the archive's \(rel): \(e)")
                    }
                case .other:
                    problems.append("\(rel): unexpected kind in the archive")
                }
                if problems.count > 30 { break }
            }
            #expect(problems.isEmpty, "\(id):\n\(summary(problems))")

            // user.git.oid on every file and directory (symlinks cannot carry user.* attributes on Linux).
            var xattrProblems: [String] = []
            for (rel, object) in try gitTreeObjects(repo, id) {
                guard let info = actual[rel], info.kind == .file || info.kind == .directory else { continue }
                let full = rel.isEmpty ? root : root + "/" + rel
                let value = gitOIDAttribute(full)
                if value != object.oid { xattrProblems.append("\(rel): user.git.oid \(value ?? "<none>"), git says \(object.oid)") }
                if xattrProblems.count > 20 { break }
            }
            #expect(xattrProblems.isEmpty, "\(id):\n\(summary(xattrProblems))")
        }

        @Test func branchesTagsAndHeadPointWhereGitSays() throws {
            let fixture = try FixtureRepo.shared()
            let m = try MountedHome("refs")
            defer { m.unmount() }
            try m.clone(fixture.path, as: "fixture")
            try m.mount(watchdogSeconds: 60)
            let repoRoot = m.path("fixture")

            #expect(try #require(lstatInfo(repoRoot + "/HEAD")).kind == .symlink("branches/\(fixture.defaultBranch)"))
            let headResolved = URL(fileURLWithPath: repoRoot + "/HEAD").resolvingSymlinksInPath().path
            #expect(headResolved == repoRoot + "/commits/" + (try revParse(fixture.path, "main")))

            // Every branch and tag: the right number of ../, the id git gives, and the link resolves.
            var refs: [(dir: String, name: String, id: String)] = []
            for line in try git("for-each-ref", "--format=%(refname:short)", "refs/heads", cwd: fixture.path).split(separator: "\n") {
                refs.append(("branches", String(line), try revParse(fixture.path, "refs/heads/\(line)^{commit}")))
            }
            for line in try git("for-each-ref", "--format=%(refname:strip=2)", "refs/tags", cwd: fixture.path).split(separator: "\n") {
                refs.append(("tags", String(line), try revParse(fixture.path, "refs/tags/\(line)^{commit}")))
            }
            #expect(refs.contains { $0.name == "feature/x/y" } && refs.contains { $0.name == "nested/tag" })
            #expect(refs.contains { fixture.annotatedTags.contains($0.name) })
            for ref in refs {
                let link = repoRoot + "/\(ref.dir)/\(ref.name)"
                let depth = ref.name.split(separator: "/").count
                let want = String(repeating: "../", count: depth) + "commits/" + ref.id
                #expect(lstatInfo(link)?.kind == .symlink(want), "\(ref.dir)/\(ref.name)")
                let resolved = URL(fileURLWithPath: link).resolvingSymlinksInPath().path
                #expect(resolved == repoRoot + "/commits/" + ref.id, "\(ref.dir)/\(ref.name) resolves to \(resolved)")
                var st = stat()
                #expect(stat(link, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR, "\(ref.dir)/\(ref.name) is a directory through the link")
            }

            // Listings: nested directories for names with '/', commits/ lists every ref target.
            #expect(try listDirectory(repoRoot).sorted() == ["HEAD", "branches", "commits", "tags"])
            #expect(try listDirectory(repoRoot + "/branches").sorted() == ["feature", "main", "release-1.x"])
            #expect(try listDirectory(repoRoot + "/branches/feature") == ["x"])
            #expect(lstatInfo(repoRoot + "/branches/feature/x")?.kind == .directory)
            #expect(try listDirectory(repoRoot + "/branches/feature/x") == ["y"])
            #expect(try listDirectory(repoRoot + "/tags").sorted() == ["nested", "v1.0", "v1.1-light"])
            #expect(try listDirectory(repoRoot + "/tags/nested") == ["tag"])
            #expect(Set(try listDirectory(repoRoot + "/commits")) == Set(refs.map(\.id)))

            // Any full commit id of the mirror can be looked up, also one no ref points at.
            let older = try revParse(fixture.path, "main~2")
            #expect(lstatInfo(repoRoot + "/commits/" + older)?.kind == .directory)
            #expect(lstatInfo(repoRoot + "/commits/" + String(repeating: "0", count: 40)) == nil)
            #expect(lstatInfo(repoRoot + "/commits/" + String(older.prefix(12))) == nil, "abbreviated ids are not entries")
            // The root shows the repository and .gitfs.
            #expect(try listDirectory(m.path("")).sorted() == [".gitfs", "fixture"])
        }
    }
}
