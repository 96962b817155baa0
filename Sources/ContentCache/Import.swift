import Basics
#if canImport(Glibc)
import Glibc
#endif

/// An entry's encoded bytes (cache-layout.md's entry format) arriving from elsewhere — a remote cache —
/// written piece by piece into a locked temporary file in tmp/, so no whole entry is held in memory.
/// Nothing is visible in the cache until `ContentCache.commitImport` has checked it; an import that is
/// dropped (or fails) removes its file. Use from one thread.
public final class EntryImport {
    public let key: ObjectID
    let temp: TempFile
    /// Bytes appended so far.
    public private(set) var written = 0
    var finished = false

    init(key: ObjectID, temp: consuming TempFile) {
        self.key = key
        self.temp = temp
    }

    /// Appends the next bytes of the entry.
    public func append(_ bytes: UnsafeRawBufferPointer) throws(CacheError) {
        guard !bytes.isEmpty else { return }
        do { try temp.fd.write(bytes, at: written) } catch {
            throw ContentCache.failure(error, "cannot write an imported cache entry \(key)")
        }
        written += bytes.count
    }

    deinit {
        if !finished { try? FileSystem.remove(temp.path) }
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
        return EntryImport(key: key, temp: try createLockedTemp(key.hex))
    }

    /// Checks an imported entry as untrusted input — integrity rules 1–4 (header, CRC-32C, key, exact
    /// size, every chunk's frame and checksum) and the whole content against the key with `verifier`
    /// (made for the content size the header states) — and only then publishes it: a small entry is
    /// appended to this process's segment, a large one renamed into objects/. Returns the entry, open.
    /// Anything invalid throws `.corrupt` (or `.verifyFailed` for content that is not the key's blob)
    /// and leaves nothing behind. Memory: one chunk at a time.
    public func commitImport(_ imp: EntryImport, verifier makeVerifier: (Int) -> StreamingVerifier) throws(CacheError) -> CacheEntry {
        defer { if !imp.finished { imp.finished = true; try? FileSystem.remove(imp.temp.path) } }
        let key = imp.key
        let header: EntryHeader
        switch Self.readFileHeader(imp.temp.fd) {                        // rules 1 and 3
        case .success(let h): header = h
        case .failure(let e): throw CacheError.corrupt("imported entry \(key): \(e.message)")
        }
        guard header.key == key else { throw CacheError.corrupt("imported entry \(key) holds another key (\(header.key))") }   // rule 2
        let checkFD: FileDescriptor
        do { checkFD = try FileDescriptor.open(imp.temp.path, O_RDONLY) } catch {
            throw Self.failure(error, "cannot reopen an imported cache entry \(key)")
        }
        let probe = CacheEntry(header: header, backing: .file(checkFD), pool: pool) { _ in }
        let verifier = makeVerifier(header.contentSize)
        let piece = UnsafeMutableRawBufferPointer.allocate(byteCount: min(header.chunkSize, 1 << 20), alignment: 16)
        defer { piece.deallocate() }
        var offset = 0
        while offset < header.contentSize {                              // rule 4
            let n = try probe.read(offset: offset, into: piece)
            guard n > 0 else { throw CacheError.corrupt("imported entry \(key) is short") }
            verifier.update(UnsafeRawBufferPointer(rebasing: piece[0..<n]))
            offset += n
        }
        guard verifier.matches() else {
            throw CacheError(.verifyFailed, "imported entry \(key): its content does not hash to that object id")
        }
        if containsCheap(key), let existing = lookup(key) { return existing }
        if header.chunkCount <= 1 && header.recordSize <= Self.smallRecordLimit {
            let record: [UInt8]
            do { record = try imp.temp.fd.read(count: header.recordSize, at: 0) } catch {
                throw Self.failure(error, "cannot read an imported cache entry \(key)")
            }
            do throws(CacheError) { try appendRecord(key, record, contentSize: header.contentSize) } catch {
                logOnce(error)
                throw error
            }
        } else {
            let disk = (try? imp.temp.fd.status()).map(FileSystem.diskBytes) ?? 0
            let path = objectPath(key)
            let replaced = (try? FileSystem.linkStatus(path)).map(FileSystem.diskBytes)
            do throws(CacheError) { try publish(imp.temp.path, path) } catch {
                logOnce(error)
                throw error
            }
            imp.finished = true
            running.add(entries: replaced == nil ? 1 : 0, diskBytes: disk - (replaced ?? 0))
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
