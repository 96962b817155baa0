import Basics
import CCrypto
import CGit2

// MARK: libgit2 conversions of the shared object id (internal)

extension ObjectID {
    init(_ oid: git_oid) {
        var o = oid
        self = Swift.withUnsafeBytes(of: &o) { ObjectID(raw: UnsafeRawBufferPointer(rebasing: $0[0..<20])) }
    }

    init(_ oid: UnsafePointer<git_oid>) { self.init(oid.pointee) }

    var gitOID: git_oid {
        var o = git_oid()
        withUnsafeBytes { src in
            Swift.withUnsafeMutableBytes(of: &o) { dst in dst.copyMemory(from: src) }
        }
        return o
    }
}

/// Hashing of content the way git names it.
public enum GitHash {
    /// The id git gives a blob with this content (OpenSSL SHA-1 via the CCrypto shim), i.e. the SHA-1
    /// of "blob <size>\0" + content. Thread-safe.
    public static func blobID(of content: UnsafeRawBufferPointer) -> ObjectID {
        var digest = [UInt8](repeating: 0, count: 20)
        let rc = digest.withUnsafeMutableBufferPointer { out in
            gitfs_blob_sha1(content.baseAddress, content.count, out.baseAddress)
        }
        precondition(rc == 0, "SHA-1 (OpenSSL EVP) failed")
        return digest.withUnsafeBytes { ObjectID(raw: $0) }
    }

    /// True when `content` is the blob named `id` (its `blobID` equals `id`): the content cache's
    /// verifier (`ContentCache.Verifier`). Thread-safe.
    @Sendable
    public static func isBlob(_ id: ObjectID, content: UnsafeRawBufferPointer) -> Bool {
        blobID(of: content) == id
    }

    /// git's blob id of content that arrives in pieces (a cache entry decompressed chunk by chunk), so
    /// no whole blob is held in memory to check it. Use from one thread; `finish` once.
    public final class BlobHasher {
        private let ctx: OpaquePointer
        private var finished = false

        /// `size`: the content's total size (part of what git hashes).
        public init(size: Int) {
            guard let ctx = gitfs_blob_sha1_start(size) else { preconditionFailure("SHA-1 (OpenSSL EVP) failed") }
            self.ctx = ctx
        }

        public func update(_ bytes: UnsafeRawBufferPointer) {
            precondition(gitfs_sha1_update(ctx, bytes.baseAddress, bytes.count) == 0, "SHA-1 (OpenSSL EVP) failed")
        }

        /// The id of everything given to `update`.
        public func finish() -> ObjectID {
            finished = true
            var digest = [UInt8](repeating: 0, count: 20)
            let rc = digest.withUnsafeMutableBufferPointer { gitfs_sha1_finish(ctx, $0.baseAddress) }
            precondition(rc == 0, "SHA-1 (OpenSSL EVP) failed")
            return digest.withUnsafeBytes { ObjectID(raw: $0) }
        }

        deinit {
            if !finished { var d = [UInt8](repeating: 0, count: 20); _ = gitfs_sha1_finish(ctx, &d) }
        }
    }
}
