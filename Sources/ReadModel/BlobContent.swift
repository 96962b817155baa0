import Basics
import ContentCache
import GitStore
import Synchronization

/// The content of one blob, opened for reading. Thread-safe: reads at any offsets from many threads.
/// A cache entry found damaged while reading is dropped and the blob reloaded through the chain (and
/// stored again), so damaged bytes are never returned; after three failed attempts the read fails with
/// an I/O error.
public final class BlobContent: Sendable {
    private let request: BlobRequest
    private let chain: BlobChain
    private let loaded: Mutex<LoadedBlob>

    public var id: ObjectID { request.id }

    init(request: BlobRequest, chain: BlobChain, loaded: LoadedBlob) {
        self.request = request
        self.chain = chain
        self.loaded = Mutex(loaded)
    }

    /// Bytes held in memory when the content is served from memory; nil when it reads a cache entry.
    public var memoryBytes: Int? {
        switch loaded.withLock({ $0 }) {
        case .cached, .streaming: return nil
        case .memory(let b): return b.count
        }
    }

    /// Content size in bytes.
    public var size: Int { loaded.withLock { $0 }.size }

    /// Copies bytes from `offset` until the buffer is full or the content ends; returns the count.
    public func read(offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(ResolverError) -> Int {
        var attempts = 0
        while true {
            switch loaded.withLock({ $0 }) {
            case .memory(let bytes):
                guard offset < bytes.count else { return 0 }
                let n = min(buffer.count, bytes.count - offset)
                bytes.withUnsafeBytes { src in
                    buffer.baseAddress!.copyMemory(from: src.baseAddress! + offset, byteCount: n)
                }
                return n
            case .streaming(let stream):
                // Each range is answered once inflated; a failed stream is an I/O error (never reloaded:
                // it failed its pack's own checks).
                var done = 0
                do {
                    while done < buffer.count {
                        let n = try stream.read(offset: offset + done, into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]))
                        if n == 0 { break }
                        done += n
                    }
                } catch {
                    chain.opened.forget(request.id)   // the next open starts again (and meets the damage again)
                    throw error
                }
                return done
            case .cached(let entry):
                do {
                    var done = 0
                    while done < buffer.count {
                        let n = try entry.read(offset: offset + done,
                                               into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]))
                        if n == 0 { break }
                        done += n
                    }
                    return done
                } catch {
                    attempts += 1
                    chain.logDamagedEntry(request, error)
                    guard attempts < 3 else { throw .cache(error) }
                    let reloaded = try chain.reload(request)
                    loaded.withLock { $0 = reloaded }
                }
            }
        }
    }

    /// The whole content (for small files such as symlink targets).
    public func readAll() throws(ResolverError) -> [UInt8] {
        let total = size
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(total, 1), alignment: 1)
        defer { buffer.deallocate() }
        var done = 0
        while done < total {
            let n = try read(offset: done, into: UnsafeMutableRawBufferPointer(rebasing: buffer[done..<total]))
            if n == 0 { break }
            done += n
        }
        return Array(buffer.prefix(done))
    }
}
