// gitfs-cache-bench: the content cache benchmark (tools/bench-cache), plus two helper modes the
// ContentCacheTests use as a real second process:
//   gitfs-cache-bench run [--repo BARE_REPO] [--work DIR]
//   gitfs-cache-bench store-random CACHE_DIR BYTES        (stores one entry of random bytes)
//   gitfs-cache-bench gc CACHE_DIR MAX_SIZE PASSES         (runs gc passes back to back)
//   gitfs-cache-bench fill CACHE_DIR COUNT LARGE_EVERY     (stores COUNT entries; 1 in LARGE_EVERY large)
// and one for comparing blob reads with `git cat-file --batch` (tools/bench-profile.sh-style A/B checks):
//   gitfs-cache-bench read-blobs HOME NAME OIDS_FILE [libgit2]  (reads every blob listed, one thread)
import Basics
import ContentCache
import Foundation
import GitStore

func key(_ content: UnsafeRawBufferPointer) -> ObjectID {
    GitHash.blobID(of: content)
}

let gitVerifier: ContentCache.Verifier = GitHash.isBlob

func die(_ s: String) -> Never {
    FileHandle.standardError.write(Data("gitfs-cache-bench: \(s)\n".utf8))
    exit(1)
}

func now() -> Double { Double(MonotonicTime.now.nanoseconds) / 1e9 }

@discardableResult
func sh(_ cmd: String) -> (String, Double) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", cmd]
    let pipe = Pipe()
    p.standardOutput = pipe
    let t0 = now()
    try! p.run()
    let out = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    if p.terminationStatus != 0 { die("command failed: \(cmd)") }
    return (String(decoding: out, as: UTF8.self), now() - t0)
}

func duBytes(_ path: String) -> Int {
    Int(sh("du -sk --apparent-size=false '\(path)' 2>/dev/null || du -sk '\(path)'").0.split(separator: "\t").first ?? "0")! * 1024
}

func mb(_ bytes: Int, _ secs: Double) -> String { String(format: "%.0f MB/s", Double(bytes) / secs / 1e6) }
func f2(_ v: Double) -> String { String(format: "%.2f", v) }

/// All blobs of HEAD of a bare repository, read with `git cat-file --batch`.
func blobsOfHead(_ repo: String) -> [[UInt8]] {
    let list = sh("git -C '\(repo)' ls-tree -r HEAD | awk '$2==\"blob\"{print $3}' | sort -u > /tmp/cc-bench-ids && git -C '\(repo)' cat-file --batch < /tmp/cc-bench-ids > /tmp/cc-bench-batch")
    _ = list
    let data = try! Data(contentsOf: URL(fileURLWithPath: "/tmp/cc-bench-batch"))
    var blobs: [[UInt8]] = []
    data.withUnsafeBytes { raw in
        var p = 0
        while p < raw.count {
            var nl = p
            while raw[nl] != 10 { nl += 1 }
            let header = String(decoding: UnsafeRawBufferPointer(rebasing: raw[p..<nl]), as: UTF8.self).split(separator: " ")
            let size = Int(header[2])!
            blobs.append(Array(UnsafeRawBufferPointer(rebasing: raw[(nl + 1)..<(nl + 1 + size)])))
            p = nl + 1 + size + 1
        }
    }
    return blobs
}

