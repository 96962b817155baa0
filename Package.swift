// swift-tools-version: 6.0
import PackageDescription

/// Release builds specialize generics across modules (FuseMount<GitFileSystem>, InodeTable<GitFSNode>):
/// without it the FUSE server's hot paths run through unspecialized generic code.
let optimize: [SwiftSetting] = [.unsafeFlags(["-cross-module-optimization"], .when(configuration: .release))]

let package = Package(
    name: "gitfs",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "gitfs", targets: ["gitfs"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // C bindings: one system-library target per C library; all C lives here.
        .systemLibrary(name: "CGit2", pkgConfig: "libgit2", providers: [.apt(["libgit2-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CFuse", pkgConfig: "fuse3", providers: [.apt(["libfuse3-dev"])]),
        // OpenSSL's libcrypto, for SHA-1 only: verifying blob contents before they enter the cache.
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // libdeflate, for inflating whole blobs out of packs (2.3x zlib's inflate).
        .systemLibrary(name: "CDeflate", pkgConfig: "libdeflate", providers: [.apt(["libdeflate-dev"])]),
        // libcurl, for the remote cache client (S3 with SigV4, HTTP): requests, keep-alive, ranges, time-outs.
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        // zlib, for inflating big blobs piece by piece (streamed into the cache, never held whole).
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // glibc malloc tuning (mallopt), for the mount server: no library, only a header.
        .systemLibrary(name: "CMalloc"),
        // A SIGBUS guard for mapped packs: a pack shrunk under a mapping reads as zeros, not a crash.
        .target(name: "CPackGuard"),

        // Basics: the vocabulary every module shares: the object id, the POSIX layer (FileDescriptor, Errno,
        // EINTR-retrying calls), the monotonic clock and the byte formatter. Depends on nothing but libc.
        .target(name: "Basics", swiftSettings: optimize),
        // Threads: bounded, joined POSIX worker threads (the server's workers, the background loaders).
        .target(name: "Threads", swiftSettings: optimize),
        // Git store: mirrors (clone, fetch, refs) and object reads over pooled libgit2 handles.
        .target(name: "GitStore", dependencies: ["Basics", "CGit2", "CCrypto", "CDeflate", "CZlib", "CPackGuard", .product(name: "Logging", package: "swift-log")], swiftSettings: optimize),
        // Content cache: zstd-compressed, content-addressed, chunked store on disk (cache-layout.md).
        .target(name: "ContentCache", dependencies: ["Basics", "CZstd", .product(name: "Logging", package: "swift-log")], swiftSettings: optimize),
        // Read model: commit -> tree -> entry -> blob, bounded tree/size caches, the chain of blob sources
        // (opened, pending, content cache, packs) with single-flight, counting and fill-back.
        .target(name: "ReadModel", dependencies: ["Basics", "GitStore", "ContentCache", .product(name: "Logging", package: "swift-log")], swiftSettings: optimize),
        // Read-ahead: a mount's background work (cache filler, speculator) on one shared bounded queue.
        .target(name: "ReadAhead", dependencies: ["Basics", "ReadModel", "GitStore", "ContentCache", "Threads", .product(name: "Logging", package: "swift-log")], swiftSettings: optimize),
        // Prefetch: `gitfs prefetch` (parallel walk and load of revisions) and git-style pathspec globs.
        .target(name: "Prefetch", dependencies: ["Basics", "ReadModel", "GitStore", "ContentCache", "Threads"], swiftSettings: optimize),
        // Remote cache client: URL forms, credentials, the S3/HTTP client over libcurl, the breaker.
        .target(name: "RemoteCache", dependencies: ["Basics", "CCurl"], swiftSettings: optimize),
        // Remote tier: a remote cache in the blob chain (fetch, check, publish), sizes, the write-back.
        .target(name: "RemoteTier", dependencies: ["Basics", "ReadModel", "ReadAhead", "ContentCache", "GitStore", "RemoteCache", "Threads", .product(name: "Logging", package: "swift-log")], swiftSettings: optimize),
        // FUSE server: session loop, inode table, request dispatch, replies. Knows nothing of git or zstd.
        .target(name: "FuseServer", dependencies: ["Basics", "CFuse", "Threads", .product(name: "Logging", package: "swift-log")], swiftSettings: optimize),
        // Settings kept in a home (`gitfs config`): the key table, the file, credential masking.
        .target(name: "Settings", dependencies: ["Basics"]),
        // The mount layout (repos, branches, tags, commits, .gitfs/stats) served over FuseServer.
        .target(name: "GitFS", dependencies: ["Basics", "ReadModel", "ReadAhead", "RemoteTier", "FuseServer", "GitStore", "ContentCache", "Settings", "Threads", .product(name: "Logging", package: "swift-log")], swiftSettings: optimize),
        // `gitfs doctor`: read-only checks of FUSE access, mounts, the home, the cache and the mirrors.
        .target(name: "Doctor", dependencies: ["Basics", "GitFS", "GitStore", "ContentCache", "ReadModel", "Settings"]),
        // CLI: argument parsing only; calls the libraries.
        .target(name: "GitfsCommands", dependencies: [
            "Basics", "CMalloc", "GitStore", "ContentCache", "ReadModel", "Prefetch", "GitFS", "Settings", "Doctor", "RemoteCache", "RemoteTier",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: optimize),
        .executableTarget(name: "gitfs", dependencies: ["GitfsCommands"]),
        .executableTarget(name: "gitfs-cache-bench", dependencies: ["Basics", "ContentCache", "GitStore"], path: "Benchmarks/CacheBench"),

        // Tests
        .target(name: "TestSupport", dependencies: ["Basics"], path: "Tests/TestSupport"),
        .testTarget(name: "BasicsTests", dependencies: ["Basics"]),
        .testTarget(name: "GitStoreTests", dependencies: ["Basics", "GitStore", "TestSupport"]),
        .testTarget(name: "ContentCacheTests", dependencies: ["Basics", "ContentCache", "GitStore", "TestSupport"]),
        .testTarget(name: "FuseServerTests", dependencies: ["Basics", "FuseServer", "TestSupport"]),
        .testTarget(name: "GitFSTests", dependencies: ["Basics", "GitFS", "ReadModel", "ReadAhead", "Prefetch", "GitStore", "ContentCache", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)

// Fuzz targets (Fuzz/, libFuzzer): declared only when GITFS_FUZZ is set, as tools/fuzz does (with
// `--sanitize fuzzer --sanitize address` into .build-fuzz), so the ordinary build and tests never see them.
// Debug builds are testable, so the targets reach the parsers' internal entry points with @testable import.
if Context.environment["GITFS_FUZZ"] != nil {
    let fuzzTargets: [(name: String, dependencies: [Target.Dependency])] = [
        ("pack", ["FuzzPackSupport"]),
        ("pack-shrunk", ["FuzzPackSupport"]),
        ("delta", ["GitStore"]),
        ("objects", ["GitStore"]),
        ("cache-entry", ["Basics", "ContentCache", "FuzzCacheSupport"]),
        ("cache-segment", ["Basics", "ContentCache", "FuzzCacheSupport"]),
        ("usage", ["Basics", "ContentCache"]),
        ("glob", ["Prefetch"]),
        ("url", ["GitStore"]),
        ("mount-options", ["GitfsCommands"]),
    ]
    package.targets.append(.target(name: "FuzzSupport", path: "Fuzz/Support"))
    package.targets.append(.target(name: "FuzzCacheSupport", dependencies: ["ContentCache"], path: "Fuzz/CacheSupport"))
    package.targets.append(.target(name: "FuzzPackSupport", dependencies: ["Basics", "GitStore", "FuzzSupport"], path: "Fuzz/PackSupport"))
    for t in fuzzTargets {
        package.targets.append(.executableTarget(
            name: "fuzz-" + t.name, dependencies: t.dependencies + ["FuzzSupport"], path: "Fuzz/" + t.name, exclude: ["corpus"],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]))
    }
}
