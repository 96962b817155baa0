import Basics
#if canImport(Glibc)
import Glibc
#endif

/// An entry's encoded bytes (cache-layout.md's entry format) arriving from elsewhere — a remote cache —
/// piece by piece: held in memory while they fit a small entry (32 KiB), else written into a locked
/// temporary file in tmp/, so no whole large entry is held in memory. Nothing is visible in the cache
/// until `ContentCache.commitImport` has checked it; an import that is dropped (or fails) removes its
/// file. Use from one thread.
public final class EntryImport {
    public let key: ObjectID
    private let cache: ContentCache
    /// The bytes so far while they fit a small entry; nil once they went to `temp`.
    var memory: [UInt8]? = []
    var temp: Spilled?
    /// The temporary file, once the bytes outgrew memory (a reference, so it can be optional).
    final class Spilled {
        let file: TempFile
        var path: String { file.path }
        init(_ file: consuming TempFile) { self.file = file }
    }
    /// Bytes appended so far.
    public private(set) var written = 0
    var finished = false

    init(key: ObjectID, cache: ContentCache) {
        self.key = key
        self.cache = cache
    }

    /// Appends the next bytes of the entry.
    public func append(_ bytes: UnsafeRawBufferPointer) throws(CacheError) {
        guard !bytes.isEmpty else { return }
        if memory != nil, written + bytes.count <= ContentCache.smallRecordLimit {
            memory!.append(contentsOf: bytes)
            written += bytes.count
            return
        }
        try spill()
        do { try temp!.file.fd.write(bytes, at: written) } catch {
            throw ContentCache.failure(error, "cannot write an imported cache entry \(key)")
        }
        written += bytes.count
    }

    /// Moves the bytes held in memory into a new locked temporary file.
    func spill() throws(CacheError) {
        guard let held = memory else { return }
        let t = try cache.createLockedTemp(key.hex)
        do { try t.fd.write(held, at: 0) } catch {
            try? FileSystem.remove(t.path)
            throw ContentCache.failure(error, "cannot write an imported cache entry \(key)")
        }
        temp = Spilled(t)
        memory = nil
    }

    deinit {
        if !finished, let path = temp?.path { try? FileSystem.remove(path) }
    }
}

/// Checks content decompressed from an imported entry, piece by piece in order: `update` gets every
/// content byte once, `matches` says at the end whether the content is the blob named by the key
/// (git's hash). Built per import by the caller, which knows how objects are named.
public struct StreamingVerifier {
    public let update: (UnsafeRawBufferPointer) -> Void
    public let matches: () -> Bool

    public init(update: @escaping (UnsafeRawBufferPointer) -> Void, matches: @escaping () -> Bool) {
        self.update = update
        self.matches = matches
    }
}

extension ContentCache {
    /// Starts importing the entry of `key` (a locked temporary file in tmp/, which gc leaves alone).
    public func beginImport(_ key: ObjectID) throws(CacheError) -> EntryImport {
        guard isInitialised else {
            throw CacheError(.readOnly, "content cache \(directory) is not initialised and cannot be; \(key) not cached")
        }
        ensureLoaded()
        return EntryImport(key: key, cache: self)
    }