func runBenchmark(repo: String, work: String) {
    sh("rm -rf '\(work)' && mkdir -p '\(work)'")
    print("== gitfs content cache benchmark (release build, one run) ==")
    print("tree: HEAD of \(repo)")
    let blobs = blobsOfHead(repo)
    let raw = blobs.reduce(0) { $0 + $1.count }
    let sizes = blobs.map(\.count).sorted()
    print("blobs: \(blobs.count), raw \(raw) bytes, median blob \(sizes[sizes.count / 2]) B")

    // Fill.
    let cacheDir = work + "/cache"
    let cache = try! ContentCache(directory: cacheDir, verifier: gitVerifier)
    let keys = blobs.map { b in b.withUnsafeBytes { key($0) } }
    var t0 = now()
    for (k, b) in zip(keys, blobs) { try! b.withUnsafeBytes { try cache.store(k, content: $0) } }
    let fill = now() - t0
    // Full read.
    t0 = now()
    var buf = [UInt8](repeating: 0, count: 128 << 10)
    var readBytes = 0
    for k in keys {
        guard let e = cache.lookup(k) else { die("miss after fill") }
        var off = 0
        while true {
            let n = try! buf.withUnsafeMutableBytes { try e.read(offset: off, into: $0) }
            if n == 0 { break }
            off += n
        }
        readBytes += off
    }
    let read = now() - t0
    precondition(readBytes == raw)

    // zstd CLI on the same data (all blobs concatenated in one file, and one file per blob).
    let concat = work + "/concat"
    FileManager.default.createFile(atPath: concat, contents: Data(blobs.joined()))
    let (_, zc) = sh("zstd -1 -q -f '\(concat)' -o '\(concat).zst'")
    let (_, zd) = sh("zstd -d -q -c '\(concat).zst' > /dev/null")
    let zsize = (try! FileManager.default.attributesOfItem(atPath: concat + ".zst")[.size] as! Int)
    print("fill:      cache \(mb(raw, fill)) (git hash + zstd -1 chunks + publish) vs zstd -1 CLI on one concatenated file \(mb(raw, zc)): ratio \(f2(fill > 0 ? zc / fill : 0))")
    print("full read: cache \(mb(raw, read)) (lookup + decompress every blob) vs zstd -d CLI \(mb(raw, zd)): ratio \(f2(zd / read))")

    // Footprint.
    let t = cache.totals()
    let du = duBytes(cacheDir)
    print("footprint: du \(du) B, compressed entries (stored) \(t.storedBytes) B, raw \(raw) B")
    print("           du/stored \(f2(Double(du) / Double(t.storedBytes))) (budget <= 1.2), du/raw \(f2(Double(du) / Double(raw))), zstd -1 concat/raw \(f2(Double(zsize) / Double(raw)))")
    // What one file per entry would cost: each compressed entry rounded up to 4 KiB blocks.
    let oneFile = blobs.count * 4096
    print("           (one file per entry would need >= \(oneFile) B: \(f2(Double(oneFile) / Double(t.storedBytes)))x stored)")

    // Random 4 KiB reads from a 100 MB entry vs a plain file, for three chunk sizes.
    var big = [UInt8]()
    big.reserveCapacity(100 << 20)
    while big.count < 100 << 20 { for b in blobs { big += b; if big.count >= 100 << 20 { break } } }
    big.removeLast(big.count - (100 << 20))
    let plain = work + "/plain"
    FileManager.default.createFile(atPath: plain, contents: Data(big))
    let bigKey = big.withUnsafeBytes { key($0) }
    let reads = 20_000
    var rng = SystemRandomNumberGenerator()
    let offsets = (0..<reads).map { _ in Int.random(in: 0..<((100 << 20) - 4096), using: &rng) }
    let pfd = open(plain, O_RDONLY)
    var small = [UInt8](repeating: 0, count: 4096)
    for o in offsets.prefix(1000) { _ = small.withUnsafeMutableBytes { pread(pfd, $0.baseAddress, 4096, off_t(o)) } }
    t0 = now()
    for o in offsets { _ = small.withUnsafeMutableBytes { pread(pfd, $0.baseAddress, 4096, off_t(o)) } }
    let plainT = (now() - t0) / Double(reads)
    close(pfd)
    let (_, bc) = sh("zstd -1 -q -f '\(plain)' -o '\(plain).zst'")
    let (_, bd) = sh("zstd -d -q -c '\(plain).zst' > /dev/null")
    print("100 MB entry, zstd CLI: compress -1 \(mb(big.count, bc)), decompress \(mb(big.count, bd))")
    print("random 4 KiB reads from a 100 MB entry (\(reads) reads): plain file pread \(f2(plainT * 1e6)) us/read")
    for log2 in [16, 17, 18] {
        let dir = work + "/cache-\(log2)"
        let c = try! ContentCache(directory: dir, chunkLog2: log2, verifier: gitVerifier)
        t0 = now()
        try! big.withUnsafeBytes { try c.store(bigKey, content: $0) }
        let st = now() - t0
        let e = c.lookup(bigKey)!
        t0 = now()
        for o in offsets { _ = try! small.withUnsafeMutableBytes { try e.read(offset: o, into: $0) } }
        let ct = (now() - t0) / Double(reads)
        // Sequential 128 KiB reads.
        t0 = now()
        var off = 0
        while off < big.count { off += try! buf.withUnsafeMutableBytes { try e.read(offset: off, into: $0) } }
        let seq = now() - t0
        print("  chunk \(1 << (log2 - 10)) KiB: \(f2(ct * 1e6)) us/read = \(f2(ct / plainT))x plain; compressed \(f2(Double(e.storedSize) / Double(big.count))) of raw; store \(mb(big.count, st)) = \(f2(bc / st))x the zstd -1 CLI speed; sequential 128 KiB reads \(mb(big.count, seq)) = \(f2(bd / seq))x the zstd -d CLI speed")
    }
}

