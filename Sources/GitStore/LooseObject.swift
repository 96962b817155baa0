// LooseObject: a big loose blob inflated piece by piece into file-backed memory, its SHA-1 checked first.
import Basics
import CZlib
import Glibc

/// A loose object (`objects/xx/yyyy…`: zlib of "TYPE SIZE\0" + content) read without holding it in
/// anonymous memory: the compressed file is read in pieces (`pread`), zlib inflates it straight into a
/// `BlobBuffer` allocation (file-backed from `BlobBuffer.fileBackedThreshold` on: a nameless file in the
/// cache's `tmp/`, or `$TMPDIR`), and the result is handed out only after zlib checked the stream's
/// Adler-32, the content had exactly the header's size and its SHA-1 ("blob SIZE\0" + content) is the
/// object's id — a loose object has no CRC in an index, so nothing is served before that. Stateless:
/// thread-safe.
enum LooseObject {
    /// Compressed bytes read per `pread`.
    static let piece = 256 << 10
    /// Content inflated, hashed and dropped from the resident set at a time.
    static let window = 4 << 20

    /// What `blob` found.
    enum Found {
        /// The blob, verified.
        case blob(BlobBuffer)
        /// No loose file, not a blob, or smaller than the minimum: the caller reads it with libgit2.
        case notHere
    }

    /// The loose blob `id` under `objectsDirectory` when it is at least `minimumSize` bytes, inflated
    /// and verified; `.notHere` otherwise. Throws `.corrupt` for a loose file that does not inflate, has
    /// another size, or does not hash to `id`.
    static func blob(_ id: ObjectID, objectsDirectory: String, minimumSize: Int) throws(GitStoreError) -> Found {
        let hex = id.hex
        let path = objectsDirectory + "/" + hex.prefix(2) + "/" + hex.dropFirst(2)
        guard let file = try? FileDescriptor.open(path, O_RDONLY) else { return .notHere }
        let reader = Reader(file: file, path: path)
        guard let size = try reader.blobHeader(), size >= minimumSize else { return .notHere }
        guard let out = BlobBuffer.allocate(size) else {
            throw GitStoreError(.other, "loose object \(hex): no memory for \(size) bytes")
        }
        do throws(GitStoreError) {
            // Window by window: inflated, hashed, then dropped from the resident set (file-backed).
            let hasher = GitHash.BlobHasher(size: size)
            var at = 0
            while at < size {
                let n = min(window, size - at)
                let piece = UnsafeMutableRawBufferPointer(start: out.pointer + at, count: n)
                try reader.fill(piece)
                hasher.update(UnsafeRawBufferPointer(piece))
                out.dropResidentPages(from: at, length: n)
                at += n
            }
            try reader.expectEnd(size)
            guard hasher.finish() == id else { throw reader.corrupt("its content does not hash to its id") }
        } catch {
            BlobBuffer.deallocate(out)
            throw error
        }
        return .blob(BlobBuffer(owning: out, verified: true))
    }

    /// One loose file's zlib stream, inflated in order. Not thread-safe (one caller).
    private final class Reader {
        let file: FileDescriptor
        let path: String
        private let stream: UnsafeMutablePointer<z_stream>
        private let input: UnsafeMutableRawBufferPointer
        private var offset = 0
        private var ended = false
        private let ready: Bool

        init(file: consuming FileDescriptor, path: String) {
            self.file = file
            self.path = path
            stream = .allocate(capacity: 1)
            stream.initialize(to: z_stream())
            input = .allocate(byteCount: LooseObject.piece, alignment: 16)
            ready = gitfs_inflate_init(stream) == Z_OK
        }

        deinit {
            if ready { inflateEnd(stream) }
            stream.deinitialize(count: 1)
            stream.deallocate()
            input.deallocate()
        }

        func corrupt(_ why: String) -> GitStoreError {
            GitStoreError(.corrupt, "loose object \(path) is damaged: \(why)")
        }

        /// The size in a "blob SIZE\0" header; nil for another type. Throws for a damaged header.
        func blobHeader() throws(GitStoreError) -> Int? {
            guard ready else { throw GitStoreError(.other, "zlib could not be set up") }
            var header: [UInt8] = []
            var byte: UInt8 = 0
            while header.count < 64 {
                let n = try withUnsafeMutableBytes(of: &byte) { (b) throws(GitStoreError) -> Int in try inflateSome(into: b) }
                guard n == 1 else { throw corrupt("its header ends early") }
                if byte == 0 {
                    let text = String(decoding: header, as: UTF8.self)
                    guard text.hasPrefix("blob ") else { return nil }
                    guard let size = Int(text.dropFirst(5)), size >= 0 else { throw corrupt("its header '\(text)' is malformed") }
                    return size
                }
                header.append(byte)
            }
            throw corrupt("its header is too long")
        }

        /// Fills `out` with the next bytes of the content (all of them, or it throws).
        func fill(_ out: UnsafeMutableRawBufferPointer) throws(GitStoreError) {
            var done = 0
            while done < out.count {
                let n = try inflateSome(into: UnsafeMutableRawBufferPointer(rebasing: out[done...]))
                guard n > 0 else { throw corrupt("it inflates to fewer bytes than its header's \(out.count)") }
                done += n
            }
        }

        /// After the last byte of a content of `size` bytes: the stream must end there (zlib checks its
        /// Adler-32 at the end).
        func expectEnd(_ size: Int) throws(GitStoreError) {
            var spare: UInt8 = 0
            while !ended {
                let n = try withUnsafeMutableBytes(of: &spare) { (b) throws(GitStoreError) -> Int in try inflateSome(into: b) }
                if n > 0 { throw corrupt("it inflates to more than \(size) bytes") }
            }
        }

        /// Inflates into `out` until it is full, the stream ends, or (only with nothing produced yet)
        /// the file has nothing more; returns the bytes produced.
        private func inflateSome(into out: UnsafeMutableRawBufferPointer) throws(GitStoreError) -> Int {
            var produced = 0
            while produced < out.count, !ended {
                if stream.pointee.avail_in == 0 {
                    let n: Int
                    do { n = try file.read(into: input, at: offset) } catch { throw GitStoreError(.other, "cannot read \(path): \(error)") }
                    guard n > 0 else { throw corrupt("its zlib stream is cut short") }
                    offset += n
                    stream.pointee.next_in = input.baseAddress!.assumingMemoryBound(to: UInt8.self)
                    stream.pointee.avail_in = uInt(n)
                }
                stream.pointee.next_out = (out.baseAddress! + produced).assumingMemoryBound(to: UInt8.self)
                stream.pointee.avail_out = uInt(out.count - produced)
                let rc = CZlib.inflate(stream, Z_NO_FLUSH)
                produced = out.count - Int(stream.pointee.avail_out)
                switch rc {
                case Z_STREAM_END: ended = true
                case Z_OK: break
                case Z_BUF_ERROR where stream.pointee.avail_in == 0: break
                default:
                    let why = stream.pointee.msg.map { String(cString: $0) } ?? "zlib error \(rc)"
                    throw corrupt("it does not inflate (\(why))")
                }
            }
            return produced
        }
    }
}

extension Repository {
    /// A big loose blob read by `LooseObject` (bounded memory, verified), or nil when there is no such
    /// loose file or it is small (libgit2 reads those).
    func bigLooseBlob(_ id: ObjectID) throws(GitStoreError) -> BlobBuffer? {
        switch try LooseObject.blob(id, objectsDirectory: path + "/objects", minimumSize: BlobBuffer.fileBackedThreshold) {
        case .blob(let b): return b
        case .notHere: return nil
        }
    }
}