    /// Checks an imported entry as untrusted input — integrity rules 1–4 (header, CRC-32C, key, exact
    /// size, every chunk's frame and checksum) and the whole content against the key with `verifier`
    /// (made for the content size the header states) — and only then publishes it: a small entry is
    /// appended to this process's segment, a large one renamed into objects/. Returns the entry, open.
    /// Anything invalid throws `.corrupt` (or `.verifyFailed` for content that is not the key's blob)
    /// and leaves nothing behind. Memory: one chunk at a time.
    public func commitImport(_ imp: EntryImport, verifier makeVerifier: (Int) -> StreamingVerifier) throws(CacheError) -> CacheEntry {
        defer {
            if !imp.finished, let path = imp.temp?.path { try? FileSystem.remove(path) }
            imp.finished = true
        }
        let key = imp.key
        // Rules 1 and 3 (header, CRC-32C, exact size), then 2 (the key), on the bytes as they came.
        let header: EntryHeader
        let probe: CacheEntry
        if let bytes = imp.memory {
            switch bytes.withUnsafeBytes({ EntryHeader.parse($0) }) {
            case .ok(let h) where h.recordSize == bytes.count: header = h
            case .ok: throw CacheError.corrupt("imported entry \(key): its size does not match its header (truncated or extended)")
            case .needMore: throw CacheError.corrupt("imported entry \(key): truncated header")
            case .invalid(let why): throw CacheError.corrupt("imported entry \(key): \(why)")
            }
            probe = CacheEntry(header: header, backing: .memory(bytes), pool: pool) { _ in }
        } else {
            switch Self.readFileHeader(imp.temp!.file.fd) {
            case .success(let h): header = h
            case .failure(let e): throw CacheError.corrupt("imported entry \(key): \(e.message)")
            }
            let checkFD: FileDescriptor
            do { checkFD = try FileDescriptor.open(imp.temp!.path, O_RDONLY) } catch {
                throw Self.failure(error, "cannot reopen an imported cache entry \(key)")
            }
            probe = CacheEntry(header: header, backing: .file(checkFD), pool: pool) { _ in }
        }
        guard header.key == key else { throw CacheError.corrupt("imported entry \(key) holds another key (\(header.key))") }
        // Rule 4 on every chunk, and git's hash of the whole content (rule 5), one piece at a time.
        let verifier = makeVerifier(header.contentSize)
        let piece = UnsafeMutableRawBufferPointer.allocate(byteCount: min(header.chunkSize, 1 << 20), alignment: 16)
        defer { piece.deallocate() }
        var offset = 0
        while offset < header.contentSize {
            let n = try probe.read(offset: offset, into: piece)
            guard n > 0 else { throw CacheError.corrupt("imported entry \(key) is short") }
            verifier.update(UnsafeRawBufferPointer(rebasing: piece[0..<n]))
            offset += n
        }
        guard verifier.matches() else {
            throw CacheError(.verifyFailed, "imported entry \(key): its content does not hash to that object id")
        }
        if containsCheap(key), let existing = lookup(key) { return existing }
        do throws(CacheError) {
            if header.chunkCount <= 1 && header.recordSize <= Self.smallRecordLimit {
                let record: [UInt8]
                if let bytes = imp.memory { record = bytes } else {
                    do { record = try imp.temp!.file.fd.read(count: header.recordSize, at: 0) } catch {
                        throw Self.failure(error, "cannot read an imported cache entry \(key)")
                    }
                }
                try appendRecord(key, record, contentSize: header.contentSize)
            } else {
                try imp.spill()
                let temp = imp.temp!
                let disk = (try? temp.file.fd.status()).map(FileSystem.diskBytes) ?? 0
                let path = objectPath(key)
                let replaced = (try? FileSystem.linkStatus(path)).map(FileSystem.diskBytes)
                try publish(temp.path, path)
                imp.finished = true
                running.add(entries: replaced == nil ? 1 : 0, diskBytes: disk - (replaced ?? 0))
            }
        } catch {
            logOnce(error)
            throw error
        }
        guard let entry = lookup(key) else { throw CacheError.io("imported entry \(key) vanished after it was published") }
        return entry
    }
}

extension CacheEntry {
    /// Size of the entry's encoded bytes (header and frames: what a remote cache stores).
    public var encodedSize: Int { header.recordSize }

    /// Copies the entry's encoded bytes from `offset` (for uploading them as they are); returns the
    /// count, 0 at the end. Not checked here: the entry was checked when stored or imported.
    public func readEncoded(offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(CacheError) -> Int {
        let total = header.recordSize
        guard offset >= 0, offset < total, buffer.count > 0 else { return 0 }
        let n = min(buffer.count, total - offset)
        switch backing {
        case .memory(let bytes):
            bytes.withUnsafeBytes { src in
                buffer.baseAddress!.copyMemory(from: src.baseAddress! + offset, byteCount: n)
            }
            return n
        case .file(let fd):
            do { return try fd.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n]), at: offset) } catch {
                throw CacheError.io("cannot read cache entry \(key): \(error.message)")
            }
        }
    }
}

/// The header of an encoded entry, as far as a remote's ranged read of its start can tell.
public enum EntryPrefix {
    /// Bytes of an entry's start enough for `contentSize` when the entry has at most `chunks` chunks.
    public static func bytesNeeded(chunks: Int) -> Int { EntryHeader.headerSize(chunkCount: chunks) }

    /// The content size from an entry's first bytes, checked (magic, fields, CRC-32C, key); nil when the
    /// bytes are not a valid header for `key`; `.needMore(n)` when `bytes` is too short.
    public enum Parsed: Sendable { case size(Int), needMore(Int), invalid }

    public static func parse(_ bytes: UnsafeRawBufferPointer, key: ObjectID) -> Parsed {
        switch EntryHeader.parse(bytes) {
        case .ok(let h): return h.key == key ? .size(h.contentSize) : .invalid
        case .needMore(let n): return .needMore(n)
        case .invalid: return .invalid
        }
    }
}