let args = CommandLine.arguments
switch args.count > 1 ? args[1] : "run" {
case "run":
    var repo = "/opt/swift-packages/apple/swift-nio.git"
    var work = "/tmp/gitfs-cache-bench"
    var i = 2
    while i + 1 < args.count {
        if args[i] == "--repo" { repo = args[i + 1] } else if args[i] == "--work" { work = args[i + 1] } else { die("unknown option \(args[i])") }
        i += 2
    }
    runBenchmark(repo: repo, work: work)
    sh("rm -rf '\(work)'")
case "store-random":
    guard args.count == 4, let n = Int(args[3]) else { die("usage: store-random CACHE_DIR BYTES") }
    var bytes = [UInt8](repeating: 0, count: n)
    var rng = SystemRandomNumberGenerator()
    bytes.withUnsafeMutableBytes { b in
        let words = b.bindMemory(to: UInt64.self)
        for i in words.indices { words[i] = rng.next() }
    }
    let c = try! ContentCache(directory: args[2], verifier: gitVerifier)
    let k = bytes.withUnsafeBytes { key($0) }
    FileHandle.standardOutput.write(Data("storing \(k)\n".utf8))
    do { try bytes.withUnsafeBytes { try c.store(k, content: $0) } } catch { die("\(error)") }
    print("stored \(k)")
case "fill":
    // Stores COUNT distinct entries of pseudo-random text, one in LARGE_EVERY of them a large entry
    // (over one chunk, its own file), the rest small (segments): a big cache to measure statfs on.
    guard args.count == 5, let count = Int(args[3]), let largeEvery = Int(args[4]), largeEvery > 0 else {
        die("usage: fill CACHE_DIR COUNT LARGE_EVERY")
    }
    let c = try! ContentCache(directory: args[2], verifier: gitVerifier)
    var rng = SystemRandomNumberGenerator()
    for i in 0..<count {
        var bytes = [UInt8](repeating: 0, count: i % largeEvery == 0 ? 70_000 : 100 + Int(rng.next() % 900))
        for j in bytes.indices { bytes[j] = UInt8(ascii: "a") + UInt8(rng.next() % 26) }
        let k = bytes.withUnsafeBytes { key($0) }
        do { try bytes.withUnsafeBytes { try c.store(k, content: $0, verified: true) } } catch { die("\(error)") }
    }
    print("stored \(count) entries in \(args[2])")
case "gc":
    guard args.count == 5, let max = Int(args[3]), let passes = Int(args[4]) else { die("usage: gc CACHE_DIR MAX_SIZE PASSES") }
    let c = try! ContentCache(directory: args[2], verifier: gitVerifier)
    for _ in 0..<passes {
        do { print(try c.gc(maxSize: max, maxAge: nil, dryRun: false)) } catch { die("\(error)") }
    }
case "read-blobs":
    guard args.count >= 5, let ids = try? String(contentsOfFile: args[4], encoding: .utf8) else {
        die("usage: read-blobs HOME NAME OIDS_FILE [libgit2]")
    }
    let own = !(args.count > 5 && args[5] == "libgit2")
    let repo: Repository
    do { repo = try MirrorStore(home: Home(path: args[2])).open(name: args[3], ownPackReader: own) } catch { die("\(error)") }
    let oids = ids.split(separator: "\n").compactMap { ObjectID(hex: String($0)) }
    let t0 = now()
    var bytes = 0
    for id in oids {
        do { bytes += try repo.blobBuffer(id).count } catch { die("\(error)") }
    }
    let t = now() - t0
    print("\(oids.count) blobs, \(bytes) bytes in \(Int(t * 1000)) ms (\(own ? "own pack reader" : "libgit2"), \(repo.blobsReadFromPacks) read by the pack reader)")
default:
    die("unknown mode \(args[1]); modes: run, store-random, fill, gc, read-blobs")
}
